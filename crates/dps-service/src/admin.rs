//! The console's access: one `admin` account whose password is stored as an argon2 hash. At first start the
//! service makes a random password, writes it to `<data-dir>/initial-admin-password` (mode 0600, the way
//! Jenkins does) and prints it once. Logging in gives a session token (12 h) that the console sends as
//! `Authorization: Bearer …`; a session has every right of the service API. Only the tokens' SHA-256 is
//! kept, in memory (a restart signs everyone out).

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use dps_core::{DpsError, ErrorKind};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const ADMIN_USER: &str = "admin";
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

/// Failed sign-ins per address: after 5 within a minute, the address waits (429 with retry-after).
#[derive(Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<std::net::IpAddr, (u32, DateTime<Utc>)>>,
}

impl LoginThrottle {
    pub fn check(&self, ip: std::net::IpAddr, now: DateTime<Utc>) -> Result<(), DpsError> {
        let m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(&ip) {
            Some((n, since)) if *n >= 5 && now - *since < Duration::minutes(1) => {
                let mut e = DpsError::new(ErrorKind::Throttled, "too many failed sign-ins from this address; wait a minute");
                e.retry_after = Some(60);
                Err(e)
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: std::net::IpAddr, now: DateTime<Utc>) {
        let mut m = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(ip).or_insert((0, now));
        if now - e.1 >= Duration::minutes(1) {
            *e = (0, now);
        }
        e.0 += 1;
    }

    pub fn succeeded(&self, ip: std::net::IpAddr) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&ip);
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
}
