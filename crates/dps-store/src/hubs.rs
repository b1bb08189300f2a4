//! Linked hubs.

use async_trait::async_trait;
use dps_core::ports::{HubStore, StoreError, StoreResult};
use dps_proto::LinkedHub;
use sqlx::Row;

use crate::{backend, from_json, to_json, SqliteStore};

#[async_trait]
impl HubStore for SqliteStore {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        let rows = sqlx::query("SELECT doc FROM linked_hubs ORDER BY host_key").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }

    async fn put_hub(&self, hub: LinkedHub) -> StoreResult<()> {
        let _w = self.write.lock().await;
        sqlx::query("INSERT INTO linked_hubs (host_key, doc) VALUES (?, ?) ON CONFLICT(host_key) DO UPDATE SET doc = excluded.doc")
            .bind(hub.host_name.to_ascii_lowercase())
            .bind(to_json(&hub)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn delete_hub(&self, host_name: &str) -> StoreResult<()> {
        let _w = self.write.lock().await;
        let r = sqlx::query("DELETE FROM linked_hubs WHERE host_key = ?")
            .bind(host_name.to_ascii_lowercase())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}
