//! Service-wide settings (ID scope, default allocation policy) as key/value rows.

use async_trait::async_trait;
use dps_core::ports::StoreResult;
use sqlx::Row;

use crate::{backend, SqliteStore};

#[async_trait]
pub trait Settings: Send + Sync {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>>;
    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()>;
}

#[async_trait]
impl Settings for SqliteStore {
    async fn get_setting(&self, key: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = ?").bind(key).fetch_optional(&self.pool).await.map_err(backend)?;
        Ok(row.map(|r| r.get("value")))
    }

    async fn put_setting(&self, key: &str, value: &str) -> StoreResult<()> {
        let key = key.to_owned();
        let value = value.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}
