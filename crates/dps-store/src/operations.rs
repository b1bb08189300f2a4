//! Device registration operations (§8) and the engine's coordination: the partial unique index
//! `operations_one_assigning` allows one `assigning` operation per registration id (409203), and the lease
//! columns say which instance runs it until when.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_core::model::{Operation, RegistrationRecord};
use dps_core::ports::{IdentityWrite, Lease, OperationStore, StoreError, StoreResult};
use dps_proto::format_time;
use sqlx::{Row, SqliteConnection};

use crate::{backend, from_json, to_json, SqliteStore};

/// One batch of the purge (#15 item 5): finished operations older than the cutoff, oldest first, at most a
/// batch, found through the partial index `operations_finished` (migration `operations_finished`).
pub const PURGE_SQL: &str =
    "DELETE FROM operations WHERE rowid IN (SELECT rowid FROM operations WHERE status <> 'assigning' AND updated < ? ORDER BY updated LIMIT ?)";

/// Finished operations are purged this many at a time, each batch its own short write.
pub(crate) const PURGE_BATCH: i64 = 500;

/// The columns of an operation row.
pub(crate) struct OpRow {
    pub id: String,
    pub status: &'static str,
    pub updated: String,
    pub doc: String,
    pub reg_key: String,
}

impl OpRow {
    pub(crate) fn of(op: &Operation) -> StoreResult<Self> {
        Ok(Self {
            id: op.operation_id.clone(),
            status: op.status.as_str(),
            updated: format_time(&op.updated),
            doc: to_json(op)?,
            reg_key: op.registration_id.to_ascii_lowercase(),
        })
    }
}

