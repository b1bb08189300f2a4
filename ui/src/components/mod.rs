//! Pieces shared by pages: navigation and top bar, loading/empty/error states, copy button, confirm dialog,
//! "show JSON" toggle, charts, notices, pager, the debounced search box and file helpers (download, read, drop).

pub mod chart;
pub mod confirm;
pub mod copy;
pub mod files;
pub mod json;
pub mod nav;
pub mod notice;
pub mod pager;
pub mod poll;
pub mod search;
pub mod status;
