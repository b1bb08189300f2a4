//! The built-in hub's device registry; device keys sealed (`identity/<hub>/<device>`).

use async_trait::async_trait;
use dps_core::ports::{DeviceRegistryStore, StoreResult};
use dps_crypto::{MasterKey, Secret};
use dps_proto::DeviceIdentity;
use sqlx::{Row, SqliteConnection};

use crate::{backend, from_json, to_json, SqliteStore};

/// An identity as its row: keys sealed (`identity/<hub>/<device>`), before the write begins.
pub(crate) struct IdentityRow {
    pub hub: String,
    pub device: String,
    pub identity: DeviceIdentity,
    pub sealed: Option<String>,
}

pub(crate) fn identity_row(master: &MasterKey, identity: &DeviceIdentity, keys: Option<(&Secret, &Secret)>) -> IdentityRow {
    let (hub, device) = (identity.hub_host_name.to_ascii_lowercase(), identity.device_id.to_ascii_lowercase());
    let sealed = keys.map(|(p, s)| crate::seal(master, &format!("{}\n{}", p.expose(), s.expose()), &format!("identity/{hub}/{device}")));
    IdentityRow { hub, device, identity: identity.clone(), sealed }
}

/// Primary and secondary key from their sealed form's plaintext (`primary\nsecondary`).
pub(crate) fn keys_from_text(text: &str) -> (Secret, Secret) {
    let (p, s) = text.split_once('\n').unwrap_or((text, ""));
    (Secret::new(p), Secret::new(s))
}

/// Writes an identity inside a write; one without a twin keeps the twin stored for it.
pub(crate) async fn upsert_identity(tx: &mut SqliteConnection, row: IdentityRow) -> StoreResult<()> {
    let IdentityRow { hub, device, mut identity, sealed } = row;
    if identity.initial_twin.is_none() {
        let current: Option<DeviceIdentity> = sqlx::query("SELECT doc FROM device_identities WHERE hub_key = ? AND device_key = ?")
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
        "INSERT INTO device_identities (hub_key, device_key, doc, keys_sealed) VALUES (?, ?, ?, ?)
         ON CONFLICT(hub_key, device_key) DO UPDATE SET doc = excluded.doc, keys_sealed = excluded.keys_sealed",
    )
    .bind(&hub)
    .bind(&device)
    .bind(to_json(&identity)?)
    .bind(sealed)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(())
}

#[async_trait]
impl DeviceRegistryStore for SqliteStore {
    async fn put_identity(&self, identity: &DeviceIdentity, keys: Option<(&Secret, &Secret)>) -> StoreResult<()> {
        let row = identity_row(&self.key, identity, keys);
        self.write(move |tx| Box::pin(upsert_identity(tx, row))).await
    }

    async fn get_identity(&self, hub: &str, device_id: &str) -> StoreResult<Option<DeviceIdentity>> {
        let row = sqlx::query("SELECT doc FROM device_identities WHERE hub_key = ? AND device_key = ?")
            .bind(hub.to_ascii_lowercase())
            .bind(device_id.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
    }

    async fn delete_identity(&self, hub: &str, device_id: &str) -> StoreResult<()> {
        let hub = hub.to_owned();
        let device_id = device_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("DELETE FROM device_identities WHERE hub_key = ? AND device_key = ?")
                    .bind(hub.to_ascii_lowercase())
                    .bind(device_id.to_ascii_lowercase())
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
        let rows = sqlx::query("SELECT doc FROM device_identities WHERE (? IS NULL OR hub_key = ?) ORDER BY hub_key, device_key")
            .bind(&hub)
            .bind(&hub)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }
}

impl SqliteStore {
    /// The keys stored with an identity (primary, secondary), for tests and the console's device view.
    pub async fn identity_keys(&self, hub: &str, device_id: &str) -> StoreResult<Option<(Secret, Secret)>> {
        let (hub, dev) = (hub.to_ascii_lowercase(), device_id.to_ascii_lowercase());
        let row = sqlx::query("SELECT keys_sealed FROM device_identities WHERE hub_key = ? AND device_key = ?")
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