/// The record's upsert, shared with `registrations.rs`.
pub(crate) async fn upsert_record(conn: &mut SqliteConnection, id_key: &str, group_key: Option<&str>, doc: &str) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO registrations (id_key, group_key, doc) VALUES (?, ?, ?)
         ON CONFLICT(id_key) DO UPDATE SET group_key = excluded.group_key, doc = excluded.doc",
    )
    .bind(id_key)
    .bind(group_key)
    .bind(doc)
    .execute(conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// A record as its upsert needs it: key, group key, document.
pub(crate) fn record_row(r: &RegistrationRecord) -> StoreResult<(String, Option<String>, String)> {
    Ok((r.registration_id().to_ascii_lowercase(), r.group_id().map(str::to_ascii_lowercase), to_json(r)?))
}

fn unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

#[async_trait]
impl OperationStore for SqliteStore {
    async fn put_operation(&self, op: &Operation) -> StoreResult<()> {
        let row = OpRow::of(op)?;
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO operations (id, status, updated, doc, reg_key) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated = excluded.updated, doc = excluded.doc",
                )
                .bind(&row.id)
                .bind(row.status)
                .bind(&row.updated)
                .bind(&row.doc)
                .bind(&row.reg_key)
                .execute(c)
                .await
                .map_err(|e| if unique_violation(&e) { StoreError::Conflict } else { backend(e) })?;
                Ok(())
            })
        })
        .await
    }

    async fn get_operation(&self, operation_id: &str) -> StoreResult<Option<Operation>> {
        let row =
            sqlx::query("SELECT doc FROM operations WHERE id = ?").bind(operation_id).fetch_optional(&self.pool).await.map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        match from_json(r.get::<&str, _>("doc")) {
            Ok(op) => Ok(Some(op)),
            Err(e) => {
                self.quarantine(crate::quarantine::OPERATIONS, operation_id, &e).await;
                Ok(None)
            }
        }
    }

    async fn begin_registration(&self, op: &Operation, record: &RegistrationRecord, lease: &Lease) -> StoreResult<()> {
        let row = OpRow::of(op)?;
        let (id_key, group_key, doc) = record_row(record)?;
        let (owner, until) = (lease.owner.clone(), format_time(&lease.until));
        self.write(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO operations (id, status, updated, doc, reg_key, lease_owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&row.id)
                .bind(row.status)
                .bind(&row.updated)
                .bind(&row.doc)
                .bind(&row.reg_key)
                .bind(&owner)
                .bind(&until)
                .execute(&mut *c)
                .await
                .map_err(|e| if unique_violation(&e) { StoreError::Conflict } else { backend(e) })?;
                upsert_record(c, &id_key, group_key.as_deref(), &doc).await
            })
        })
        .await
    }

    async fn finish_registration(
        &self,
        op: &Operation,
        record: &RegistrationRecord,
        identity: Option<&IdentityWrite>,
        owner: &str,
    ) -> StoreResult<bool> {
        let row = OpRow::of(op)?;
        let (id_key, group_key, doc) = record_row(record)?;
        let identity = identity.map(|i| crate::registry::identity_row(&self.key, &i.identity, i.keys.as_ref().map(|(p, s)| (p, s))));
        let owner = owner.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE operations SET status = ?, updated = ?, doc = ?, lease_owner = NULL, lease_until = NULL
                     WHERE id = ? AND status = 'assigning' AND lease_owner = ?",
                )
                .bind(row.status)
                .bind(&row.updated)
                .bind(&row.doc)
                .bind(&row.id)
                .bind(&owner)
                .execute(&mut *c)
                .await
                .map_err(backend)?;
                if done.rows_affected() == 0 {
                    return Ok(false);
                }
                upsert_record(&mut *c, &id_key, group_key.as_deref(), &doc).await?;
                if let Some(row) = identity {
                    crate::registry::upsert_identity(c, row).await?;
                }
                Ok(true)
            })
        })
        .await
    }

    async fn renew_lease(&self, operation_id: &str, lease: &Lease) -> StoreResult<bool> {
        let (id, owner, until) = (operation_id.to_owned(), lease.owner.clone(), format_time(&lease.until));
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query("UPDATE operations SET lease_until = ? WHERE id = ? AND status = 'assigning' AND lease_owner = ?")
                    .bind(&until)
                    .bind(&id)
                    .bind(&owner)
                    .execute(c)
                    .await
                    .map_err(backend)?;
                Ok(r.rows_affected() == 1)
            })
        })
        .await
    }

    async fn claim_operations(&self, lease: &Lease, expired_before: DateTime<Utc>, limit: usize) -> StoreResult<Vec<Operation>> {
        // Times are compared as text: keep them in the four-digit years where text order is time order.
        let last = DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(expired_before);
        let (owner, until, before) = (lease.owner.clone(), format_time(&lease.until), format_time(&expired_before.min(last)));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let docs: Vec<(String, String)> = self
            .write(move |c| {
                Box::pin(async move {
                    let rows = sqlx::query(
                        "UPDATE operations SET lease_owner = ?, lease_until = ?
                         WHERE id IN (SELECT id FROM operations WHERE status = 'assigning'
                                      AND (lease_until IS NULL OR lease_until < ?) ORDER BY updated LIMIT ?)
                         RETURNING id, doc",
                    )
                    .bind(&owner)
                    .bind(&until)
                    .bind(&before)
                    .bind(limit)
                    .fetch_all(c)
                    .await
                    .map_err(backend)?;
                    Ok(rows.iter().map(|r| (r.get::<String, _>("id"), r.get::<String, _>("doc"))).collect())
                })
            })
            .await?;
        // A document that does not parse is quarantined; it cannot block the others. RETURNING follows no
        // order: oldest first again here.
        let mut ops: Vec<Operation> =
            self.decode_or_quarantine(crate::quarantine::OPERATIONS, docs, |(id, _)| id.clone(), |(_, doc)| from_json(doc)).await;
        ops.sort_by_key(|o| o.updated);
        Ok(ops)
    }

    async fn purge_operations(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let before = format_time(&before);
        let mut total = 0;
        loop {
            let b = before.clone();
            let n = self
                .write(move |c| {
                    Box::pin(async move {
                        let r = sqlx::query(PURGE_SQL).bind(&b).bind(PURGE_BATCH).execute(c).await.map_err(backend)?;
                        Ok(r.rows_affected())
                    })
                })
                .await?;
            total += n;
            if n < PURGE_BATCH.unsigned_abs() {
                return Ok(total);
            }
        }
    }
}
