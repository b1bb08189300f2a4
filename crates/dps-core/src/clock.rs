//! Time comes from a [`Clock`] so that tests control it (SAS expiry, timestamps). This is the only place
//! that reads the system clock.

use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // the one real clock read
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(t: DateTime<Utc>) -> Self {
        Self(Mutex::new(t))
    }
    pub fn advance(&self, d: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t = t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC);
        }
    }
    pub fn set(&self, v: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = v;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.lock().map(|t| *t).unwrap_or_else(|p| *p.into_inner())
    }
}
