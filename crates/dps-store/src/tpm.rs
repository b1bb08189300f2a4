//! TPM challenges (§4.4.3): K1 sealed at rest, claimed once by the operation that answered it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_core::ports::{StoreResult, TpmChallenge, TpmChallengeStore};
use dps_crypto::Secret;
use dps_proto::format_time;
use sqlx::Row;

use crate::{backend, SqliteStore};

fn aad(key: &str) -> String {
    format!("tpm-challenge/{key}")
}

#[async_trait]
impl TpmChallengeStore for SqliteStore {
    async fn put_tpm_challenge(&self, c: &TpmChallenge) -> StoreResult<()> {
        let key = c.registration_id.to_ascii_lowercase();
        let c = c.to_owned();
        let store = self.clone();
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO tpm_challenges (registration_key, key_sealed, expires, operation_id, endorsement_key, storage_root_key)
                     VALUES (?, ?, ?, NULL, ?, ?)
                     ON CONFLICT(registration_key) DO UPDATE SET key_sealed = excluded.key_sealed, expires = excluded.expires,
                     operation_id = NULL, endorsement_key = excluded.endorsement_key, storage_root_key = excluded.storage_root_key",
                )
                .bind(&key)
                .bind(store.seal(c.key.expose(), &aad(&key)))
                .bind(format_time(&c.expires))
                .bind(&c.endorsement_key)
                .bind(&c.storage_root_key)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_tpm_challenge(&self, registration_id: &str) -> StoreResult<Option<TpmChallenge>> {
        let key = registration_id.to_ascii_lowercase();
        let row = sqlx::query(
            "SELECT key_sealed, expires, operation_id, endorsement_key, storage_root_key FROM tpm_challenges WHERE registration_key = ?",
        )
        .bind(&key)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let secret = self.open_sealed(row.get::<&str, _>("key_sealed"), &aad(&key))?;
        let expires = DateTime::parse_from_rfc3339(row.get::<&str, _>("expires"))
            .map_err(|e| dps_core::ports::StoreError::backend(format!("a TPM challenge's expiry does not parse: {e}")))?
            .with_timezone(&Utc);
        Ok(Some(TpmChallenge {
            registration_id: registration_id.to_owned(),
            key: Secret::new(secret),
            expires,
            operation_id: row.get::<Option<String>, _>("operation_id"),
            endorsement_key: row.get::<Vec<u8>, _>("endorsement_key"),
            storage_root_key: row.get::<Vec<u8>, _>("storage_root_key"),
        }))
    }

    async fn claim_tpm_challenge(&self, registration_id: &str, operation_id: &str) -> StoreResult<bool> {
        let registration_id = registration_id.to_owned();
        let operation_id = operation_id.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE tpm_challenges SET operation_id = ? WHERE registration_key = ? AND operation_id IS NULL")
                    .bind(operation_id)
                    .bind(registration_id.to_ascii_lowercase())
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn purge_tpm_challenges(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.write(move |tx| {
            Box::pin(async move {
                let r = sqlx::query("DELETE FROM tpm_challenges WHERE expires < ?")
                    .bind(format_time(&before))
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(r.rows_affected())
            })
        })
        .await
    }
}
