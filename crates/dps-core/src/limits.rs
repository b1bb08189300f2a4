//! The limits profile: `default` (the service's own generous limits, no throttling) or `azure` (Azure's
//! published quotas and rates, `dps-protocol.md` §9, so that devices meet here the throttling they will meet
//! in the cloud). The engine and the service API ask [`Limits`] before they act; transports only map the
//! resulting [`DpsError`] (429 + retry-after, 403002, 413001, 400004) in their one mapping each.
//!
//! Rates are sliding windows: each keeps the times of the requests it admitted inside its window (at most
//! the window's limit of them), so a refusal can say exactly when the oldest leaves (the retry-after).
//! - registrations (an authenticated register) per service: 1,000 / 60 s;
//! - service-API operations signed with a SAS (not the console's own session) per service: 1,000 / 60 s;
//! - operation-status polls per device: 5 / 10 s.
//!
//! Throttling happens after authentication: an unauthenticated request never gets a window, so made-up ids
//! cost no memory. Per-device state is bounded all the same ([`AzureLimits::tracked_devices`]): windows that
//! emptied are dropped first, then the least recently used device. Counters live in memory, per instance: a
//! restart (or a second instance behind a balancer) starts with empty windows.
//!
//! Codes (local choices, Azure's sub-codes are unverified, §10.1): 429001 throttled (with `retry-after`);
//! 403002 quota exceeded (IoT Hub's `IotHubQuotaExceeded`); a bulk operation of more than 10 items 400004;
//! a register payload over 96 KB 413001.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{DpsError, ErrorKind};
use crate::metrics::{Event, Metrics};
use crate::Clock;

/// Which limits apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The service's own limits (body sizes, connection caps); no rate or count limits.
    #[default]
    Default,
    /// Azure's published quotas and rates (§9).
    Azure,
}

impl Profile {
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Azure => "azure",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "default" => Ok(Profile::Default),
            "azure" => Ok(Profile::Azure),
            other => Err(format!("limits profile '{}' is not 'default' or 'azure'", other.escape_debug())),
        }
    }
}

pub use dps_proto::{AzureLimits, LimitsSettings};

/// A count limit of the service API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    IndividualEnrollments,
    /// Enrollment groups of one attestation kind.
    EnrollmentGroups,
    CaCertificates,
    LinkedHubs,
}

/// The admitted request times of one window, oldest first (at most `limit` of them).
#[derive(Debug, Default)]
struct Window(VecDeque<DateTime<Utc>>);

impl Window {
    /// Admits a request at `now`, or says in how many seconds (≥ 1) the oldest leaves the window.
    fn admit(&mut self, now: DateTime<Utc>, limit: u32, window: Duration) -> Result<(), u32> {
        while self.0.front().is_some_and(|t| *t <= now - window) {
            self.0.pop_front();
        }
        if self.0.len() < limit as usize {
            self.0.push_back(now);
            return Ok(());
        }
        let oldest = self.0.front().copied().unwrap_or(now);
        let wait = (oldest + window - now).num_milliseconds().max(0);
        Err(u32::try_from((wait + 999) / 1000).unwrap_or(u32::MAX).clamp(1, 3600))
    }

    fn is_idle(&self, now: DateTime<Utc>, window: Duration) -> bool {
        self.0.back().is_none_or(|t| *t <= now - window)
    }
}

/// What the trace says about a device that was throttled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThrottleNote {
    pub registrations: u64,
    pub polls: u64,
    #[serde(serialize_with = "crate::limits::azure_time")]
    pub first: DateTime<Utc>,
    #[serde(serialize_with = "crate::limits::azure_time")]
    pub last: DateTime<Utc>,
    pub last_retry_after_secs: u32,
}

fn azure_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&dps_proto::format_time(t))
}

#[derive(Default)]
struct State {
    registrations: Window,
    service_operations: Window,
    /// Registration id (lower case) → its poll window and when it was last used.
    polls: HashMap<String, (Window, DateTime<Utc>)>,
    notes: HashMap<String, ThrottleNote>,
}

struct Inner {
    profile: Mutex<Profile>,
    azure: AzureLimits,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// The limits in force; cheap to clone (shared state).
#[derive(Clone)]
pub struct Limits(Arc<Inner>);

/// Throttle notes kept at most (the devices most recently throttled).
const NOTES_KEPT: usize = 10_000;

impl Limits {
    pub fn new(profile: Profile, azure: AzureLimits, clock: Arc<dyn Clock>, metrics: Metrics) -> Self {
        Self(Arc::new(Inner { profile: Mutex::new(profile), azure, state: Mutex::default(), clock, metrics }))
    }

