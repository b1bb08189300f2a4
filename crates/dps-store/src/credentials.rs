//! Credential policies (an uploaded CA's key sealed, `credential-policy/<name>`) and the issuance log.

use async_trait::async_trait;
use dps_core::model::Precondition;
use dps_core::ports::{CredentialStore, StoreError, StoreResult, StoredCredentialPolicy};
use dps_crypto::Secret;
use dps_proto::{CredentialPolicy, IssuedCertificate};
use sqlx::{Row, SqliteConnection};

use crate::enrollments::check;
use crate::{backend, from_json, to_json, SqliteStore};

/// The associated data an uploaded CA's key is sealed with.
pub(crate) fn key_aad(name_key: &str) -> String {
    format!("credential-policy/{name_key}")
}

/// The policy's document as stored: never its private key.
pub(crate) fn policy_doc(p: &CredentialPolicy) -> StoreResult<String> {
    to_json(&CredentialPolicy { private_key: None, ..p.clone() })
}

/// The row's issued certificate's columns: serial, registration key, time.
pub(crate) fn issued_keys(c: &IssuedCertificate) -> (String, String, String) {
    let issued = c.issued_date_time_utc.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default();
    (c.info.serial_number.clone(), c.registration_id.to_ascii_lowercase(), issued)
}

async fn current(tx: &mut SqliteConnection, key: &str) -> StoreResult<Option<CredentialPolicy>> {
    sqlx::query("SELECT doc FROM credential_policies WHERE name_key = ?")
        .bind(key)
        .fetch_optional(tx)
        .await
        .map_err(backend)?
        .map(|r| from_json(r.get::<&str, _>("doc")))
        .transpose()
}

#[async_trait]
impl CredentialStore for SqliteStore {
    async fn list_credential_policies(&self) -> StoreResult<Vec<CredentialPolicy>> {
        let rows = sqlx::query("SELECT doc FROM credential_policies ORDER BY name_key").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }

    async fn get_credential_policy(&self, name: &str) -> StoreResult<Option<StoredCredentialPolicy>> {
        let key = name.to_ascii_lowercase();
        let row = sqlx::query("SELECT doc, key_sealed FROM credential_policies WHERE name_key = ?")
            .bind(&key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        let sealed: Option<String> = r.get("key_sealed");
        let key = sealed.map(|s| self.open_sealed(&s, &key_aad(&key)).map(Secret::new)).transpose()?;
        Ok(Some(StoredCredentialPolicy { policy: from_json(r.get::<&str, _>("doc"))?, key }))
    }

    async fn put_credential_policy(&self, p: StoredCredentialPolicy, pre: Precondition) -> StoreResult<()> {
        let name_key = p.policy.name.to_ascii_lowercase();
        let sealed = p.key.as_ref().map(|k| self.seal(k.expose(), &key_aad(&name_key)));
        let doc = policy_doc(&p.policy)?;
        self.write_config(move |tx| {
            Box::pin(async move {
                check(&pre, current(&mut *tx, &name_key).await?.map(|c| c.etag))?;
                sqlx::query(
                    "INSERT INTO credential_policies (name_key, doc, key_sealed) VALUES (?, ?, ?)
                     ON CONFLICT(name_key) DO UPDATE SET doc = excluded.doc, key_sealed = excluded.key_sealed",
                )
                .bind(&name_key)
                .bind(doc)
                .bind(sealed)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn delete_credential_policy(&self, name: &str, pre: Precondition) -> StoreResult<()> {
        let key = name.to_ascii_lowercase();
        self.write_config(move |tx| {
            Box::pin(async move {
                let Some(c) = current(&mut *tx, &key).await? else { return Err(StoreError::NotFound) };
                check(&pre, Some(c.etag))?;
                sqlx::query("DELETE FROM credential_policies WHERE name_key = ?").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn record_issued(&self, c: &IssuedCertificate) -> StoreResult<()> {
        let (serial, registration, issued) = issued_keys(c);
        let doc = to_json(c)?;
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("INSERT INTO issued_certificates (serial, registration_key, issued, doc) VALUES (?, ?, ?, ?)")
                    .bind(serial)
                    .bind(registration)
                    .bind(issued)
                    .bind(doc)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn list_issued(&self, registration_id: Option<&str>, limit: usize) -> StoreResult<Vec<IssuedCertificate>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match registration_id {
            Some(id) => {
                sqlx::query("SELECT doc FROM issued_certificates WHERE registration_key = ? ORDER BY issued DESC, serial LIMIT ?")
                    .bind(id.to_ascii_lowercase())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT doc FROM issued_certificates ORDER BY issued DESC, serial LIMIT ?")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }
}
