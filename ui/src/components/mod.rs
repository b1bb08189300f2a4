//! Pieces shared by pages: navigation and top bar, loading/empty/error states, how pages load their data
//! (`loaded`), form fields over a form binding (`form`), table cells, copy button, confirm dialog, "show JSON"
//! toggle, charts, notices, pager, the debounced search box and file helpers (download, read, drop).

pub mod cells;
pub mod chart;
pub mod confirm;
pub mod copy;
pub mod files;
pub mod form;
pub mod json;
pub mod loaded;
pub mod nav;
pub mod notice;
pub mod pager;
pub mod poll;
pub mod search;
pub mod status;
