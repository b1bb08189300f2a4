//! Linked hubs; the connector's connection string is sealed (`hub/<host>/connectionString`).

use async_trait::async_trait;
use dps_core::ports::{HubStore, StoreError, StoreResult};
use dps_proto::LinkedHub;
use sqlx::Row;

use super::PgStore;
use crate::{backend, from_json, to_json};

#[async_trait]
impl HubStore for PgStore {
    async fn list_hubs(&self) -> StoreResult<Vec<LinkedHub>> {
        let rows =
            sqlx::query("SELECT host_key, doc, secrets FROM linked_hubs ORDER BY host_key").fetch_all(&self.pool).await.map_err(backend)?;
        let decode = |r: &sqlx::postgres::PgRow| -> StoreResult<LinkedHub> {
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
        let key = hub.host_name.to_ascii_lowercase();
        let sealed = hub.connection_string.take().map(|cs| self.seal(&cs, &format!("hub/{key}/connectionString")));
        let doc = to_json(&hub)?;
        self.write_config(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO linked_hubs (host_key, doc, secrets) VALUES ($1, $2, $3)
                     ON CONFLICT (host_key) DO UPDATE SET doc = excluded.doc, secrets = excluded.secrets",
                )
                .bind(&key)
                .bind(&doc)
                .bind(&sealed)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_hub(&self, host_name: &str) -> StoreResult<()> {
        let key = host_name.to_ascii_lowercase();
        self.write_config(move |tx| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM linked_hubs WHERE host_key = $1").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                if r.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            })
        })
        .await
    }
}
