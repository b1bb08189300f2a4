//! The console's access: one `admin` account whose password is stored as an argon2 hash. At first start the
//! service makes a random password, writes it to `<data-dir>/initial-admin-password` (mode 0600, the way
//! Jenkins does; removed at the first password change) and prints it once. Logging in gives a session token
//! (12 h) that the console sends as `Authorization: Bearer …`; a session has every right of the service API.
//! Only the tokens' SHA-256 is kept, in memory (a restart signs everyone out).
//!
//! Argon2 costs 19 MiB and tens of milliseconds a call, so nobody may make the service run it without bound:
//! [`LoginThrottle`] counts each attempt before it is verified, and [`PasswordWork`] runs it off the async
//! workers, [`ARGON2_CONCURRENCY`] at a time.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use dps_core::{DpsError, ErrorKind};
use dps_crypto::Secret;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub const ADMIN_USER: &str = "admin";
/// The first start's password, in the data directory until the first password change.
pub const INITIAL_PASSWORD_FILE: &str = "initial-admin-password";
const SESSION_HOURS: i64 = 12;
pub const MIN_PASSWORD_LEN: usize = 10;

pub fn hash_password(password: &str) -> Result<String, DpsError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DpsError::internal(format!("cannot hash the password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

/// A random password for first start: 20 characters from an unambiguous alphabet.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut bytes = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

fn token_key(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// Signed-in console sessions.
#[derive(Default)]
pub struct Sessions {
    by_token: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl Sessions {
    /// A new session; returns the token and its expiry.
    pub fn open(&self, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let expires = now + Duration::hours(SESSION_HOURS);
        let mut m = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        m.retain(|_, e| *e > now);
        m.insert(token_key(&token), expires);
        (token, expires)
    }

    pub fn check(&self, token: &str, now: DateTime<Utc>) -> Result<(), DpsError> {
        let m = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&token_key(token)) {
            Some(e) if *e > now => Ok(()),
            Some(_) => Err(DpsError::unauthorized("the console session expired; sign in again")),
            None => Err(DpsError::unauthorized("unknown console session; sign in again")),
        }
    }

    pub fn close(&self, token: &str) {
        self.by_token.lock().unwrap_or_else(|p| p.into_inner()).remove(&token_key(token));
    }

    /// Every session ends (the password changed).
    pub fn close_all(&self) {
        self.by_token.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// How many sign-in attempts are allowed; each is counted *before* its password is verified, so concurrent
/// attempts cannot all pass the check and then all cost an argon2 verification.
#[derive(Debug, Clone, Copy)]
pub struct ThrottleLimits {
    /// Attempts per source address (IPv6: per /64) per window.
    pub per_address: u32,
    /// Attempts from every address together per window (bounds the CPU a distributed guesser can spend).
    pub global: u32,
    pub window: Duration,
    /// Addresses remembered at most (older windows are dropped first; when every one is live, new addresses
    /// wait for the global window).
    pub max_addresses: usize,
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self { per_address: 5, global: 30, window: Duration::minutes(1), max_addresses: 10_000 }
    }
}

/// A fixed window's count.
#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    since: DateTime<Utc>,
}

impl Window {
    /// The window at `now` (a new one when the last has ended).
    fn at(self, now: DateTime<Utc>, length: Duration) -> Window {
        if now - self.since >= length || now < self.since {
            Window { count: 0, since: now }
        } else {
            self
        }
    }

    /// Whole seconds until the window ends (at least 1).
    fn retry_after(self, now: DateTime<Utc>, length: Duration) -> u32 {
        let left = (self.since + length - now).num_milliseconds().max(0);
        u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX).max(1)
    }
}

struct ThrottleState {
    global: Window,
    by_address: HashMap<IpAddr, Window>,
}

/// Sign-in attempts per source address and globally (see [`ThrottleLimits`]); over a limit: 429001 with the
/// seconds until the window ends. A successful sign-in forgets its address's attempts.
pub struct LoginThrottle {
    limits: ThrottleLimits,
    state: Mutex<ThrottleState>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleLimits::default())
    }
}

/// IPv6 clients usually hold a whole /64: it counts as one address.
fn throttle_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn throttled(message: &str, retry_after: u32) -> DpsError {
    let mut e = DpsError::new(ErrorKind::Throttled, message);
    e.retry_after = Some(retry_after);
    e
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits) -> Self {
        Self {
            limits,
            state: Mutex::new(ThrottleState { global: Window { count: 0, since: DateTime::<Utc>::MIN_UTC }, by_address: HashMap::new() }),
        }
    }

    /// Counts one attempt from `ip` — before anything is verified — or refuses it.
    pub fn admit(&self, ip: IpAddr, now: DateTime<Utc>) -> Result<(), DpsError> {
        let (l, key) = (self.limits, throttle_key(ip));
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.global = s.global.at(now, l.window);
        if s.global.count >= l.global {
            return Err(throttled("too many sign-in attempts; wait and try again", s.global.retry_after(now, l.window)));
        }
        if !s.by_address.contains_key(&key) && s.by_address.len() >= l.max_addresses {
            s.by_address.retain(|_, w| now - w.since < l.window && now >= w.since);
            if s.by_address.len() >= l.max_addresses {
                return Err(throttled("too many sign-in attempts; wait and try again", s.global.retry_after(now, l.window)));
            }
        }
        let fresh = Window { count: 0, since: now };
        let w = s.by_address.get(&key).copied().unwrap_or(fresh).at(now, l.window);
        if w.count >= l.per_address {
            return Err(throttled("too many sign-in attempts from this address; wait a minute", w.retry_after(now, l.window)));
        }
        s.by_address.insert(key, Window { count: w.count + 1, ..w });
        s.global.count += 1;
        Ok(())
    }

    /// The right password: the address's attempts are forgotten.
    pub fn succeeded(&self, ip: IpAddr) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).by_address.remove(&throttle_key(ip));
    }
}

