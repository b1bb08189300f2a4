//! Linked hubs; the connector's connection string is sealed (`hub/<host>/connectionString`).

use async_trait::async_trait;
use dps_core::ports::{HubStore, StoreError, StoreResult};
use dps_proto::LinkedHub;
use sqlx::Row;

use crate::{backend, from_json, to_json, SqliteStore};

#[async_trait]
impl HubStore for SqliteStore {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        let rows =
            sqlx::query("SELECT host_key, doc, secrets FROM linked_hubs ORDER BY host_key").fetch_all(&self.pool).await.map_err(backend)?;
        let decode = |r: &sqlx::sqlite::SqliteRow| -> StoreResult<LinkedHub> {
            let mut hub: LinkedHub = from_json(r.get::<&str, _>("doc"))?;
            if let Some(sealed) = r.get::<Option<&str>, _>("secrets") {
                let key: &str = r.get("host_key");
                hub.connection_string = Some(self.open_sealed(sealed, &format!("hub/{key}/connectionString"))?);
            }
            Ok(hub)
        };
        Ok(self.decode_or_quarantine(crate::quarantine::HUBS, rows, |r| r.get::<String, _>("host_key"), decode).await)
    }

    async fn put_hub(&self, mut hub: LinkedHub) -> StoreResult<()> {
        let store = self.clone();
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = hub.host_name.to_ascii_lowercase();
                let sealed = hub.connection_string.take().map(|cs| store.seal(&cs, &format!("hub/{key}/connectionString")));
                sqlx::query(
                    "INSERT INTO linked_hubs (host_key, doc, secrets) VALUES (?, ?, ?)
                     ON CONFLICT(host_key) DO UPDATE SET doc = excluded.doc, secrets = excluded.secrets",
                )
                .bind(&key)
                .bind(to_json(&hub)?)
                .bind(sealed)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_hub(&self, host_name: &str) -> StoreResult<()> {
        let host_name = host_name.to_owned();
        self.write_config(move |tx| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM linked_hubs WHERE host_key = ?")
                    .bind(host_name.to_ascii_lowercase())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }
}
