//! Many entity writes in one durable write (`EnrollmentStore::put_enrollments` / `put_groups`): the bulk
//! import path. Each item keeps the semantics of a single `put_entity` — its own precondition, the created
//! time of the entity it replaces, a current row that does not decode refuses the item — and the items
//! behave as if written one after the other in order (a later item sees an earlier one of the same id).
//!
//! How, cheaply: the keys were sealed and the documents serialised before the writer was reached
//! (`Staged`). Inside the write the current documents of the whole batch are read with one statement, every
//! item is decided in memory against that snapshot plus the items accepted before it, and the accepted rows
//! are written by multi-row upserts (at most [`CHUNK`] rows each, sizes from a fixed set so the prepared
//! statements are reused). A refused item writes nothing, so it needs no rollback; the batch runs inside a
//! savepoint, and should a write statement fail the batch is rolled back to it and done again item by item,
//! each item in its own savepoint ([`one_by_one`]), so one failing item still fails alone.

use std::collections::HashMap;

use dps_core::ports::{StoreError, StoreResult};
use sqlx::{Row, SqliteConnection};

use crate::enrollments::{check, table_sql, Entity, Staged};
use crate::{backend, from_json, to_json};

/// Rows per upsert statement (4 parameters each; SQLite allows 32,766).
const CHUNK: usize = 256;

/// What an item's check decided (the item itself is not changed until the batch is written).
pub(crate) enum Decision {
    /// Write it; `created` replaces its created time (the entity it replaces had this one) and `doc` its
    /// document when that changes the document.
    Accept {
        created: Option<Option<chrono::DateTime<chrono::Utc>>>,
        doc: Option<String>,
    },
    Refuse(StoreError),
}

/// An entity's created time and etag: what a later item of the batch checks against.
type Current = (Option<chrono::DateTime<chrono::Utc>>, Option<String>);

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<()> {
    sqlx::raw_sql(sql).execute(&mut *conn).await.map(|_| ()).map_err(backend)
}

/// Writes `items` (index in the caller's list, staged item) and answers one result per item, same order.
pub(crate) async fn write<E: Entity>(
    tx: &mut SqliteConnection,
    items: Vec<(usize, Staged<E>)>,
) -> StoreResult<Vec<(usize, StoreResult<E>)>> {
    exec(tx, "SAVEPOINT batch").await?;
    match set_based(tx, &items).await {
        Ok(decisions) => {
            exec(tx, "RELEASE batch").await?;
            Ok(items.into_iter().zip(decisions).map(|((i, s), d)| (i, finish(s, d))).collect())
        }
        Err(e) => {
            tracing::warn!(error = %e, table = E::TABLE, items = items.len(), "a batch write failed; writing its items one by one");
            exec(tx, "ROLLBACK TO batch").await?;
            exec(tx, "RELEASE batch").await?;
            one_by_one(tx, items).await
        }
    }
}

/// The answer for an item once its batch is written.
pub(crate) fn finish<E: Entity>(s: Staged<E>, d: Decision) -> StoreResult<E> {
    match d {
        Decision::Refuse(e) => Err(e),
        Decision::Accept { created, .. } => Ok(s.into_answer(created)),
    }
}

/// The fast path: one read, decisions in memory, chunked upserts. An `Err` means a statement failed (the
/// caller rolls back and goes item by item); refused items are `Decision::Refuse`, not errors.
async fn set_based<E: Entity>(tx: &mut SqliteConnection, items: &[(usize, Staged<E>)]) -> StoreResult<Vec<Decision>> {
    let keys: Vec<&str> = items.iter().map(|(_, s)| s.key.as_str()).collect();
    let rows = sqlx::query(table_sql(format!("SELECT id_key, doc FROM {} WHERE id_key IN (SELECT value FROM json_each(?))", E::TABLE)))
        .bind(to_json(&keys)?)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let stored: HashMap<String, String> = rows.iter().map(|r| (r.get::<String, _>("id_key"), r.get::<String, _>("doc"))).collect();
    let decisions = decide(items, &stored)?;
    let accepted = accepted(items, &decisions);
    let mut rest = accepted.as_slice();
    while !rest.is_empty() {
        let n = chunk_len(rest.len());
        let (chunk, tail) = rest.split_at(n);
        let mut q = sqlx::query(table_sql(upsert_sql(E::TABLE, n)));
        for (s, doc) in chunk {
            q = q.bind(s.key.as_str()).bind(s.kind.as_str()).bind(*doc).bind(s.secrets.as_deref());
        }
        q.execute(&mut *tx).await.map_err(backend)?;
        rest = tail;
    }
    Ok(decisions)
}

