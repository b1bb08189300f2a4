//! Rows that cannot be read — a document that does not parse, a secret that does not unseal — are moved to
//! the `quarantine` table (with the reason and the row as it was) instead of failing every read that meets
//! them: one bad enrollment must not stop the groups list that every group device's attestation walks, nor
//! the console's lists. The move is logged at ERROR and listed by [`SqliteStore::quarantined`]
//! (`GET /diagnostics/quarantine`); an operator can fix the row and put it back, or delete it.

use dps_core::ports::{StoreError, StoreResult};
use dps_proto::format_time;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::{backend, SqliteStore};

/// A quarantined row as the diagnostics show it (no secrets: the sealed column stays in the database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QuarantinedRow {
    pub table: String,
    pub key: String,
    pub reason: String,
    pub at: String,
    pub document: Option<String>,
}

/// A table whose rows can be quarantined: its name and key column (constants, never input).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quarantinable {
    pub table: &'static str,
    pub key: &'static str,
    /// The sealed column, if the table has one.
    pub secrets: Option<&'static str>,
}

pub(crate) const ENROLLMENTS: Quarantinable = Quarantinable { table: "enrollments", key: "id_key", secrets: Some("secrets") };
pub(crate) const GROUPS: Quarantinable = Quarantinable { table: "enrollment_groups", key: "id_key", secrets: Some("secrets") };
pub(crate) const REGISTRATIONS: Quarantinable = Quarantinable { table: "registrations", key: "id_key", secrets: None };
pub(crate) const OPERATIONS: Quarantinable = Quarantinable { table: "operations", key: "id", secrets: None };
pub(crate) const HUBS: Quarantinable = Quarantinable { table: "linked_hubs", key: "host_key", secrets: Some("secrets") };
pub(crate) const CAS: Quarantinable = Quarantinable { table: "ca_certificates", key: "name_key", secrets: None };

impl SqliteStore {
    /// Moves one row aside; `why` is the read error. Never fails the caller's read: a failure to move is
    /// logged (the row then stays where it is and is skipped again next time).
    pub(crate) async fn quarantine(&self, q: Quarantinable, key: &str, why: &StoreError) {
        let (key, reason) = (key.to_owned(), why.to_string());
        tracing::error!(table = q.table, key, reason, "a stored row cannot be read; it is moved to quarantine and the rest serves");
        let at = format_time(&dps_core::Clock::now(&dps_core::SystemClock));
        let secrets = q.secrets.unwrap_or("NULL");
        let copy = format!(
            "INSERT INTO quarantine (tbl, row_key, reason, doc, secrets, at) SELECT ?, ?, ?, doc, {secrets}, ? FROM {} WHERE {} = ?",
            q.table, q.key
        );
        let delete = format!("DELETE FROM {} WHERE {} = ?", q.table, q.key);
        let (k, table) = (key.clone(), q.table);
        let moved = self
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(copy))
                        .bind(table)
                        .bind(&k)
                        .bind(&reason)
                        .bind(&at)
                        .bind(&k)
                        .execute(&mut *c)
                        .await
                        .map_err(backend)?;
                    sqlx::query(sqlx::AssertSqlSafe(delete)).bind(&k).execute(c).await.map_err(backend)?;
                    Ok(())
                })
            })
            .await;
        if let Err(e) = moved {
            tracing::error!(table = q.table, key, error = %e, "cannot move the row to quarantine");
        }
    }

    /// Decodes each row with `decode`; the rows that fail are quarantined and left out.
    pub(crate) async fn decode_or_quarantine<T, R>(
        &self,
        q: Quarantinable,
        rows: impl IntoIterator<Item = R>,
        key_of: impl Fn(&R) -> String,
        decode: impl Fn(&R) -> StoreResult<T>,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for r in rows {
            match decode(&r) {
                Ok(v) => out.push(v),
                Err(e) => self.quarantine(q, &key_of(&r), &e).await,
            }
        }
        out
    }
}

/// What the diagnostics read: the rows moved aside (every backend keeps them).
#[async_trait::async_trait]
pub trait Quarantine: Send + Sync {
    /// Every quarantined row, newest first (at most 1,000).
    async fn quarantined(&self) -> StoreResult<Vec<QuarantinedRow>>;
}

#[async_trait::async_trait]
impl Quarantine for SqliteStore {
    async fn quarantined(&self) -> StoreResult<Vec<QuarantinedRow>> {
        let rows = sqlx::query("SELECT tbl, row_key, reason, doc, at FROM quarantine ORDER BY id DESC LIMIT 1000")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| QuarantinedRow {
                table: r.get("tbl"),
                key: r.get("row_key"),
                reason: r.get("reason"),
                at: r.get("at"),
                document: r.get("doc"),
            })
            .collect())
    }
}
