//! Desktop notifications on failed registrations (a preference, off by default): follows the live log and
//! notifies for "registration failed" and for refused registration requests, at most one every five
//! seconds (a burst is summed up in the next one).

use std::time::{Duration, Instant};

use dps_service::diagnostics::{LogEntry, LogHub};
use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::error::RecvError;

use crate::service::EmbeddedService;

const GAP: Duration = Duration::from_secs(5);

/// A line for a failed registration, or `None` for any other entry.
pub fn failure(e: &LogEntry) -> Option<String> {
    let who = e.fields.get("registration_id").map(String::as_str).unwrap_or("a device");
    let why = e.fields.get("error").map(String::as_str).unwrap_or_default();
    let code = e.fields.get("code").map(String::as_str).unwrap_or_default();
    match e.message.as_str() {
        "registration failed" => Some(format!("{who}: {why} (error {code})")),
        "request refused" if e.fields.get("path").is_some_and(|p| p.contains("/registrations/")) => {
            Some(format!("{} refused: {why} (error {code})", e.fields.get("path").map(String::as_str).unwrap_or(who)))
        }
        _ => None,
    }
}

pub fn spawn(app: AppHandle) {
    let mut rx = LogHub::global().subscribe();
    tauri::async_runtime::spawn(async move {
        let mut last: Option<Instant> = None;
        let mut held = 0u32;
        loop {
            let entry = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => break,
            };
            let Some(line) = failure(&entry) else { continue };
            if !app.state::<EmbeddedService>().preferences().notify_failed_registrations {
                continue;
            }
            if last.is_some_and(|t| t.elapsed() < GAP) {
                held += 1;
                continue;
            }
            let body = if held > 0 { format!("{line} (and {held} more)") } else { line };
            held = 0;
            last = Some(Instant::now());
            let _ = app.notification().builder().title("DPS Console: registration failed").body(body).show();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(message: &str, fields: &[(&str, &str)]) -> LogEntry {
        LogEntry {
            seq: 1,
            time: String::new(),
            level: "WARN".into(),
            target: "dps".into(),
            message: message.into(),
            fields: fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn only_failed_and_refused_registrations_notify() {
        let failed = entry("registration failed", &[("registration_id", "dev-1"), ("code", "503001"), ("error", "hub down")]);
        assert_eq!(failure(&failed).as_deref(), Some("dev-1: hub down (error 503001)"));
        let refused = entry("request refused", &[("path", "/0ne1/registrations/dev-2/register"), ("code", "401002"), ("error", "bad key")]);
        assert!(failure(&refused).is_some_and(|l| l.contains("dev-2") && l.contains("401002")));
        assert!(failure(&entry("request refused", &[("path", "/enrollments/x")])).is_none());
        assert!(failure(&entry("registration finished", &[])).is_none());
    }
}