    pub fn profile(&self) -> Profile {
        *self.0.profile.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Switches the profile at run time (the console's Settings); windows start empty.
    pub fn set_profile(&self, p: Profile) {
        *self.0.profile.lock().unwrap_or_else(|p| p.into_inner()) = p;
        let mut s = self.state();
        s.registrations = Window::default();
        s.service_operations = Window::default();
        s.polls.clear();
    }

    /// The numbers the `azure` profile applies (also when it is off).
    pub fn azure(&self) -> &AzureLimits {
        &self.0.azure
    }

    fn active(&self) -> Option<&AzureLimits> {
        (self.profile() == Profile::Azure).then_some(&self.0.azure)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn throttled(&self, operation: &'static str, wait: u32, what: String) -> DpsError {
        self.0.metrics.record(Event::Throttled { operation });
        let mut e = DpsError::new(ErrorKind::Throttled, what);
        e.retry_after = Some(wait);
        e
    }

    fn note(&self, s: &mut State, key: &str, poll: bool, now: DateTime<Utc>, wait: u32) {
        if !s.notes.contains_key(key) && s.notes.len() >= NOTES_KEPT {
            if let Some(oldest) = s.notes.iter().min_by_key(|(_, n)| n.last).map(|(k, _)| k.clone()) {
                s.notes.remove(&oldest);
            }
        }
        let n = s.notes.entry(key.to_owned()).or_insert(ThrottleNote {
            registrations: 0,
            polls: 0,
            first: now,
            last: now,
            last_retry_after_secs: wait,
        });
        if poll {
            n.polls += 1;
        } else {
            n.registrations += 1;
        }
        n.last = now;
        n.last_retry_after_secs = wait;
    }

    /// A register of an authenticated device: the service-wide registration rate and the payload size.
    pub fn admit_registration(&self, registration_id: &str, body: &dps_proto::DeviceRegistration) -> Result<(), DpsError> {
        let Some(a) = self.active().copied() else { return Ok(()) };
        let size = serde_json::to_vec(body).map(|v| v.len() as u64).unwrap_or(0);
        if size > a.max_message_bytes {
            return Err(DpsError::new(
                ErrorKind::PayloadTooLarge,
                format!("the registration request has {size} bytes; the limit is {} (Azure limits profile)", a.max_message_bytes),
            ));
        }
        let now = self.0.clock.now();
        let mut s = self.state();
        let window = Duration::seconds(i64::from(a.registration_window_secs));
        if let Err(wait) = s.registrations.admit(now, a.registrations_per_window, window) {
            self.note(&mut s, &registration_id.to_ascii_lowercase(), false, now, wait);
            drop(s);
            return Err(self.throttled(
                "register",
                wait,
                format!(
                    "too many device registrations: {} per {} s per service (Azure limits profile); retry after {wait} s",
                    a.registrations_per_window, a.registration_window_secs
                ),
            ));
        }
        Ok(())
    }

    /// An operation-status request of an authenticated device: its poll window.
    pub fn admit_poll(&self, registration_id: &str) -> Result<(), DpsError> {
        let Some(a) = self.active().copied() else { return Ok(()) };
        let now = self.0.clock.now();
        let window = Duration::seconds(i64::from(a.poll_window_secs));
        let key = registration_id.to_ascii_lowercase();
        let mut s = self.state();
        if !s.polls.contains_key(&key) && s.polls.len() >= a.tracked_devices as usize {
            s.polls.retain(|_, (w, _)| !w.is_idle(now, window));
            if s.polls.len() >= a.tracked_devices as usize {
                if let Some(lru) = s.polls.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone()) {
                    s.polls.remove(&lru);
                }
            }
        }
        let entry = s.polls.entry(key.clone()).or_default();
        entry.1 = now;
        if let Err(wait) = entry.0.admit(now, a.polls_per_window, window) {
            self.note(&mut s, &key, true, now, wait);
            drop(s);
            return Err(self.throttled(
                "poll",
                wait,
                format!(
                    "too many operation-status requests from '{}': {} per {} s per device (Azure limits profile); retry after {wait} s",
                    registration_id.escape_debug(),
                    a.polls_per_window,
                    a.poll_window_secs
                ),
            ));
        }
        Ok(())
    }

    /// A service-API operation signed with a SAS.
    pub fn admit_service_operation(&self) -> Result<(), DpsError> {
        let Some(a) = self.active().copied() else { return Ok(()) };
        let now = self.0.clock.now();
        let window = Duration::seconds(i64::from(a.service_operation_window_secs));
        let r = self.state().service_operations.admit(now, a.service_operations_per_window, window);
        r.map_err(|wait| {
            self.throttled(
                "service",
                wait,
                format!(
                    "too many service operations: {} per {} s per service (Azure limits profile); retry after {wait} s",
                    a.service_operations_per_window, a.service_operation_window_secs
                ),
            )
        })
    }

    /// A bulk operation of `items` enrollments or groups.
    pub fn check_bulk(&self, items: usize) -> Result<(), DpsError> {
        match self.active() {
            Some(a) if items > a.max_bulk_items as usize => Err(DpsError::invalid(format!(
                "a bulk operation may hold at most {} items; this one has {items} (Azure limits profile)",
                a.max_bulk_items
            ))),
            _ => Ok(()),
        }
    }

    /// A service-API request body (the 96 KB message size).
    pub fn check_message(&self, bytes: usize) -> Result<(), DpsError> {
        match self.active() {
            Some(a) if bytes as u64 > a.max_message_bytes => Err(DpsError::new(
                ErrorKind::PayloadTooLarge,
                format!("the request has {bytes} bytes; the limit is {} (Azure limits profile)", a.max_message_bytes),
            )),
            _ => Ok(()),
        }
    }

    /// Whether one more entity fits when `current` exist already.
    pub fn check_quota(&self, quota: Quota, current: u64) -> Result<(), DpsError> {
        let Some(a) = self.active() else { return Ok(()) };
        let (max, what) = match quota {
            Quota::IndividualEnrollments => (a.max_individual_enrollments, "individual enrollments"),
            Quota::EnrollmentGroups => (a.max_enrollment_groups, "enrollment groups of this attestation type"),
            Quota::CaCertificates => (a.max_ca_certificates, "CA certificates"),
            Quota::LinkedHubs => (a.max_linked_hubs, "linked IoT hubs"),
        };
        if current >= max {
            return Err(DpsError::new(
                ErrorKind::QuotaExceeded,
                format!("quota exceeded: at most {max} {what} (Azure limits profile); {current} exist"),
            ));
        }
        Ok(())
    }

    /// When and how often this device was throttled (the registration's trace), if it was.
    pub fn throttle_note(&self, registration_id: &str) -> Option<ThrottleNote> {
        self.state().notes.get(&registration_id.to_ascii_lowercase()).cloned()
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.state().polls.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use chrono::TimeZone;

    fn setup(profile: Profile, a: AzureLimits) -> (Arc<ManualClock>, Limits, Metrics) {
        let clock = Arc::new(ManualClock::new(Utc.timestamp_opt(1_700_000_000, 0).single().unwrap_or_default()));
        let metrics = Metrics::new(clock.clone());
        (clock.clone(), Limits::new(profile, a, clock, metrics.clone()), metrics)
    }

    #[test]
    fn a_sixth_poll_within_ten_seconds_is_refused_with_the_wait() {
        let (clock, l, metrics) = setup(Profile::Azure, AzureLimits::default());
        for _ in 0..5 {
            assert!(l.admit_poll("dev1").is_ok());
            clock.advance(Duration::seconds(1));
        }
        // polls at 0..4 s; now 5 s: the first leaves at 10 s
        let e = l.admit_poll("DEV1").err().unwrap_or_else(|| panic!("sixth poll admitted"));
        assert_eq!((e.kind, e.code(), e.retry_after), (ErrorKind::Throttled, 429001, Some(5)));
        assert!(l.admit_poll("dev2").is_ok(), "other devices have their own window");
        clock.advance(Duration::seconds(5));
        assert!(l.admit_poll("dev1").is_ok(), "the first poll left the window");
        assert!(l.admit_poll("dev1").is_err(), "the second one has not");
        let note = l.throttle_note("Dev1").unwrap_or_else(|| panic!("no note"));
        assert_eq!((note.polls, note.registrations), (2, 0));
        assert!(metrics.prometheus().contains("dps_throttled_requests_total{operation=\"poll\"} 2"), "{}", metrics.prometheus());
    }

    #[test]
    fn registration_rate_is_per_service_and_says_when_to_retry() {
        let a = AzureLimits { registrations_per_window: 2, registration_window_secs: 4, ..Default::default() };
        let (clock, l, _) = setup(Profile::Azure, a);
        let body = dps_proto::DeviceRegistration::default();
        assert!(l.admit_registration("a", &body).is_ok());
        clock.advance(Duration::milliseconds(1500));
        assert!(l.admit_registration("b", &body).is_ok());
        let e = l.admit_registration("c", &body).err().unwrap_or_else(|| panic!("third admitted"));
        assert_eq!((e.status(), e.retry_after), (429, Some(3)), "2.5 s rounded up");
        assert_eq!(l.throttle_note("c").map(|n| n.registrations), Some(1));
        clock.advance(Duration::milliseconds(2500));
        assert!(l.admit_registration("c", &body).is_ok());
    }

    #[test]
    fn the_default_profile_never_throttles_and_the_toggle_resets_windows() {
        let a = AzureLimits { polls_per_window: 1, registrations_per_window: 1, service_operations_per_window: 1, ..Default::default() };
        let (_, l, _) = setup(Profile::Default, a);
        let body = dps_proto::DeviceRegistration::default();
        for _ in 0..50 {
            assert!(l.admit_poll("d").is_ok() && l.admit_registration("d", &body).is_ok() && l.admit_service_operation().is_ok());
        }
        assert!(l.check_bulk(10_000).is_ok() && l.check_quota(Quota::LinkedHubs, 1_000).is_ok() && l.check_message(1 << 30).is_ok());
        l.set_profile(Profile::Azure);
        assert!(l.admit_service_operation().is_ok());
        assert_eq!(l.admit_service_operation().err().map(|e| e.code()), Some(429001));
        l.set_profile(Profile::Default);
        l.set_profile(Profile::Azure);
        assert!(l.admit_service_operation().is_ok(), "a new profile starts with empty windows");
    }

    #[test]
    fn quotas_bulk_and_sizes() {
        let (_, l, _) = setup(Profile::Azure, AzureLimits::default());
        assert!(l.check_bulk(10).is_ok());
        assert_eq!(l.check_bulk(11).err().map(|e| e.code()), Some(400004));
        assert!(l.check_quota(Quota::EnrollmentGroups, 99).is_ok());
        assert_eq!(l.check_quota(Quota::EnrollmentGroups, 100).err().map(|e| (e.code(), e.status())), Some((403002, 403)));
        assert!(l.check_quota(Quota::CaCertificates, 25).is_err());
        assert!(l.check_quota(Quota::LinkedHubs, 49).is_ok());
        assert!(l.check_quota(Quota::IndividualEnrollments, 1_000_000).is_err());
        assert!(l.check_message(96 * 1024).is_ok());
        assert_eq!(l.check_message(96 * 1024 + 1).err().map(|e| e.code()), Some(413001));
        let big = dps_proto::DeviceRegistration { payload: Some(serde_json::json!("x".repeat(100 * 1024))), ..Default::default() };
        assert_eq!(l.admit_registration("d", &big).err().map(|e| e.code()), Some(413001));
    }

    #[test]
    fn poll_state_is_bounded() {
        let a = AzureLimits { tracked_devices: 3, polls_per_window: 1, ..Default::default() };
        let (clock, l, _) = setup(Profile::Azure, a);
        for i in 0..10 {
            assert!(l.admit_poll(&format!("dev{i}")).is_ok());
            clock.advance(Duration::milliseconds(10));
        }
        assert_eq!(l.tracked(), 3, "the least recently used devices were forgotten");
        assert!(l.admit_poll("dev9").is_err(), "a device still tracked keeps its window");
    }

    #[test]
    fn profiles_and_numbers_parse_and_validate() {
        assert_eq!("Azure".parse::<Profile>(), Ok(Profile::Azure));
        assert_eq!(" default ".parse::<Profile>(), Ok(Profile::Default));
        assert!("strict".parse::<Profile>().is_err());
        assert!(AzureLimits::default().validate().is_ok());
        let bad = AzureLimits { poll_window_secs: 0, ..Default::default() };
        assert!(bad.validate().err().is_some_and(|e| e.contains("poll_window_secs")));
    }
}
