//! How the console writes times, durations, counts and secrets. The current time is always a parameter (the
//! browser's clock is read by the view), so every function is deterministic.

use chrono::{DateTime, Utc};

/// Parses an RFC 3339 time (Azure's seven fractional digits included).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc))
}

/// `then` relative to `now`: "just now", "42 s ago", "5 min ago", "3 h ago", "2 d ago", "in 4 min".
pub fn ago(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs.abs() < 5 {
        return "just now".into();
    }
    let d = short_duration(secs.unsigned_abs());
    if secs > 0 {
        format!("{d} ago")
    } else {
        format!("in {d}")
    }
}

/// The largest unit only: "42 s", "5 min", "3 h", "2 d".
fn short_duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        3600..=86_399 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// Two units at most: "45 s", "3 min 5 s", "2 h 4 min", "3 d 2 h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) if s == 0 => format!("{m} min"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, 0) => format!("{h} h"),
        (0, _, _) => format!("{h} h {m} min"),
        (_, 0, _) => format!("{d} d"),
        _ => format!("{d} d {h} h"),
    }
}

/// A count with thousands separators: 1234567 → "1,234,567".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A share as a percentage with one decimal: 0.3333 → "33.3 %".
pub fn percent(share: f64) -> String {
    if share.is_finite() {
        format!("{:.1} %", share * 100.0)
    } else {
        "—".into()
    }
}

/// A time for a table: "2026-11-26 11:02:38 UTC".
pub fn date_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The time of day of an RFC 3339 time, "11:02:38.530"; the text itself when it does not parse.
pub fn time_of_day(s: &str) -> String {
    parse_time(s).map(|t| t.format("%H:%M:%S%.3f").to_string()).unwrap_or_else(|| s.to_string())
}

/// Where a certificate's validity stands at `now`: "valid, expires in 364 d", "expired 3 d ago",
/// "not valid yet (starts in 2 h)".
pub fn validity(not_before: Option<DateTime<Utc>>, not_after: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match (not_before, not_after) {
        (Some(b), _) if now < b => format!("not valid yet (starts {})", ago(b, now)),
        (_, Some(a)) if now >= a => format!("expired {}", ago(a, now)),
        (_, Some(a)) => format!("valid, expires {}", ago(a, now)),
        _ => "validity unknown".into(),
    }
}

/// A secret shown as dots of a fixed length (its length is not revealed).
pub const MASK: &str = "••••••••••••";

/// A connection string with its key values masked: `HostName=h;SharedAccessKeyName=n;SharedAccessKey=••••`.
pub fn mask_connection_string(s: &str) -> String {
    s.split(';')
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("SharedAccessKey") || k.trim().eq_ignore_ascii_case("SharedAccessSignature") => {
                format!("{k}={MASK}")
            }
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap_or_else(|| panic!("bad time {s}"))
    }

    #[test]
    fn parses_azure_times() {
        assert_eq!(t("2023-11-14T22:13:20.0000000Z").timestamp(), 1_700_000_000);
        assert_eq!(t("2023-11-14T23:13:20+01:00").timestamp(), 1_700_000_000);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn relative_times() {
        let now = t("2026-01-01T12:00:00Z");
        assert_eq!(ago(t("2026-01-01T11:59:58Z"), now), "just now");
        assert_eq!(ago(t("2026-01-01T11:59:18Z"), now), "42 s ago");
        assert_eq!(ago(t("2026-01-01T11:55:00Z"), now), "5 min ago");
        assert_eq!(ago(t("2026-01-01T09:00:00Z"), now), "3 h ago");
        assert_eq!(ago(t("2025-12-30T12:00:00Z"), now), "2 d ago");
        assert_eq!(ago(t("2026-01-01T12:04:00Z"), now), "in 4 min");
    }

    #[test]
    fn durations_and_counts() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(120), "2 min");
        assert_eq!(duration(7440), "2 h 4 min");
        assert_eq!(duration(7200), "2 h");
        assert_eq!(duration(3 * 86_400 + 7200 + 5), "3 d 2 h");
        assert_eq!(duration(86_400 * 2 + 30), "2 d");
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(percent(1.0 / 3.0), "33.3 %");
        assert_eq!(percent(f64::NAN), "—");
    }

    #[test]
    fn times_of_day_and_dates() {
        assert_eq!(time_of_day("2026-11-26T11:02:38.530019Z"), "11:02:38.530");
        assert_eq!(time_of_day("not a time"), "not a time");
        assert_eq!(date_time(t("2026-11-26T11:02:38.5Z")), "2026-11-26 11:02:38 UTC");
    }

    #[test]
    fn certificate_validity() {
        let now = t("2026-01-01T00:00:00Z");
        assert_eq!(validity(Some(t("2025-01-01T00:00:00Z")), Some(t("2026-12-31T00:00:00Z")), now), "valid, expires in 364 d");
        assert_eq!(validity(Some(t("2024-01-01T00:00:00Z")), Some(t("2025-12-29T00:00:00Z")), now), "expired 3 d ago");
        assert_eq!(validity(Some(t("2026-01-01T02:00:00Z")), None, now), "not valid yet (starts in 2 h)");
        assert_eq!(validity(None, None, now), "validity unknown");
    }

    #[test]
    fn connection_strings_are_masked() {
        let s = "HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=abc+/==";
        let m = mask_connection_string(s);
        assert_eq!(m, format!("HostName=localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey={MASK}"));
        assert!(!m.contains("abc"));
        assert_eq!(mask_connection_string("HostName=h"), "HostName=h");
    }
}
