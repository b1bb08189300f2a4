//! The console's access: one `admin` account whose password is stored as an argon2 hash. At first start the
//! service makes a random password, writes it to `<data-dir>/initial-admin-password` (mode 0600, the way
//! Jenkins does; removed at the first password change) and prints it once. Logging in gives a session token
//! (12 h) that the console sends as `Authorization: Bearer …`; a session has every right of the service API.
//! Only the tokens' SHA-256 is kept, in the store (`ConsoleAccess`): every instance on one database accepts a
//! session any of them opened, and a restart signs nobody out.
//!
//! Argon2 costs 19 MiB and tens of milliseconds a call, so nobody may make the service run it without bound:
//! [`LoginThrottle`] counts each attempt before it is verified, and [`PasswordWork`] runs it off the async
//! workers, [`ARGON2_CONCURRENCY`] at a time.

use std::net::IpAddr;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use dps_core::{DpsError, ErrorKind};
use dps_crypto::Secret;
use dps_store::{AttemptWindow, ConsoleAccess};
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

/// The store's failure as the console sees it (the reason is logged).
fn unavailable(e: impl std::fmt::Display) -> DpsError {
    tracing::error!(error = %e, "cannot read or write the console's sign-in state");
    DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
}

/// Signed-in console sessions, in the store: every instance on one database knows every session.
pub struct Sessions {
    store: Arc<dyn ConsoleAccess>,
}

impl Sessions {
    pub fn new(store: Arc<dyn ConsoleAccess>) -> Self {
        Self { store }
    }

    /// A new session; returns the token and its expiry.
    pub async fn open(&self, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), DpsError> {
        let mut raw = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut raw);
        let token = URL_SAFE_NO_PAD.encode(raw);
        let expires = now + Duration::hours(SESSION_HOURS);
        self.store.open_session(&token_key(&token), expires, now).await.map_err(unavailable)?;
        Ok((token, expires))
    }

    pub async fn check(&self, token: &str, now: DateTime<Utc>) -> Result<(), DpsError> {
        match self.store.session_expiry(&token_key(token)).await.map_err(unavailable)? {
            Some(e) if e > now => Ok(()),
            Some(_) => Err(DpsError::unauthorized("the console session expired; sign in again")),
            None => Err(DpsError::unauthorized("unknown console session; sign in again")),
        }
    }

    pub async fn close(&self, token: &str) -> Result<(), DpsError> {
        self.store.close_session(&token_key(token)).await.map_err(unavailable)
    }

    /// Every session ends (the password changed).
    pub async fn close_all(&self) -> Result<(), DpsError> {
        self.store.close_all_sessions().await.map_err(unavailable)
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
}

impl Default for ThrottleLimits {
    fn default() -> Self {
        Self { per_address: 5, global: 30, window: Duration::minutes(1) }
    }
}

/// Whole seconds until the window ends (at least 1).
fn retry_after(w: &AttemptWindow, now: DateTime<Utc>, length: Duration) -> u32 {
    let left = (w.since + length - now).num_milliseconds().max(0);
    u32::try_from((left + 999) / 1000).unwrap_or(u32::MAX).max(1)
}

/// Sign-in attempts per source address and globally (see [`ThrottleLimits`]), counted in the store: the limits
/// hold for every instance on one database together. Over a limit: 429001 with the seconds until the window
/// ends. A successful sign-in forgets its address's attempts.
pub struct LoginThrottle {
    limits: ThrottleLimits,
    store: Arc<dyn ConsoleAccess>,
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

fn address_key(ip: IpAddr) -> String {
    format!("ip:{}", throttle_key(ip))
}

const GLOBAL_KEY: &str = "global";

fn throttled(message: &str, retry_after: u32) -> DpsError {
    let mut e = DpsError::new(ErrorKind::Throttled, message);
    e.retry_after = Some(retry_after);
    e
}

impl LoginThrottle {
    pub fn new(limits: ThrottleLimits, store: Arc<dyn ConsoleAccess>) -> Self {
        Self { limits, store }
    }