/// Decides every item in order against the stored documents (`id_key → doc`) plus the items accepted before it.
pub(crate) fn decide<E: Entity>(items: &[(usize, Staged<E>)], stored: &HashMap<String, String>) -> StoreResult<Vec<Decision>> {
    // The state of each key as the items before the current one left it (absent: as stored).
    let mut written: HashMap<&str, Current> = HashMap::new();
    let mut decisions = Vec::with_capacity(items.len());
    for (_, s) in items {
        let current: StoreResult<Option<Current>> = match written.get(s.key.as_str()) {
            Some(c) => Ok(Some(c.clone())),
            None => stored.get(&s.key).map(|doc| from_json::<E>(doc).map(|mut c| (*c.stamps().0, c.stamps().1.clone()))).transpose(),
        };
        let decision = match current.and_then(|c| check(&s.pre, c.as_ref().map(|(_, etag)| etag.clone())).map(|()| c)) {
            Err(e) => Decision::Refuse(e),
            Ok(current) => {
                let (created, doc) = match current {
                    Some((kept, _)) if kept != s.created => {
                        // Only a replacement with another created time costs a second serialisation.
                        let mut mine = s.entity.clone();
                        *mine.stamps().0 = kept;
                        (Some(kept), Some(to_json(&mine)?))
                    }
                    Some((kept, _)) => (Some(kept), None),
                    None => (None, None),
                };
                written.insert(s.key.as_str(), (created.unwrap_or(s.created), s.etag.clone()));
                Decision::Accept { created, doc }
            }
        };
        decisions.push(decision);
    }
    Ok(decisions)
}

/// The accepted items and the document each writes, in order.
pub(crate) fn accepted<'a, E: Entity>(items: &'a [(usize, Staged<E>)], decisions: &'a [Decision]) -> Vec<(&'a Staged<E>, &'a str)> {
    items
        .iter()
        .zip(decisions)
        .filter_map(|((_, s), d)| match d {
            Decision::Accept { doc, .. } => Some((s, doc.as_deref().unwrap_or(&s.doc))),
            Decision::Refuse(_) => None,
        })
        .collect()
}

/// [`CHUNK`] rows, or the largest power of two that fits what is left: at most nine statement shapes per
/// table, each prepared once per connection.
fn chunk_len(left: usize) -> usize {
    if left >= CHUNK {
        CHUNK
    } else {
        1 << left.ilog2()
    }
}

fn upsert_sql(table: &str, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} (id_key, attestation, doc, secrets) VALUES ");
    for i in 0..rows {
        sql.push_str(if i == 0 { "(?, ?, ?, ?)" } else { ", (?, ?, ?, ?)" });
    }
    sql.push_str(" ON CONFLICT(id_key) DO UPDATE SET attestation = excluded.attestation, doc = excluded.doc, secrets = excluded.secrets");
    sql
}

/// The slow path: each item read, checked and written in its own savepoint, in order.
async fn one_by_one<E: Entity>(tx: &mut SqliteConnection, items: Vec<(usize, Staged<E>)>) -> StoreResult<Vec<(usize, StoreResult<E>)>> {
    let mut out = Vec::with_capacity(items.len());
    for (i, s) in items {
        exec(tx, "SAVEPOINT item").await?;
        let r = one(tx, s).await;
        if r.is_ok() {
            exec(tx, "RELEASE item").await?;
        } else {
            exec(tx, "ROLLBACK TO item").await?;
            exec(tx, "RELEASE item").await?;
        }
        out.push((i, r));
    }
    Ok(out)
}

async fn one<E: Entity>(tx: &mut SqliteConnection, s: Staged<E>) -> StoreResult<E> {
    let current: Option<E> = crate::doc_in_tx(&mut *tx, crate::enrollments::current_sql::<E>(), &s.key).await?;
    check(&s.pre, current.clone().map(|mut c| c.stamps().1.clone()))?;
    let mut kept = None;
    let mut doc = None;
    if let Some(mut c) = current {
        let created = *c.stamps().0;
        if s.created != created {
            let mut mine = s.entity.clone();
            *mine.stamps().0 = created;
            doc = Some(to_json(&mine)?);
        }
        kept = Some(created);
    }
    sqlx::query(table_sql(upsert_sql(E::TABLE, 1)))
        .bind(&s.key)
        .bind(&s.kind)
        .bind(doc.as_ref().unwrap_or(&s.doc))
        .bind(&s.secrets)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(s.into_answer(kept))
}
