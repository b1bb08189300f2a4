//! The built-in hub's device registry; device keys sealed (`identity/<hub>/<device>`).

use async_trait::async_trait;
use dps_core::ports::{DeviceRegistryStore, StoreResult};
use dps_crypto::Secret;
use dps_proto::DeviceIdentity;
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::registry::{identity_row, keys_from_text, IdentityRow};
use crate::{backend, from_json, to_json};

/// Writes an identity inside a write; one without a twin keeps the twin stored for it (the stored row is read
/// `FOR UPDATE`: a concurrent write of the same identity waits).
pub(super) async fn upsert_identity(tx: &mut PgConnection, row: IdentityRow) -> StoreResult<()> {
    let IdentityRow { hub, device, mut identity, sealed } = row;
    if identity.initial_twin.is_none() {
        let current: Option<DeviceIdentity> =
            sqlx::query("SELECT doc FROM device_identities WHERE hub_key = $1 AND device_key = $2 FOR UPDATE")
                .bind(&hub)
                .bind(&device)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?
                .map(|r| from_json(r.get::<&str, _>("doc")))
                .transpose()?;
        identity.initial_twin = current.and_then(|c| c.initial_twin);
    }
    sqlx::query(
        "INSERT INTO device_identities (hub_key, device_key, doc, keys_sealed) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hub_key, device_key) DO UPDATE SET doc = excluded.doc, keys_sealed = excluded.keys_sealed",
    )
    .bind(&hub)
    .bind(&device)
    .bind(to_json(&identity)?)
    .bind(&sealed)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl DeviceRegistryStore for PgStore {
    async fn put_identity(&self, identity: &DeviceIdentity, keys: Option<(&Secret, &Secret)>) -> StoreResult<()> {
        let row = identity_row(&self.key, identity, keys);
        self.write(move |tx| Box::pin(upsert_identity(tx, row))).await
    }

    async fn get_identity(&self, hub: &str, device_id: &str) -> StoreResult<Option<DeviceIdentity>> {
        let row = sqlx::query("SELECT doc FROM device_identities WHERE hub_key = $1 AND device_key = $2")
            .bind(hub.to_ascii_lowercase())
            .bind(device_id.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
    }

    async fn delete_identity(&self, hub: &str, device_id: &str) -> StoreResult<()> {
        let (hub, device) = (hub.to_ascii_lowercase(), device_id.to_ascii_lowercase());
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM device_identities WHERE hub_key = $1 AND device_key = $2")
                    .bind(&hub)
                    .bind(&device)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn list_identities(&self, hub: Option<&str>) -> StoreResult<Vec<DeviceIdentity>> {
        let hub = hub.map(str::to_ascii_lowercase);
        let rows = sqlx::query("SELECT doc FROM device_identities WHERE ($1::text IS NULL OR hub_key = $1) ORDER BY hub_key, device_key")
            .bind(&hub)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }
}

impl PgStore {
    /// The keys stored with an identity (primary, secondary), for tests and the console's device view.
    pub async fn identity_keys(&self, hub: &str, device_id: &str) -> StoreResult<Option<(Secret, Secret)>> {
        let (hub, dev) = (hub.to_ascii_lowercase(), device_id.to_ascii_lowercase());
        let row = sqlx::query("SELECT keys_sealed FROM device_identities WHERE hub_key = $1 AND device_key = $2")
            .bind(&hub)
            .bind(&dev)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(sealed) = row.and_then(|r| r.get::<Option<String>, _>("keys_sealed")) else { return Ok(None) };
        let text = self.open_sealed(&sealed, &format!("identity/{hub}/{dev}"))?;
        Ok(Some(keys_from_text(&text)))
    }
}