    /// Counts one attempt from `ip` — before anything is verified — or refuses it. The address is counted
    /// first: an address over its limit does not spend the global count others need.
    pub async fn admit(&self, ip: IpAddr, now: DateTime<Utc>) -> Result<(), DpsError> {
        let l = self.limits;
        let w = self.store.count_attempt(&address_key(ip), l.per_address, now, l.window).await.map_err(unavailable)?;
        if !w.admitted {
            return Err(throttled("too many sign-in attempts from this address; wait a minute", retry_after(&w, now, l.window)));
        }
        let g = self.store.count_attempt(GLOBAL_KEY, l.global, now, l.window).await.map_err(unavailable)?;
        if !g.admitted {
            return Err(throttled("too many sign-in attempts; wait and try again", retry_after(&g, now, l.window)));
        }
        Ok(())
    }

    /// The right password: the address's attempts are forgotten.
    pub async fn succeeded(&self, ip: IpAddr) -> Result<(), DpsError> {
        self.store.forget_attempts(&address_key(ip)).await.map_err(unavailable)
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
        let h = hash_password(&p).expect("hash password");
        assert!(h.starts_with("$argon2"));
        assert!(!h.contains(&p));
        assert!(verify_password(&p, &h));
        assert!(!verify_password("wrong password", &h));
        assert!(!verify_password(&p, "not a hash"));
    }

    async fn store() -> (Arc<dyn ConsoleAccess>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let key = Arc::new(dps_crypto::MasterKey::generate().0);
        let s = dps_store::SqliteStore::open(&dir.path().join("dps.sqlite"), key).await.expect("opens");
        (Arc::new(s), dir)
    }

    #[tokio::test]
    async fn sessions_expire_and_close() {
        let (store, _dir) = store().await;
        let s = Sessions::new(store);
        let now = DateTime::<Utc>::UNIX_EPOCH + Duration::days(20000);
        let (t, exp) = s.open(now).await.expect("opens");
        assert!(s.check(&t, now).await.is_ok());
        assert!(s.check(&t, exp + Duration::seconds(1)).await.is_err());
        assert!(s.check("forged", now).await.is_err());
        assert!(s.close(&t).await.is_ok());
        assert!(s.check(&t, now).await.is_err());
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + Duration::days(20000) + Duration::seconds(secs)
    }

    async fn small() -> (LoginThrottle, tempfile::TempDir) {
        let (store, dir) = store().await;
        (LoginThrottle::new(ThrottleLimits { per_address: 2, global: 5, window: Duration::minutes(1) }, store), dir)
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test]
    async fn attempts_are_counted_per_address_until_the_window_ends() {
        let (t, _dir) = small().await;
        assert!(t.admit(ip(1), at(0)).await.is_ok() && t.admit(ip(1), at(1)).await.is_ok());
        let e = t.admit(ip(1), at(20)).await.err().unwrap_or_else(|| panic!("a third attempt was admitted"));
        assert_eq!((e.kind, e.retry_after), (ErrorKind::Throttled, Some(40)), "until the window that began at 0 s ends");
        assert!(t.admit(ip(2), at(20)).await.is_ok(), "another address has its own count");
        assert!(t.admit(ip(1), at(60)).await.is_ok(), "a new window");
        assert!(t.succeeded(ip(1)).await.is_ok());
        assert!(t.admit(ip(1), at(61)).await.is_ok() && t.admit(ip(1), at(61)).await.is_ok(), "the right password clears the count");
    }

    #[tokio::test]
    async fn every_address_together_has_a_limit() {
        let (t, _dir) = small().await;
        for (n, when) in [(1, 0), (1, 1), (2, 2), (2, 3), (3, 4)] {
            assert!(t.admit(ip(n), at(when)).await.is_ok());
        }
        let e = t.admit(ip(3), at(30)).await.err().unwrap_or_else(|| panic!("over the global limit"));
        assert_eq!(e.retry_after, Some(30));
        assert!(t.admit(ip(4), at(59)).await.is_err(), "a new address too");
        assert!(t.admit(ip(4), at(60)).await.is_ok());
    }

    #[tokio::test]
    async fn an_ipv6_64_counts_as_one_address() {
        let (t, _dir) = small().await;
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("parses");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("parses");
        assert!(t.admit(a, at(0)).await.is_ok() && t.admit(b, at(0)).await.is_ok());
        assert!(t.admit(a, at(0)).await.is_err());
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().expect("parses");
        assert_eq!(throttle_key(mapped), ip(7));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2_waits_for_a_permit() {
        let work = Arc::new(PasswordWork::default());
        let hash = work.hash("a password of ten").await.expect("hash");
        let held = Arc::clone(&work.permits).acquire_many_owned(ARGON2_CONCURRENCY as u32).await.expect("acquire many owned");
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
