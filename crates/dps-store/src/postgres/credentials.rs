//! Credential policies (an uploaded CA's key sealed, `credential-policy/<name>`) and the issuance log; policy
//! writes in the configuration writers' turn (`write_config`).

use async_trait::async_trait;
use dps_core::model::Precondition;
use dps_core::ports::{CredentialStore, StoreError, StoreResult, StoredCredentialPolicy};
use dps_crypto::Secret;
use dps_proto::{CredentialPolicy, IssuedCertificate};
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::credentials::{issued_keys, key_aad, policy_doc};
use crate::enrollments::check;
use crate::{backend, from_json, to_json};

async fn current(tx: &mut PgConnection, key: &str) -> StoreResult<Option<CredentialPolicy>> {
    sqlx::query("SELECT doc FROM credential_policies WHERE name_key = $1")
        .bind(key)
        .fetch_optional(tx)
        .await
        .map_err(backend)?
        .map(|r| from_json(r.get::<&str, _>("doc")))
        .transpose()
}

#[async_trait]
impl CredentialStore for PgStore {
    async fn list_credential_policies(&self) -> StoreResult<Vec<CredentialPolicy>> {
        let rows = sqlx::query("SELECT doc FROM credential_policies ORDER BY name_key").fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }

    async fn get_credential_policy(&self, name: &str) -> StoreResult<Option<StoredCredentialPolicy>> {
        let key = name.to_ascii_lowercase();
        let row = sqlx::query("SELECT doc, key_sealed FROM credential_policies WHERE name_key = $1")
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
                    "INSERT INTO credential_policies (name_key, doc, key_sealed) VALUES ($1, $2, $3)
                     ON CONFLICT (name_key) DO UPDATE SET doc = excluded.doc, key_sealed = excluded.key_sealed",
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
                sqlx::query("DELETE FROM credential_policies WHERE name_key = $1").bind(&key).execute(&mut *tx).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn record_issued(&self, c: &IssuedCertificate) -> StoreResult<()> {
        let (serial, registration, issued) = issued_keys(c);
        sqlx::query("INSERT INTO issued_certificates (serial, registration_key, issued, doc) VALUES ($1, $2, $3, $4)")
            .bind(serial)
            .bind(registration)
            .bind(issued)
            .bind(to_json(c)?)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn list_issued(&self, registration_id: Option<&str>, limit: usize) -> StoreResult<Vec<IssuedCertificate>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match registration_id {
            Some(id) => {
                sqlx::query("SELECT doc FROM issued_certificates WHERE registration_key = $1 ORDER BY issued DESC, serial LIMIT $2")
                    .bind(id.to_ascii_lowercase())
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                sqlx::query("SELECT doc FROM issued_certificates ORDER BY issued DESC, serial LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }
}
