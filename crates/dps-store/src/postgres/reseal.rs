//! [`SealedTables`] on PostgreSQL: the pages and compare-and-sets of a master-key rotation (see `reseal.rs`).

use async_trait::async_trait;
use dps_core::ports::StoreResult;
use sqlx::Row;

use super::PgStore;
use crate::backend;
use crate::reseal::{page_sql, update_sql, Resealed, SealedColumn, SealedRow, SealedTables, FORGET_SECRETS, RESEAL_BATCH};

fn placeholder(n: usize) -> String {
    format!("${n}")
}

impl PgStore {
    /// Runs [`FORGET_SECRETS`]; the rows each statement changed.
    pub(crate) async fn forget_secrets(&self) -> StoreResult<Vec<u64>> {
        self.write_config(|tx| {
            Box::pin(async move {
                let mut counts = Vec::new();
                for sql in FORGET_SECRETS {
                    counts.push(sqlx::query(*sql).execute(&mut *tx).await.map_err(backend)?.rows_affected());
                }
                Ok(counts)
            })
        })
        .await
    }
}

#[async_trait]
impl SealedTables for PgStore {
    async fn sealed_page(&self, c: &'static SealedColumn, after: Option<Vec<String>>) -> StoreResult<Vec<SealedRow>> {
        let sql = page_sql(c, after.is_some(), placeholder);
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for k in after.unwrap_or_default() {
            q = q.bind(k);
        }
        let rows = q.bind(RESEAL_BATCH).fetch_all(&self.pool).await.map_err(backend)?;
        Ok(rows
            .iter()
            .map(|r| SealedRow {
                keys: (0..c.keys.len()).map(|i| r.get::<String, _>(format!("k{i}").as_str())).collect(),
                value: r.get("v"),
                aad: r.get("aad"),
            })
            .collect())
    }

    async fn write_resealed(&self, c: &'static SealedColumn, rows: Vec<Resealed>) -> StoreResult<u64> {
        let sql = update_sql(c, placeholder);
        self.write(move |tx| {
            Box::pin(async move {
                let mut n = 0;
                for r in rows {
                    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(r.new);
                    for k in r.keys {
                        q = q.bind(k);
                    }
                    n += q.bind(r.old).execute(&mut *tx).await.map_err(backend)?.rows_affected();
                }
                Ok(n)
            })
        })
        .await
    }
}
