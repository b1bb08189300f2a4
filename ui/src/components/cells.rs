//! Table cells and badges shared by the lists: how long ago, enabled/disabled.

use dps_console_model::format;
use leptos::prelude::*;

use crate::components::poll::now;

/// A table cell with how long ago `t` was (the exact time as its tooltip).
pub fn time_cell(t: Option<chrono::DateTime<chrono::Utc>>) -> impl IntoView {
    let full = t.map(format::date_time).unwrap_or_default();
    let short = t.map(|t| format::ago(t, now())).unwrap_or_default();
    view! { <td class="muted nowrap" title=full>{short}</td> }
}

/// A status badge.
pub fn status_badge(enabled: bool) -> impl IntoView {
    view! {
        <span class=if enabled { "badge ok" } else { "badge warn" }>{if enabled { "enabled" } else { "disabled" }}</span>
    }
}
