//! The console's sign-in state in the store, so that every instance on one database knows every session and
//! counts every sign-in attempt (issue #15 item 2): sessions by the SHA-256 of their token (the token itself is
//! never stored) and attempts in fixed windows per key.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use dps_core::ports::{StoreError, StoreResult};
use dps_proto::format_time;
use sqlx::Row;

use crate::{backend, SqliteStore};

/// A window of sign-in attempts after [`ConsoleAccess::count_attempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptWindow {
    /// Attempts counted in the window (this one included when admitted).
    pub count: u32,
    pub since: DateTime<Utc>,
    /// Whether this attempt was under the limit (and counted).
    pub admitted: bool,
}

impl AttemptWindow {
    /// The window `stored` (count, start) continues at `now`, with one more attempt when under `limit`.
    pub fn next(stored: Option<(u32, DateTime<Utc>)>, limit: u32, now: DateTime<Utc>, length: Duration) -> Self {
        let (count, since) = match stored {
            Some((count, since)) if now >= since && now - since < length => (count, since),
            _ => (0, now),
        };
        if count >= limit {
            Self { count, since, admitted: false }
        } else {
            Self { count: count + 1, since, admitted: true }
        }
    }
}

#[async_trait]
pub trait ConsoleAccess: Send + Sync {
    /// Keeps a session (its token's hash) until `expires`; sessions that ended before `now` go.
    async fn open_session(&self, token_key: &str, expires: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<()>;
    /// When the session ends; `None` for an unknown (or closed) one.
    async fn session_expiry(&self, token_key: &str) -> StoreResult<Option<DateTime<Utc>>>;
    async fn close_session(&self, token_key: &str) -> StoreResult<()>;
    /// Every session ends (the password changed).
    async fn close_all_sessions(&self) -> StoreResult<()>;
    /// Counts one attempt under `key` when its window (`length`, fixed from its first attempt) holds fewer than
    /// `limit`, atomically across instances; windows that ended go.
    async fn count_attempt(&self, key: &str, limit: u32, now: DateTime<Utc>, length: Duration) -> StoreResult<AttemptWindow>;
    /// Forgets the attempts under `key` (the right password).
    async fn forget_attempts(&self, key: &str) -> StoreResult<()>;
}

pub(crate) fn parse_time(text: &str) -> StoreResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| StoreError::backend(format!("bad time {text:?}: {e}")))
}

/// The stored (count, start) of an attempts row.
pub(crate) fn stored_window(count: i64, since: &str) -> StoreResult<(u32, DateTime<Utc>)> {
    Ok((u32::try_from(count).unwrap_or(u32::MAX), parse_time(since)?))
}

/// [`ConsoleAccess`] for a backend's store: the same SQL on both (`$n` placeholders, which SQLite reads too).
/// `$lock` ends the read of an attempts row: `FOR UPDATE` on PostgreSQL, where counts from other instances must
/// wait for this one (the row is made first so there is one to lock); nothing on SQLite, whose one writer already
/// serialises the counts.
macro_rules! console_access {
    ($store:ty, $lock:literal) => {
        #[async_trait]
        impl ConsoleAccess for $store {
            async fn open_session(&self, token_key: &str, expires: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<()> {
                let (key, expires, now) = (token_key.to_owned(), format_time(&expires), format_time(&now));
                self.write(move |tx| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM console_sessions WHERE expires < $1")
                            .bind(&now)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        sqlx::query(
                            "INSERT INTO console_sessions (token_key, expires) VALUES ($1, $2) \
                             ON CONFLICT (token_key) DO UPDATE SET expires = excluded.expires",
                        )
                        .bind(&key)
                        .bind(&expires)
                        .execute(&mut *tx)
                        .await
                        .map_err(backend)?;
                        Ok(())
                    })
                })
                .await
            }

            async fn session_expiry(&self, token_key: &str) -> StoreResult<Option<DateTime<Utc>>> {
                let row = sqlx::query("SELECT expires FROM console_sessions WHERE token_key = $1")
                    .bind(token_key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(backend)?;
                row.map(|r| parse_time(r.get::<&str, _>("expires"))).transpose()
            }

            async fn close_session(&self, token_key: &str) -> StoreResult<()> {
                self.statement("DELETE FROM console_sessions WHERE token_key = $1", Some(token_key)).await
            }

            async fn close_all_sessions(&self) -> StoreResult<()> {
                self.statement("DELETE FROM console_sessions", None).await
            }

            async fn count_attempt(&self, key: &str, limit: u32, now: DateTime<Utc>, length: Duration) -> StoreResult<AttemptWindow> {
                let key = key.to_owned();
                let cutoff = format_time(&(now - length));
                self.write(move |tx| {
                    Box::pin(async move {
                        sqlx::query("DELETE FROM login_attempts WHERE since < $1 AND key <> $2")
                            .bind(&cutoff)
                            .bind(&key)
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        sqlx::query("INSERT INTO login_attempts (key, count, since) VALUES ($1, 0, $2) ON CONFLICT (key) DO NOTHING")
                            .bind(&key)
                            .bind(format_time(&now))
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        let row = sqlx::query(concat!("SELECT count, since FROM login_attempts WHERE key = $1", $lock))
                            .bind(&key)
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(backend)?;
                        let stored = row.map(|r| stored_window(r.get("count"), r.get::<&str, _>("since"))).transpose()?;
                        let w = AttemptWindow::next(stored, limit, now, length);
                        sqlx::query("UPDATE login_attempts SET count = $2, since = $3 WHERE key = $1")
                            .bind(&key)
                            .bind(i64::from(w.count))
                            .bind(format_time(&w.since))
                            .execute(&mut *tx)
                            .await
                            .map_err(backend)?;
                        Ok(w)
                    })
                })
                .await
            }

            async fn forget_attempts(&self, key: &str) -> StoreResult<()> {
                self.statement("DELETE FROM login_attempts WHERE key = $1", Some(key)).await
            }
        }

        impl $store {
            /// Runs one write statement, with `arg` as `$1` when given.
            async fn statement(&self, sql: &'static str, arg: Option<&str>) -> StoreResult<()> {
                let arg = arg.map(str::to_owned);
                self.write(move |tx| {
                    Box::pin(async move {
                        let q = sqlx::query(sql);
                        let q = match arg {
                            Some(a) => q.bind(a),
                            None => q,
                        };
                        q.execute(&mut *tx).await.map_err(backend)?;
                        Ok(())
                    })
                })
                .await
            }
        }
    };
}

console_access!(SqliteStore, "");
#[cfg(feature = "postgres")]
console_access!(crate::PgStore, " FOR UPDATE");
