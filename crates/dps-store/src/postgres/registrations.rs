//! Registration records.

use async_trait::async_trait;
use dps_core::model::{Page, PageRequest, Precondition, RegistrationRecord};
use dps_core::ports::{RegistrationStore, StoreError, StoreResult};
use sqlx::Row;

use super::operations::upsert_record;
use super::PgStore;
use crate::enrollments::check;
use crate::operations::record_row;
use crate::{backend, from_json};

#[async_trait]
impl RegistrationStore for PgStore {
    async fn get_registration(&self, registration_id: &str) -> StoreResult<Option<RegistrationRecord>> {
        let key = registration_id.to_ascii_lowercase();
        let row =
            sqlx::query("SELECT doc FROM registrations WHERE id_key = $1").bind(&key).fetch_optional(&self.pool).await.map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        match from_json(r.get::<&str, _>("doc")) {
            Ok(rec) => Ok(Some(rec)),
            Err(e) => {
                self.quarantine(crate::quarantine::REGISTRATIONS, &key, &e).await;
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
                // FOR UPDATE: the etag read and the delete are one step.
                let current: Option<RegistrationRecord> = sqlx::query("SELECT doc FROM registrations WHERE id_key = $1 FOR UPDATE")
                    .bind(&key)
                    .fetch_optional(&mut *c)
                    .await
                    .map_err(backend)?
                    .map(|r| from_json(r.get::<&str, _>("doc")))
                    .transpose()?;
                let Some(current) = current else { return Err(StoreError::NotFound) };
                check(&pre, Some(current.state.etag.clone()))?;
                sqlx::query("DELETE FROM registrations WHERE id_key = $1").bind(&key).execute(c).await.map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn query_registrations(&self, group_id: Option<&str>, page: PageRequest) -> StoreResult<Page<RegistrationRecord>> {
        let limit = page.max_items.clamp(1, 10_000);
        let group = group_id.map(str::to_ascii_lowercase);
        let search = page.search.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase());
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(g) = &group {
            values.push(g.clone());
            conditions.push(format!("group_key = ${}", values.len()));
        }
        if let Some(q) = &search {
            values.push(q.clone());
            conditions.push(format!("strpos(id_key, ${}) > 0", values.len()));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let n = values.len();
        let page_sql = format!(
            "SELECT id_key, doc FROM registrations{} id_key > ${} ORDER BY id_key LIMIT ${}",
            if conditions.is_empty() { " WHERE".to_owned() } else { format!("{filter} AND") },
            n + 1,
            n + 2
        );
        let mut rows = sqlx::query(sqlx::AssertSqlSafe(page_sql));
        let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM registrations{filter}")));
        for v in values {
            (rows, count) = (rows.bind(v.clone()), count.bind(v));
        }
        let rows = rows
            .bind(page.continuation.unwrap_or_default())
            .bind(i64::try_from(limit + 1).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
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
            "SELECT doc::jsonb -> 'state' ->> 'assignedHub' AS hub, COUNT(*) AS n FROM registrations \
             WHERE doc::jsonb -> 'state' ->> 'status' = 'assigned' GROUP BY hub",
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
