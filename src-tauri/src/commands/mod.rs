//! Commands the console calls with `invoke` (`ui/src/desktop.rs`), one file per area.

pub mod api;
pub mod files;
pub mod preferences;
pub mod service;
