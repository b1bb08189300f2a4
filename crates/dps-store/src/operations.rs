//! Device registration operations (§8).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dps_core::model::Operation;
use dps_core::ports::{OperationStore, StoreResult};
use dps_proto::format_time;
use sqlx::Row;

use crate::{backend, from_json, to_json, SqliteStore};

#[async_trait]
impl OperationStore for SqliteStore {
    async fn put_operation(&self, op: &Operation) -> StoreResult<()> {
        let _w = self.write.lock().await;
        sqlx::query(
            "INSERT INTO operations (id, status, updated, doc) VALUES (?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET status = excluded.status, updated = excluded.updated, doc = excluded.doc",
        )
        .bind(&op.operation_id)
        .bind(op.status.as_str())
        .bind(format_time(&op.updated))
        .bind(to_json(op)?)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn get_operation(&self, operation_id: &str) -> StoreResult<Option<Operation>> {
        let row =
            sqlx::query("SELECT doc FROM operations WHERE id = ?").bind(operation_id).fetch_optional(&self.pool).await.map_err(backend)?;
        row.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
    }

    async fn pending_operations(&self) -> StoreResult<Vec<Operation>> {
        let rows = sqlx::query("SELECT doc FROM operations WHERE status = 'assigning' ORDER BY updated")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(|r| from_json(r.get::<&str, _>("doc"))).collect()
    }

    async fn purge_operations(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let _w = self.write.lock().await;
        let r = sqlx::query("DELETE FROM operations WHERE status <> 'assigning' AND updated < ?")
            .bind(format_time(&before))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(r.rows_affected())
    }
}
