//! The numbers behind the console's charts; the view only draws them (plotters, in `ui/`).
//!
//! - Registrations per minute by outcome, from `RegistrationAttempts` series points (`GET /diagnostics/metrics`):
//!   every minute of the window gets a bucket, minutes without registrations included. A device refused at
//!   attestation (wrong key, unknown id, untrusted certificate) never becomes a registration attempt; its failed
//!   `AttestationAttempts` point counts as failed, so the chart shows refusals too (no request counts twice: an
//!   attestation that succeeded is counted once more only by its registration's outcome).
//! - Each hub's share of the assigned devices next to its share of the allocation weight
//!   (`GET /diagnostics/allocation`).

use chrono::{DateTime, Utc};
use dps_proto::{HubAllocation, SeriesPoint};

use crate::format::parse_time;

/// The metric whose points count finished registrations, by `hub` and `status`.
pub const REGISTRATION_ATTEMPTS: &str = "RegistrationAttempts";
/// The metric of attestations, by `mechanism`, `protocol` and `status` (`success` / `failure`).
pub const ATTESTATION_ATTEMPTS: &str = "AttestationAttempts";
/// Requests refused with 429 by the Azure limits profile, by `operation` (`register`, `poll`, `service`).
pub const THROTTLED_REQUESTS: &str = "ThrottledRequests";

/// How a registration ended, as the chart groups it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Status `assigned`.
    Assigned,
    /// Status `failed`.
    Failed,
    /// Any other status (`disabled`, `unassigned`, …).
    Other,
}

impl Outcome {
    pub fn of_status(status: &str) -> Outcome {
        match status.to_ascii_lowercase().as_str() {
            "assigned" => Outcome::Assigned,
            "failed" | "failure" => Outcome::Failed,
            _ => Outcome::Other,
        }
    }
}

/// Registrations that finished in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteBucket {
    /// Start of the minute.
    pub minute: DateTime<Utc>,
    pub assigned: u64,
    pub failed: u64,
    pub other: u64,
    /// Requests throttled in that minute (not registrations: drawn above them).
    pub throttled: u64,
}

impl MinuteBucket {
    pub fn total(&self) -> u64 {
        self.assigned + self.failed + self.other
    }
}

/// One bucket per minute of the `minutes` minutes ending with the one `now` is in, oldest first. Points of other
/// metrics and points outside the window are ignored.
pub fn registrations_per_minute(points: &[SeriesPoint], now: DateTime<Utc>, minutes: u32) -> Vec<MinuteBucket> {
    let last = now.timestamp().div_euclid(60);
    let first = last - i64::from(minutes) + 1;
    let mut buckets: Vec<MinuteBucket> = (first..=last)
        .filter_map(|m| DateTime::from_timestamp(m * 60, 0))
        .map(|minute| MinuteBucket { minute, assigned: 0, failed: 0, other: 0, throttled: 0 })
        .collect();
    let refused = |p: &SeriesPoint| {
        p.metric == ATTESTATION_ATTEMPTS && p.dimensions.get("status").is_some_and(|s| Outcome::of_status(s) == Outcome::Failed)
    };
    for p in points.iter().filter(|p| p.metric == REGISTRATION_ATTEMPTS || p.metric == THROTTLED_REQUESTS || refused(p)) {
        let Some(t) = parse_time(&p.minute) else { continue };
        let m = t.timestamp().div_euclid(60);
        if m < first || m > last {
            continue;
        }
        let Some(b) = usize::try_from(m - first).ok().and_then(|i| buckets.get_mut(i)) else { continue };
        if p.metric == THROTTLED_REQUESTS {
            b.throttled += p.count;
            continue;
        }
        let status = p.dimensions.get("status").map(String::as_str).unwrap_or("");
        match Outcome::of_status(status) {
            Outcome::Assigned => b.assigned += p.count,
            Outcome::Failed => b.failed += p.count,
            Outcome::Other => b.other += p.count,
        }
    }
    buckets
}

/// Throttled requests over the buckets.
pub fn throttled_total(buckets: &[MinuteBucket]) -> u64 {
    buckets.iter().map(|b| b.throttled).sum()
}

/// The sums over the buckets: (assigned, failed, other).
pub fn totals(buckets: &[MinuteBucket]) -> (u64, u64, u64) {
    buckets.iter().fold((0, 0, 0), |(a, f, o), b| (a + b.assigned, f + b.failed, o + b.other))
}

/// A hub's part of the assigned devices and of the weight the allocation policies use.
#[derive(Debug, Clone, PartialEq)]
pub struct HubShare {
    pub host_name: String,
    pub devices: u64,
    pub weight: u32,
    /// Whether `hashed`/`geoLatency` may choose this hub (otherwise only enrollments naming it do).
    pub applies_policy: bool,
    /// devices / all devices (0 when no device is assigned).
    pub device_share: f64,
    /// weight / the weight of all hubs that apply the policy (0 for a hub that does not).
    pub weight_share: f64,
}

/// The shares of every hub, in the given order.
pub fn allocation_shares(hubs: &[HubAllocation]) -> Vec<HubShare> {
    let devices: u64 = hubs.iter().map(|h| h.devices).sum();
    let weight: u64 = hubs.iter().filter(|h| h.apply_allocation_policy).map(|h| u64::from(h.allocation_weight)).sum();
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
    hubs.iter()
        .map(|h| HubShare {
            host_name: h.host_name.clone(),
            devices: h.devices,
            weight: h.allocation_weight,
            applies_policy: h.apply_allocation_policy,
            device_share: share(h.devices, devices),
            weight_share: if h.apply_allocation_policy { share(u64::from(h.allocation_weight), weight) } else { 0.0 },
        })
        .collect()
}

