//! Rows that cannot be read are moved to `quarantine` as in SQLite (`crate::quarantine`).

use dps_core::ports::{StoreError, StoreResult};
use dps_proto::format_time;
use sqlx::Row;

use super::PgStore;
use crate::backend;
use crate::quarantine::{Quarantinable, Quarantine, QuarantinedRow};

impl PgStore {
    /// Moves one row aside; `why` is the read error. Never fails the caller's read (see SQLite's).
    pub(crate) async fn quarantine(&self, q: Quarantinable, key: &str, why: &StoreError) {
        let (key, reason) = (key.to_owned(), why.to_string());
        tracing::error!(table = q.table, key, reason, "a stored row cannot be read; it is moved to quarantine and the rest serves");
        let at = format_time(&dps_core::Clock::now(&dps_core::SystemClock));
        let secrets = q.secrets.unwrap_or("NULL");
        let copy = format!(
            "INSERT INTO quarantine (tbl, row_key, reason, doc, secrets, at) SELECT $1, $2, $3, doc, {secrets}, $4 FROM {} WHERE {} = $2",
            q.table, q.key
        );
        let delete = format!("DELETE FROM {} WHERE {} = $1", q.table, q.key);
        let (k, table) = (key.clone(), q.table);
        let moved = self
            .write(move |c| {
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(copy))
                        .bind(table)
                        .bind(&k)
                        .bind(&reason)
                        .bind(&at)
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

#[async_trait::async_trait]
impl Quarantine for PgStore {
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
