//! The browser's clock and periodic refresh of a page's data.

use std::time::Duration;

use chrono::{DateTime, Utc};
use leptos::prelude::*;

/// Now, by the browser's clock.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(js_sys::Date::now() as i64).unwrap_or_default()
}

/// Runs `tick` now and then every `period`, until the component that called it goes away.
pub fn every(period: Duration, tick: impl Fn() + 'static) {
    tick();
    if let Ok(handle) = set_interval_with_handle(tick, period) {
        on_cleanup(move || handle.clear());
    }
}
