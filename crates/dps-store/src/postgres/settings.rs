//! Service-wide settings (ID scope, admin password hash, limits profile) as key/value rows.

use async_trait::async_trait;
use dps_core::ports::StoreResult;
use sqlx::Row;

use super::PgStore;
use crate::{backend, Settings};

#[async_trait]
impl Settings for PgStore {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1").bind(key).fetch_optional(&self.pool).await.map_err(backend)?;
        Ok(row.map(|r| r.get("value")))
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                    .bind(&key)
                    .bind(&value)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}
