//! Shared access policies; both keys sealed (`policy/<name>/primary|secondary`).

use async_trait::async_trait;
use dps_core::model::{AccessPolicy, Right};
use dps_core::ports::{PolicyStore, StoreResult};
use dps_crypto::Secret;
use sqlx::Row;

use super::PgStore;
use crate::backend;

#[async_trait]
impl PolicyStore for PgStore {
    async fn list_policies(&self) -> StoreResult<Vec<AccessPolicy>> {
        let rows = sqlx::query("SELECT name_key, name, rights, primary_sealed, secondary_sealed FROM access_policies ORDER BY name_key")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut out = Vec::new();
        for r in rows {
            let key: String = r.get("name_key");
            let rights: String = r.get("rights");
            out.push(AccessPolicy {
                name: r.get("name"),
                primary_key: Secret::new(self.open_sealed(r.get::<&str, _>("primary_sealed"), &format!("policy/{key}/primary"))?),
                secondary_key: Secret::new(self.open_sealed(r.get::<&str, _>("secondary_sealed"), &format!("policy/{key}/secondary"))?),
                rights: rights.split(',').filter_map(Right::parse).collect(),
            });
        }
        Ok(out)
    }

    async fn put_policy(&self, p: AccessPolicy) -> StoreResult<()> {
        let key = p.name.to_ascii_lowercase();
        let rights = p.rights.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",");
        let primary = self.seal(p.primary_key.expose(), &format!("policy/{key}/primary"));
        let secondary = self.seal(p.secondary_key.expose(), &format!("policy/{key}/secondary"));
        let name = p.name.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO access_policies (name_key, name, rights, primary_sealed, secondary_sealed) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (name_key) DO UPDATE SET name = excluded.name, rights = excluded.rights,
                       primary_sealed = excluded.primary_sealed, secondary_sealed = excluded.secondary_sealed",
                )
                .bind(&key)
                .bind(&name)
                .bind(&rights)
                .bind(&primary)
                .bind(&secondary)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }
}
