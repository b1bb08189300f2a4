//! The console's sign-in state (see `crate::console`): sessions and sign-in attempts shared by every instance.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use dps_core::ports::StoreResult;
use dps_proto::format_time;
use sqlx::Row;

use super::PgStore;
use crate::backend;
use crate::console::{parse_time, stored_window, AttemptWindow, ConsoleAccess};

#[async_trait]
impl ConsoleAccess for PgStore {
    async fn open_session(&self, token_key: &str, expires: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<()> {
        let (key, expires, now) = (token_key.to_owned(), format_time(&expires), format_time(&now));
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM console_sessions WHERE expires < $1").bind(&now).execute(&mut *tx).await.map_err(backend)?;
                sqlx::query("INSERT INTO console_sessions (token_key, expires) VALUES ($1, $2) ON CONFLICT (token_key) DO UPDATE SET expires = excluded.expires")
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
        let key = token_key.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM console_sessions WHERE token_key = $1").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn close_all_sessions(&self) -> StoreResult<()> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM console_sessions").execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn count_attempt(&self, key: &str, limit: u32, now: DateTime<Utc>, length: Duration) -> StoreResult<AttemptWindow> {
        let key = key.to_owned();
        let cutoff = format_time(&(now - length));
        self.write(move |tx| {
            Box::pin(async move {
                // The row is made first and locked: counts from other instances wait for this one.
                sqlx::query("DELETE FROM login_attempts WHERE since < $1 AND key <> $2").bind(&cutoff).bind(&key).execute(&mut *tx).await.map_err(backend)?;
                sqlx::query("INSERT INTO login_attempts (key, count, since) VALUES ($1, 0, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(&key)
                    .bind(format_time(&now))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                let row = sqlx::query("SELECT count, since FROM login_attempts WHERE key = $1 FOR UPDATE").bind(&key).fetch_optional(&mut *tx).await.map_err(backend)?;
                let stored = row.map(|r| stored_window(i64::from(r.get::<i32, _>("count")), r.get::<&str, _>("since"))).transpose()?;
                let w = AttemptWindow::next(stored, limit, now, length);
                sqlx::query("INSERT INTO login_attempts (key, count, since) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET count = excluded.count, since = excluded.since")
                    .bind(&key)
                    .bind(i32::try_from(w.count).unwrap_or(i32::MAX))
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
        let key = key.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM login_attempts WHERE key = $1").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}
