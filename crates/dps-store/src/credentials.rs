//! Credential policies (an uploaded CA's key sealed, `credential-policy/<name>`) and the issuance log. One
//! implementation for both backends ([`credential_store!`]): they differ only in their SQL's placeholders.

use dps_proto::{CredentialPolicy, IssuedCertificate};
use sqlx::SqliteConnection;

use crate::{to_json, SqliteStore};

/// The associated data an uploaded CA's key is sealed with.
pub(crate) fn key_aad(name_key: &str) -> String {
    format!("credential-policy/{name_key}")
}

/// The policy's document as stored: never its private key.
pub(crate) fn policy_doc(p: &CredentialPolicy) -> dps_core::ports::StoreResult<String> {
    to_json(&CredentialPolicy { private_key: None, ..p.clone() })
}

/// The row's issued certificate's columns: serial, registration key, time.
pub(crate) fn issued_keys(c: &IssuedCertificate) -> (String, String, String) {
    let issued = c.issued_date_time_utc.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)).unwrap_or_default();
    (c.info.serial_number.clone(), c.registration_id.to_ascii_lowercase(), issued)
}

/// One backend's statements.
pub(crate) struct Sql {
    pub current: &'static str,
    pub list: &'static str,
    pub get: &'static str,
    pub upsert: &'static str,
    pub delete: &'static str,
    pub log: &'static str,
    pub issued_of: &'static str,
    pub issued_all: &'static str,
}

const SQLITE: Sql = Sql {
    current: "SELECT doc FROM credential_policies WHERE name_key = ?",
    list: "SELECT doc FROM credential_policies ORDER BY name_key",
    get: "SELECT doc, key_sealed FROM credential_policies WHERE name_key = ?",
    upsert: "INSERT INTO credential_policies (name_key, doc, key_sealed) VALUES (?, ?, ?)
             ON CONFLICT(name_key) DO UPDATE SET doc = excluded.doc, key_sealed = excluded.key_sealed",
    delete: "DELETE FROM credential_policies WHERE name_key = ?",
    log: "INSERT INTO issued_certificates (serial, registration_key, issued, doc) VALUES (?, ?, ?, ?)",
    issued_of: "SELECT doc FROM issued_certificates WHERE registration_key = ? ORDER BY issued DESC, serial LIMIT ?",
    issued_all: "SELECT doc FROM issued_certificates ORDER BY issued DESC, serial LIMIT ?",
};

/// `CredentialStore` for `$store` (its transactions on `$conn`) with the statements `$sql`.
macro_rules! credential_store {
    ($store:ty, $conn:ty, $sql:expr) => {
        async fn current(tx: &mut $conn, key: &str) -> dps_core::ports::StoreResult<Option<dps_proto::CredentialPolicy>> {
            use sqlx::Row;
            sqlx::query($sql.current)
                .bind(key)
                .fetch_optional(tx)
                .await
                .map_err(crate::backend)?
                .map(|r| crate::from_json(r.get::<&str, _>("doc")))
                .transpose()
        }

        #[async_trait::async_trait]
        impl dps_core::ports::CredentialStore for $store {
            async fn list_credential_policies(&self) -> dps_core::ports::StoreResult<Vec<dps_proto::CredentialPolicy>> {
                use sqlx::Row;
                let rows = sqlx::query($sql.list).fetch_all(&self.pool).await.map_err(crate::backend)?;
                rows.iter().map(|r| crate::from_json(r.get::<&str, _>("doc"))).collect()
            }

            async fn get_credential_policy(
                &self,
                name: &str,
            ) -> dps_core::ports::StoreResult<Option<dps_core::ports::StoredCredentialPolicy>> {
                use sqlx::Row;
                let key = name.to_ascii_lowercase();
                let row = sqlx::query($sql.get).bind(&key).fetch_optional(&self.pool).await.map_err(crate::backend)?;
                let Some(r) = row else { return Ok(None) };
                let sealed: Option<String> = r.get("key_sealed");
                let aad = crate::credentials::key_aad(&key);
                let key = sealed.map(|s| self.open_sealed(&s, &aad).map(dps_crypto::Secret::new)).transpose()?;
                Ok(Some(dps_core::ports::StoredCredentialPolicy { policy: crate::from_json(r.get::<&str, _>("doc"))?, key }))
            }

            async fn put_credential_policy(
                &self,
                p: dps_core::ports::StoredCredentialPolicy,
                pre: dps_core::model::Precondition,
            ) -> dps_core::ports::StoreResult<()> {
                let name_key = p.policy.name.to_ascii_lowercase();
                let sealed = p.key.as_ref().map(|k| self.seal(k.expose(), &crate::credentials::key_aad(&name_key)));
                let doc = crate::credentials::policy_doc(&p.policy)?;
                self.write_config(move |tx| {
                    Box::pin(async move {
                        crate::enrollments::check(&pre, current(&mut *tx, &name_key).await?.map(|c| c.etag))?;
                        sqlx::query($sql.upsert).bind(&name_key).bind(doc).bind(sealed).execute(&mut *tx).await.map_err(crate::backend)?;
                        Ok(())
                    })
                })
                .await
            }

            async fn delete_credential_policy(&self, name: &str, pre: dps_core::model::Precondition) -> dps_core::ports::StoreResult<()> {
                let key = name.to_ascii_lowercase();
                self.write_config(move |tx| {
                    Box::pin(async move {
                        let Some(c) = current(&mut *tx, &key).await? else { return Err(dps_core::ports::StoreError::NotFound) };
                        crate::enrollments::check(&pre, Some(c.etag))?;
                        sqlx::query($sql.delete).bind(&key).execute(&mut *tx).await.map_err(crate::backend)?;
                        Ok(())
                    })
                })
                .await
            }

            async fn record_issued(&self, c: &dps_proto::IssuedCertificate) -> dps_core::ports::StoreResult<()> {
                let (serial, registration, issued) = crate::credentials::issued_keys(c);
                let doc = crate::to_json(c)?;
                self.write(move |tx| {
                    Box::pin(async move {
                        let q = sqlx::query($sql.log).bind(serial).bind(registration).bind(issued).bind(doc);
                        q.execute(&mut *tx).await.map_err(crate::backend)?;
                        Ok(())
                    })
                })
                .await
            }

            async fn list_issued(
                &self,
                registration_id: Option<&str>,
                limit: usize,
            ) -> dps_core::ports::StoreResult<Vec<dps_proto::IssuedCertificate>> {
                use sqlx::Row;
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let rows = match registration_id {
                    Some(id) => sqlx::query($sql.issued_of).bind(id.to_ascii_lowercase()).bind(limit).fetch_all(&self.pool).await,
                    None => sqlx::query($sql.issued_all).bind(limit).fetch_all(&self.pool).await,
                }
                .map_err(crate::backend)?;
                rows.iter().map(|r| crate::from_json(r.get::<&str, _>("doc"))).collect()
            }
        }
    };
}
pub(crate) use credential_store;

credential_store!(SqliteStore, SqliteConnection, SQLITE);
