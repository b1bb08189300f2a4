//! Many entity writes in one transaction (`put_enrollments` / `put_groups`), with the semantics of SQLite's
//! `crate::batch` (the same in-memory decisions, `batch::decide`): the batch's current documents read with one
//! statement (`id_key = ANY($1)`), every item decided in order, the accepted rows written by one `UNNEST`
//! upsert (a key accepted twice is written once, as its last accepted item: the items behave as if written
//! one after the other). Should that statement fail, the batch is rolled back to its savepoint and written
//! item by item, each in a savepoint of its own, so one failing item fails alone.

use std::collections::HashMap;

use dps_core::ports::StoreResult;
use sqlx::{Connection, PgConnection, Row};

use super::enrollments::{current, upsert_sql};
use crate::backend;
use crate::batch::{accepted, decide, finish, Decision};
use crate::enrollments::{check, table_sql, Entity, Staged};

/// Writes `items` (index in the caller's list, staged item) and answers one result per item, same order.
pub(super) async fn write<E: Entity>(tx: &mut PgConnection, items: Vec<(usize, Staged<E>)>) -> StoreResult<Vec<(usize, StoreResult<E>)>> {
    let mut batch = tx.begin().await.map_err(backend)?;
    match set_based(&mut batch, &items).await {
        Ok(decisions) => {
            batch.commit().await.map_err(backend)?;
            Ok(items.into_iter().zip(decisions).map(|((i, s), d)| (i, finish(s, d))).collect())
        }
        Err(e) => {
            tracing::warn!(error = %e, table = E::TABLE, items = items.len(), "a batch write failed; writing its items one by one");
            batch.rollback().await.map_err(backend)?;
            one_by_one(tx, items).await
        }
    }
}

async fn set_based<E: Entity>(tx: &mut PgConnection, items: &[(usize, Staged<E>)]) -> StoreResult<Vec<Decision>> {
    let keys: Vec<&str> = items.iter().map(|(_, s)| s.key.as_str()).collect();
    let rows = sqlx::query(table_sql(format!("SELECT id_key, doc FROM {} WHERE id_key = ANY($1)", E::TABLE)))
        .bind(&keys)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
    let stored: HashMap<String, String> = rows.iter().map(|r| (r.get::<String, _>("id_key"), r.get::<String, _>("doc"))).collect();
    let decisions = decide(items, &stored)?;
    // One row per key (an upsert cannot touch a row twice): the last accepted item of each key.
    let mut last: HashMap<&str, usize> = HashMap::new();
    let accepted = accepted(items, &decisions);
    for (n, (s, _)) in accepted.iter().enumerate() {
        last.insert(s.key.as_str(), n);
    }
    let (mut keys, mut kinds, mut docs, mut secrets) = (Vec::new(), Vec::new(), Vec::new(), Vec::<Option<&str>>::new());
    for (n, (s, doc)) in accepted.iter().enumerate() {
        if last.get(s.key.as_str()) == Some(&n) {
            keys.push(s.key.as_str());
            kinds.push(s.kind.as_str());
            docs.push(*doc);
            secrets.push(s.secrets.as_deref());
        }
    }
    if !keys.is_empty() {
        sqlx::query(table_sql(upsert_sql(E::TABLE)))
            .bind(&keys)
            .bind(&kinds)
            .bind(&docs)
            .bind(&secrets)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    Ok(decisions)
}

/// The slow path: each item read, checked and written in its own savepoint, in order.
async fn one_by_one<E: Entity>(tx: &mut PgConnection, items: Vec<(usize, Staged<E>)>) -> StoreResult<Vec<(usize, StoreResult<E>)>> {
    let mut out = Vec::with_capacity(items.len());
    for (i, s) in items {
        let mut item = tx.begin().await.map_err(backend)?;
        let r = one(&mut item, s).await;
        if r.is_ok() {
            item.commit().await.map_err(backend)?;
        } else {
            item.rollback().await.map_err(backend)?;
        }
        out.push((i, r));
    }
    Ok(out)
}

async fn one<E: Entity>(tx: &mut PgConnection, s: Staged<E>) -> StoreResult<E> {
    let current: Option<E> = current(&mut *tx, &s.key).await?;
    check(&s.pre, current.clone().map(|mut c| c.stamps().1.clone()))?;
    let mut kept = None;
    let mut doc = None;
    if let Some(mut c) = current {
        let created = *c.stamps().0;
        if s.created != created {
            let mut mine = s.entity.clone();
            *mine.stamps().0 = created;
            doc = Some(crate::to_json(&mine)?);
        }
        kept = Some(created);
    }
    sqlx::query(table_sql(upsert_sql(E::TABLE)))
        .bind(vec![s.key.as_str()])
        .bind(vec![s.kind.as_str()])
        .bind(vec![doc.as_deref().unwrap_or(&s.doc)])
        .bind(vec![s.secrets.as_deref()])
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
    Ok(s.into_answer(kept))
}