/// A round upper bound for a count axis: at least 1, else the next of 1, 2, 5 × 10ⁿ at or above `max`.
pub fn axis_max(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let v = step.saturating_mul(m);
            if v >= max {
                return v;
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn point(minute: &str, metric: &str, status: &str, count: u64) -> SeriesPoint {
        let mut dimensions = BTreeMap::new();
        dimensions.insert("status".to_string(), status.to_string());
        dimensions.insert("hub".to_string(), "hub-a".to_string());
        SeriesPoint { minute: minute.into(), metric: metric.into(), dimensions, count }
    }

    fn now() -> DateTime<Utc> {
        parse_time("2026-01-01T12:00:30Z").unwrap_or_else(|| panic!("time"))
    }

    #[test]
    fn buckets_cover_every_minute_of_the_window() {
        let b = registrations_per_minute(&[], now(), 60);
        assert_eq!(b.len(), 60);
        assert_eq!(b.first().map(|b| b.minute), parse_time("2026-01-01T11:01:00Z"));
        assert_eq!(b.last().map(|b| b.minute), parse_time("2026-01-01T12:00:00Z"));
        assert!(b.iter().all(|b| b.total() == 0));
    }

    #[test]
    fn points_go_to_their_minute_by_outcome() {
        let points = vec![
            point("2026-01-01T12:00:00.0000000Z", REGISTRATION_ATTEMPTS, "assigned", 3),
            point("2026-01-01T12:00:00.0000000Z", REGISTRATION_ATTEMPTS, "failed", 1),
            point("2026-01-01T11:59:00.0000000Z", REGISTRATION_ATTEMPTS, "assigned", 2),
            point("2026-01-01T11:59:00.0000000Z", REGISTRATION_ATTEMPTS, "disabled", 4),
            // another metric, a point before the window and a time that does not parse: ignored
            point("2026-01-01T11:59:00.0000000Z", "DeviceAssignments", "assigned", 9),
            point("2026-01-01T10:00:00.0000000Z", REGISTRATION_ATTEMPTS, "assigned", 9),
            point("soon", REGISTRATION_ATTEMPTS, "assigned", 9),
        ];
        let b = registrations_per_minute(&points, now(), 60);
        let last = b[59];
        assert_eq!((last.assigned, last.failed, last.other), (3, 1, 0));
        // Refused at attestation: failed; a successful attestation adds nothing (its registration counts).
        let mut refused = point("2026-01-01T12:00:00.0000000Z", ATTESTATION_ATTEMPTS, "failure", 2);
        refused.dimensions.insert("mechanism".into(), "symmetricKey".into());
        let attested = point("2026-01-01T12:00:00.0000000Z", ATTESTATION_ATTEMPTS, "success", 5);
        let with_refusals = registrations_per_minute(&[refused, attested], now(), 60);
        assert_eq!(with_refusals.last().map(|b| (b.assigned, b.failed, b.other)), Some((0, 2, 0)));
        let prev = b[58];
        assert_eq!((prev.assigned, prev.failed, prev.other), (2, 0, 4));
        assert_eq!(totals(&b), (5, 1, 4));
    }

    #[test]
    fn throttled_requests_get_their_own_count_in_their_minute() {
        let mut t = point("2026-01-01T11:58:00Z", THROTTLED_REQUESTS, "", 4);
        t.dimensions.clear();
        t.dimensions.insert("operation".into(), "poll".into());
        let points = vec![t, point("2026-01-01T11:58:00Z", REGISTRATION_ATTEMPTS, "assigned", 2)];
        let b = registrations_per_minute(&points, now(), 60);
        let minute = b.iter().find(|b| b.throttled > 0).map(|b| (b.throttled, b.assigned, b.total()));
        assert_eq!(minute, Some((4, 2, 2)), "throttled requests are not registrations");
        assert_eq!(throttled_total(&b), 4);
        assert_eq!(totals(&b), (2, 0, 0));
    }

    #[test]
    fn outcomes() {
        assert_eq!(Outcome::of_status("Assigned"), Outcome::Assigned);
        assert_eq!(Outcome::of_status("failed"), Outcome::Failed);
        assert_eq!(Outcome::of_status("unassigned"), Outcome::Other);
        assert_eq!(Outcome::of_status(""), Outcome::Other);
    }

    #[test]
    fn shares_compare_devices_with_weights() {
        let hub = |name: &str, weight, apply, devices| HubAllocation {
            host_name: name.into(),
            allocation_weight: weight,
            apply_allocation_policy: apply,
            devices,
            ..Default::default()
        };
        let s = allocation_shares(&[hub("a", 1, true, 1), hub("b", 3, true, 3), hub("c", 5, false, 0)]);
        assert_eq!(s.len(), 3);
        assert!((s[0].device_share - 0.25).abs() < 1e-9 && (s[0].weight_share - 0.25).abs() < 1e-9);
        assert!((s[1].device_share - 0.75).abs() < 1e-9 && (s[1].weight_share - 0.75).abs() < 1e-9);
        assert_eq!((s[2].device_share, s[2].weight_share), (0.0, 0.0));
        let empty = allocation_shares(&[hub("a", 1, true, 0)]);
        assert_eq!((empty[0].device_share, empty[0].weight_share), (0.0, 1.0));
    }

    #[test]
    fn axis_bounds_are_round() {
        assert_eq!(axis_max(0), 1);
        assert_eq!(axis_max(1), 1);
        assert_eq!(axis_max(3), 5);
        assert_eq!(axis_max(7), 10);
        assert_eq!(axis_max(11), 20);
        assert_eq!(axis_max(480), 500);
        assert_eq!(axis_max(501), 1000);
    }
}
