//! Registration records.

use async_trait::async_trait;
use dps_core::model::{Page, PageRequest, Precondition, RegistrationRecord};
use dps_core::ports::{RegistrationStore, StoreError, StoreResult};
use sqlx::Row;

use crate::enrollments::check;
use crate::operations::{record_row, upsert_record};
use crate::{backend, doc_in_tx, from_json, SqliteStore};

#[async_trait]
impl RegistrationStore for SqliteStore {
    async fn get_registration(&self, registration_id: &str) -> StoreResult<Option<RegistrationRecord>> {
        let row = sqlx::query("SELECT doc FROM registrations WHERE id_key = ?")
            .bind(registration_id.to_ascii_lowercase())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        match from_json(r.get::<&str, _>("doc")) {
            Ok(rec) => Ok(Some(rec)),
            Err(e) => {
                self.quarantine(crate::quarantine::REGISTRATIONS, &registration_id.to_ascii_lowercase(), &e).await;
                Ok(None)
            }
        }
    }

    async fn put_registration(&self, r: RegistrationRecord) -> StoreResult<()> {
        let (id_key, group_key, doc) = record_row(&r)?;
        self.write(move |c| Box::pin(async move { upsert_record(c, &id_key, group_key.as_deref(), &doc).await })).await
    }

    async fn delete_registration(&self, registration_id: &str, pre: Precondition) -> StoreResult<()> {
        let key = registration_id.to_ascii_lowercase();
        self.write(move |c| {
            Box::pin(async move {
                let current: Option<RegistrationRecord> =
                    doc_in_tx(&mut *c, "SELECT doc FROM registrations WHERE id_key = ?", &key).await?;
                let Some(current) = current else { return Err(StoreError::NotFound) };
                check(&pre, Some(current.state.etag.clone()))?;
                sqlx::query("DELETE FROM registrations WHERE id_key = ?").bind(&key).execute(c).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn query_registrations(&self, group_id: Option<&str>, page: PageRequest) -> StoreResult<Page<RegistrationRecord>> {
        let limit = page.max_items.clamp(1, 10_000);
        let group = group_id.map(str::to_ascii_lowercase);
        let search = page.search.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase());
        let rows = sqlx::query(
            "SELECT id_key, doc FROM registrations WHERE id_key > ? AND (? IS NULL OR group_key = ?) \
             AND (? IS NULL OR instr(id_key, ?) > 0) ORDER BY id_key LIMIT ?",
        )
        .bind(page.continuation.unwrap_or_default())
        .bind(&group)
        .bind(&group)
        .bind(&search)
        .bind(&search)
        .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        // Only the filters in use, so the count can come from an index (see enrollments.rs).
        let mut conditions = Vec::new();
        if group.is_some() {
            conditions.push("group_key = ?");
        }
        if search.is_some() {
            conditions.push("instr(id_key, ?) > 0");
        }
        let count_sql = if conditions.is_empty() {
            "SELECT COUNT(*) FROM registrations".to_owned()
        } else {
            format!("SELECT COUNT(*) FROM registrations WHERE {}", conditions.join(" AND "))
        };
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(count_sql));
        if let Some(g) = &group {
            count = count.bind(g.clone());
        }
        if let Some(q) = &search {
            count = count.bind(q.clone());
        }
        let total = count.fetch_one(&self.pool).await.map_err(backend)?;
        let more = rows.len() > limit;
        let rows: Vec<_> = rows.into_iter().take(limit).collect();
        let last = rows.last().map(|r| r.get::<String, _>("id_key"));
        let items = self
            .decode_or_quarantine(
                crate::quarantine::REGISTRATIONS,
                rows,
                |r| r.get::<String, _>("id_key"),
                |r| from_json(r.get::<&str, _>("doc")),
            )
            .await;
        Ok(Page { items, continuation: if more { last } else { None }, total: u64::try_from(total).unwrap_or_default() })
    }

    async fn assigned_per_hub(&self) -> StoreResult<Vec<(String, u64)>> {
        let rows = sqlx::query(
            "SELECT json_extract(doc, '$.state.assignedHub') AS hub, COUNT(*) AS n FROM registrations \
             WHERE json_extract(doc, '$.state.status') = 'assigned' GROUP BY hub",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let hub: Option<String> = r.get("hub");
                Some((hub?, u64::try_from(r.get::<i64, _>("n")).unwrap_or_default()))
            })
            .collect())
    }
}