/// Argon2 (19 MiB and tens of milliseconds a call) off the async workers: on the blocking pool, at most
/// [`ARGON2_CONCURRENCY`] at a time; callers wait for a permit.
pub struct PasswordWork {
    permits: Arc<Semaphore>,
}

/// Argon2 hashes or verifications running at once.
pub const ARGON2_CONCURRENCY: usize = 2;

impl Default for PasswordWork {
    fn default() -> Self {
        Self { permits: Arc::new(Semaphore::new(ARGON2_CONCURRENCY)) }
    }
}

impl PasswordWork {
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, DpsError> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.map_err(|_| DpsError::internal("the password work stopped"))?;
        tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|e| DpsError::internal(format!("the password work failed: {e}")))
    }

    /// Whether `password` matches `hash`.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<bool, DpsError> {
        let (password, hash) = (Secret::new(password), hash.to_owned());
        self.run(move || verify_password(password.expose(), &hash)).await
    }

    /// The argon2 hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, DpsError> {
        let password = Secret::new(password);
        self.run(move || hash_password(password.expose())).await?
    }
}

pub fn check_new_password(p: &str) -> Result<(), DpsError> {
    if p.chars().count() < MIN_PASSWORD_LEN {
        return Err(DpsError::new(ErrorKind::InvalidArgument, format!("the password must have at least {MIN_PASSWORD_LEN} characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let p = generate_password();
        assert_eq!(p.len(), 20);
        let h = hash_password(&p).unwrap_or_else(|e| panic!("{e}"));
        assert!(h.starts_with("$argon2"));
        assert!(!h.contains(&p));
        assert!(verify_password(&p, &h));
        assert!(!verify_password("wrong password", &h));
        assert!(!verify_password(&p, "not a hash"));
    }

    #[test]
    fn sessions_expire_and_close() {
        let s = Sessions::default();
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20000);
        let (t, exp) = s.open(now);
        assert!(s.check(&t, now).is_ok());
        assert!(s.check(&t, exp + Duration::seconds(1)).is_err());
        assert!(s.check("forged", now).is_err());
        s.close(&t);
        assert!(s.check(&t, now).is_err());
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::days(20000) + Duration::seconds(secs)
    }

    fn small() -> LoginThrottle {
        LoginThrottle::new(ThrottleLimits { per_address: 2, global: 5, window: Duration::minutes(1), max_addresses: 3 })
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn attempts_are_counted_per_address_until_the_window_ends() {
        let t = small();
        assert!(t.admit(ip(1), at(0)).is_ok() && t.admit(ip(1), at(1)).is_ok());
        let e = t.admit(ip(1), at(20)).err().unwrap_or_else(|| panic!("a third attempt was admitted"));
        assert_eq!((e.kind, e.retry_after), (ErrorKind::Throttled, Some(40)), "until the window that began at 0 s ends");
        assert!(t.admit(ip(2), at(20)).is_ok(), "another address has its own count");
        assert!(t.admit(ip(1), at(60)).is_ok(), "a new window");
        t.succeeded(ip(1));
        assert!(t.admit(ip(1), at(61)).is_ok() && t.admit(ip(1), at(61)).is_ok(), "the right password clears the count");
    }

    #[test]
    fn every_address_together_has_a_limit() {
        let t = small();
        for (n, when) in [(1, 0), (1, 1), (2, 2), (2, 3), (3, 4)] {
            assert!(t.admit(ip(n), at(when)).is_ok());
        }
        let e = t.admit(ip(3), at(30)).err().unwrap_or_else(|| panic!("over the global limit"));
        assert_eq!(e.retry_after, Some(30));
        assert!(t.admit(ip(4), at(59)).is_err(), "a new address too");
        assert!(t.admit(ip(4), at(60)).is_ok());
    }

    #[test]
    fn remembered_addresses_are_bounded() {
        let t = LoginThrottle::new(ThrottleLimits { per_address: 2, global: 100, window: Duration::minutes(1), max_addresses: 3 });
        for n in 1..=3 {
            assert!(t.admit(ip(n), at(0)).is_ok());
        }
        assert!(t.admit(ip(4), at(10)).is_err(), "no room while every remembered window is live");
        assert!(t.admit(ip(1), at(10)).is_ok(), "a remembered address still counts");
        assert!(t.admit(ip(4), at(60)).is_ok(), "ended windows make room");
        assert!(t.state.lock().map(|s| s.by_address.len() <= 3).unwrap_or(false));
    }

    #[test]
    fn an_ipv6_64_counts_as_one_address() {
        let t = small();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap_or_else(|e| panic!("{e}"));
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(t.admit(a, at(0)).is_ok() && t.admit(b, at(0)).is_ok());
        assert!(t.admit(a, at(0)).is_err());
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(throttle_key(mapped), ip(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_waits_for_a_permit() {
        let work = Arc::new(PasswordWork::default());
        let hash = work.hash("a password of ten").await.unwrap_or_else(|e| panic!("{e}"));
        let held = Arc::clone(&work.permits).acquire_many_owned(ARGON2_CONCURRENCY as u32).await.unwrap_or_else(|e| panic!("{e}"));
        let waiting = tokio::spawn({
            let work = Arc::clone(&work);
            async move { work.verify("a password of ten", &hash).await }
        });
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished(), "no verification runs while every permit is taken");
        drop(held);
        let verified = tokio::time::timeout(std::time::Duration::from_secs(60), waiting).await;
        assert!(matches!(verified, Ok(Ok(Ok(true)))), "{verified:?}");
    }
}
