//! Registration metrics, with Azure's three DPS metrics and their dimensions
//! (`RegistrationAttempts` {hub, status}, `DeviceAssignments` {hub}, `AttestationAttempts` {mechanism,
//! protocol, status}), plus `ThrottledRequests` {operation} of the Azure limits profile: counters since start (Prometheus text) and per-minute series kept for 24 hours (the
//! console's charts). Time comes from the injected clock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::Clock;

/// One metric sample's identity: the metric and its dimensions, sorted.
pub type Key = (&'static str, Vec<(&'static str, String)>);

const MINUTES_KEPT: usize = 24 * 60;

#[derive(Default)]
struct Inner {
    totals: BTreeMap<Key, u64>,
    /// (minute since the epoch, counts in that minute), oldest first.
    minutes: VecDeque<(i64, BTreeMap<Key, u64>)>,
}

/// What happened, as the engine reports it.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Attestation {
        mechanism: &'a str,
        protocol: &'a str,
        success: bool,
    },
    Registration {
        hub: Option<&'a str>,
        status: &'a str,
    },
    /// A request refused by the Azure limits profile's rates (`register`, `poll` or `service`) or by the engine's
    /// limit of registrations in flight (`overload`).
    Throttled {
        operation: &'static str,
    },
}

#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Mutex<Inner>>,
    clock: Arc<dyn Clock>,
}

pub use dps_proto::SeriesPoint;

impl Metrics {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self { inner: Arc::default(), clock }
    }

    fn add(&self, key: Key) {
        let minute = self.clock.now().timestamp().div_euclid(60);
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *g.totals.entry(key.clone()).or_default() += 1;
        if g.minutes.back().is_none_or(|(m, _)| *m != minute) {
            g.minutes.push_back((minute, BTreeMap::new()));
        }
        while g.minutes.front().is_some_and(|(m, _)| *m <= minute - MINUTES_KEPT as i64) {
            g.minutes.pop_front();
        }
        if let Some((_, counts)) = g.minutes.back_mut() {
            *counts.entry(key).or_default() += 1;
        }
    }

    pub fn record(&self, e: Event<'_>) {
        match e {
            Event::Attestation { mechanism, protocol, success } => self.add((
                "AttestationAttempts",
                vec![
                    ("mechanism", mechanism.to_owned()),
                    ("protocol", protocol.to_owned()),
                    ("status", if success { "success" } else { "failure" }.to_owned()),
                ],
            )),
            Event::Registration { hub, status } => {
                self.add(("RegistrationAttempts", vec![("hub", hub.unwrap_or("").to_owned()), ("status", status.to_owned())]));
                if let (Some(h), "assigned") = (hub, status) {
                    self.add(("DeviceAssignments", vec![("hub", h.to_owned())]));
                }
            }
            Event::Throttled { operation } => self.add(("ThrottledRequests", vec![("operation", operation.to_owned())])),
        }
    }

    /// Counters since start in the Prometheus text format.
    pub fn prometheus(&self) -> String {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        for (metric, name, help) in [
            ("RegistrationAttempts", "dps_registration_attempts_total", "Device registrations that finished, by hub and status."),
            ("DeviceAssignments", "dps_device_assignments_total", "Devices assigned to a hub."),
            (
                "AttestationAttempts",
                "dps_attestation_attempts_total",
                "Attestations of registering devices, by mechanism, protocol and status.",
            ),
            (
                "ThrottledRequests",
                "dps_throttled_requests_total",
                "Requests refused with 429 by the Azure limits profile, by operation (register, poll, service).",
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for ((m, dims), v) in g.totals.iter().filter(|((m, _), _)| *m == metric) {
                let _ = m;
                let labels: Vec<String> =
                    dims.iter().map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))).collect();
                out.push_str(&format!("{name}{{{}}} {v}\n", labels.join(",")));
            }
        }
        out
    }

    /// Per-minute counts of the last `minutes` minutes (at most 24 h), oldest first.
    pub fn series(&self, minutes: u32) -> Vec<SeriesPoint> {
        let now = self.clock.now().timestamp().div_euclid(60);
        let from = now - i64::from(minutes.min(MINUTES_KEPT as u32));
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.minutes
            .iter()
            .filter(|(m, _)| *m > from)
            .flat_map(|(m, counts)| {
                let minute = chrono::DateTime::from_timestamp(m * 60, 0).map(|t| dps_proto::format_time(&t)).unwrap_or_default();
                counts.iter().map(move |((metric, dims), c)| SeriesPoint {
                    minute: minute.clone(),
                    metric: (*metric).to_owned(),
                    dimensions: dims.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect(),
                    count: *c,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    #[test]
    fn counters_and_minute_series_follow_the_clock() {
        let clock = Arc::new(ManualClock::new(chrono::Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default()));
        let m = Metrics::new(clock.clone());
        m.record(Event::Attestation { mechanism: "symmetricKey", protocol: "https", success: true });
        m.record(Event::Registration { hub: Some("hub-a"), status: "assigned" });
        clock.advance(chrono::Duration::minutes(2));
        m.record(Event::Registration { hub: None, status: "failed" });
        let text = m.prometheus();
        assert!(text.contains("dps_device_assignments_total{hub=\"hub-a\"} 1"), "{text}");
        assert!(text.contains("dps_registration_attempts_total{hub=\"\",status=\"failed\"} 1"), "{text}");
        assert!(
            text.contains("dps_attestation_attempts_total{mechanism=\"symmetricKey\",protocol=\"https\",status=\"success\"} 1"),
            "{text}"
        );
        assert_eq!(m.series(60).len(), 4);
        assert_eq!(m.series(1).len(), 1, "only the current minute");
        clock.advance(chrono::Duration::hours(25));
        m.record(Event::Registration { hub: Some("hub-b"), status: "assigned" });
        assert_eq!(m.series(24 * 60).len(), 2, "older than 24 h is forgotten");
    }
}
