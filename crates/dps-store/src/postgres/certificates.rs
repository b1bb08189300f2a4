//! CA certificates; conditional writes in the configuration writers' turn (`write_config`).

use async_trait::async_trait;
use dps_core::model::Precondition;
use dps_core::ports::{CertificateStore, StoreError, StoreResult};
use dps_proto::CaCertificate;
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::enrollments::check;
use crate::{backend, from_json, to_json};

async fn current(tx: &mut PgConnection, key: &str) -> StoreResult<Option<CaCertificate>> {
    sqlx::query("SELECT doc FROM ca_certificates WHERE name_key = $1")
        .bind(key)
        .fetch_optional(tx)
        .await
        .map_err(backend)?
        .map(|r| from_json(r.get::<&str, _>("doc")))
        .transpose()
}

#[async_trait]
impl CertificateStore for PgStore {
    async fn list_cas(&self) -> StoreResult<Vec<CaCertificate>> {
        let rows =
            sqlx::query("SELECT name_key, doc FROM ca_certificates ORDER BY name_key").fetch_all(&self.pool).await.map_err(backend)?;
        Ok(self
            .decode_or_quarantine(crate::quarantine::CAS, rows, |r| r.get::<String, _>("name_key"), |r| from_json(r.get::<&str, _>("doc")))
            .await)
    }

    async fn get_ca(&self, name: &str) -> StoreResult<Option<CaCertificate>> {
        let row = sqlx::query("SELECT doc FROM ca_certificates WHERE name_key = $1")
            .bind(name.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
    }

    async fn put_ca(&self, mut ca: CaCertificate, pre: Precondition) -> StoreResult<CaCertificate> {
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = ca.name.to_ascii_lowercase();
                let current = current(&mut *tx, &key).await?;
                check(&pre, current.as_ref().map(|c| c.etag.clone()))?;
                if let Some(c) = current {
                    ca.created_date_time_utc = c.created_date_time_utc;
                }
                sqlx::query(
                    "INSERT INTO ca_certificates (name_key, doc) VALUES ($1, $2) ON CONFLICT (name_key) DO UPDATE SET doc = excluded.doc",
                )
                .bind(&key)
                .bind(to_json(&ca)?)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(ca)
            })
        })
        .await
    }

    async fn delete_ca(&self, name: &str, pre: Precondition) -> StoreResult<()> {
        let key = name.to_ascii_lowercase();
        self.write_config(move |tx| {
            Box::pin(async move {
                let Some(current) = current(&mut *tx, &key).await? else { return Err(StoreError::NotFound) };
                check(&pre, Some(current.etag.clone()))?;
                sqlx::query("DELETE FROM ca_certificates WHERE name_key = $1").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}
