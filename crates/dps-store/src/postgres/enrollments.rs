//! Individual enrollments and enrollment groups: keys and the webhook URL's query sealed as in SQLite
//! (`crate::enrollments`: the same staging and row decoding); conditional writes run in the configuration
//! writers' turn (`write_config`), so the etag read and the write are one atomic step.

use async_trait::async_trait;
use dps_core::model::{Page, PageRequest, Precondition};
use dps_core::ports::{EnrollmentStore, StoreError, StoreResult};
use dps_core::query::{Condition, Field, Literal};
use dps_proto::{EnrollmentGroup, IndividualEnrollment};
use sqlx::{PgConnection, Row};

use super::PgStore;
use crate::enrollments::{check, entity_from_row, gather, stage_all, table_sql, to_row, Entity};
use crate::{backend, from_json};

/// The document of one entity by key, read inside a write.
pub(super) async fn current<E: Entity>(tx: &mut PgConnection, key: &str) -> StoreResult<Option<E>> {
    sqlx::query(table_sql(format!("SELECT doc FROM {} WHERE id_key = $1", E::TABLE)))
        .bind(key)
        .fetch_optional(tx)
        .await
        .map_err(backend)?
        .map(|r| from_json(r.get::<&str, _>("doc")))
        .transpose()
}

/// The upsert of `rows` rows given as arrays (`UNNEST`): one statement shape whatever the count.
pub(super) fn upsert_sql(table: &str) -> String {
    format!(
        "INSERT INTO {table} (id_key, attestation, doc, secrets) SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT (id_key) DO UPDATE SET attestation = excluded.attestation, doc = excluded.doc, secrets = excluded.secrets"
    )
}

impl PgStore {
    async fn get_entity<E: Entity>(&self, id: &str) -> StoreResult<Option<E>> {
        let key = id.to_ascii_lowercase();
        let row = sqlx::query(table_sql(format!("SELECT doc, secrets FROM {} WHERE id_key = $1", E::TABLE)))
            .bind(&key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(r) = row else { return Ok(None) };
        match entity_from_row(&self.key, &key, r.get::<&str, _>("doc"), r.get::<Option<&str>, _>("secrets")) {
            Ok(e) => Ok(Some(e)),
            Err(e) => {
                self.quarantine(E::QUARANTINE, &key, &e).await;
                Ok(None)
            }
        }
    }

    async fn put_entity<E: Entity>(&self, mut e: E, pre: Precondition) -> StoreResult<E> {
        let master = self.key.clone();
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = e.id().to_ascii_lowercase();
                let current: Option<E> = current(&mut *tx, &key).await?;
                check(&pre, current.clone().map(|mut c| c.stamps().1.clone()))?;
                if let Some(mut c) = current {
                    let created = *c.stamps().0;
                    *e.stamps().0 = created;
                }
                let returned = e.clone();
                let (key, kind, doc, secrets) = to_row(&master, e)?;
                sqlx::query(table_sql(format!(
                    "INSERT INTO {} (id_key, attestation, doc, secrets) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (id_key) DO UPDATE SET attestation = excluded.attestation, doc = excluded.doc, secrets = excluded.secrets",
                    E::TABLE
                )))
                .bind(&key)
                .bind(&kind)
                .bind(&doc)
                .bind(&secrets)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
                Ok(returned)
            })
        })
        .await
    }

    async fn put_entities<E: Entity>(&self, items: Vec<(E, Precondition)>) -> StoreResult<Vec<StoreResult<E>>> {
        let (results, staged) = stage_all(&self.key, items);
        let written = if staged.is_empty() {
            Vec::new()
        } else {
            self.write_config(move |tx| Box::pin(super::batch::write::<E>(tx, staged))).await?
        };
        Ok(gather(results, written))
    }

    async fn delete_entity<E: Entity>(&self, id: &str, pre: Precondition) -> StoreResult<()> {
        let id = id.to_owned();
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = id.to_ascii_lowercase();
                let current: Option<E> = current(&mut *tx, &key).await?;
                let Some(mut current) = current else { return Err(StoreError::NotFound) };
                check(&pre, Some(current.stamps().1.clone()))?;
                sqlx::query(table_sql(format!("DELETE FROM {} WHERE id_key = $1", E::TABLE)))
                    .bind(&key)
                    .execute(&mut *tx)
                    .await
                    .map_err(backend)?;
                Ok(())
            })
        })
        .await
    }

    async fn query_entities<E: Entity>(&self, page: PageRequest, only_kind: Option<&str>) -> StoreResult<Page<E>> {
        let limit = page.max_items.clamp(1, 10_000);
        let after = page.continuation.unwrap_or_default();
        let search = page.search.filter(|s| !s.is_empty()).map(|s| s.to_ascii_lowercase());
        // The conditions in use, numbered from $1; the page adds `id_key > $n` and the limit after them.
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        if let Some(k) = only_kind {
            values.push(FilterValue::Text(k.to_owned()));
            conditions.push(format!("attestation = ${}", values.len()));
        }
        if let Some(q) = &search {
            values.push(FilterValue::Text(q.clone()));
            conditions.push(format!("strpos(id_key, ${}) > 0", values.len()));
        }
        for (expr, value) in where_filter(&page.filter) {
            values.push(value);
            conditions.push(format!("{expr} = ${}", values.len()));
        }
        let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let count_sql = format!("SELECT COUNT(*) FROM {}{filter}", E::TABLE);
        let n = values.len();
        let page_sql = format!(
            "SELECT id_key, doc, secrets FROM {}{} id_key > ${} ORDER BY id_key LIMIT ${}",
            E::TABLE,
            if conditions.is_empty() { " WHERE".to_owned() } else { format!("{filter} AND") },
            n + 1,
            n + 2
        );
        let mut rows = sqlx::query(table_sql(page_sql));
        let mut count = sqlx::query_scalar::<_, i64>(table_sql(count_sql));
        for v in values {
            (rows, count) = match v {
                FilterValue::Text(t) => (rows.bind(t.clone()), count.bind(t)),
                FilterValue::Bool(b) => (rows.bind(b), count.bind(b)),
            };
        }
        let rows = rows.bind(&after).bind(i64::try_from(limit + 1).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(backend)?;
        let total = count.fetch_one(&self.pool).await.map_err(backend)?;
        let more = rows.len() > limit;
        let rows: Vec<_> = rows.into_iter().take(limit).collect();
        let last = rows.last().map(|r| r.get::<String, _>("id_key"));
        let items = self
            .decode_or_quarantine(
                E::QUARANTINE,
                rows,
                |r| r.get::<String, _>("id_key"),
                |r| entity_from_row(&self.key, r.get::<&str, _>("id_key"), r.get::<&str, _>("doc"), r.get::<Option<&str>, _>("secrets")),
            )
            .await;
        Ok(Page { items, continuation: if more { last } else { None }, total: u64::try_from(total).unwrap_or_default() })
    }
}

/// A value bound for one condition of a query's `WHERE`.
enum FilterValue {
    Text(String),
    Bool(bool),
}

/// Each condition's expression (a constant chosen by field, never input) and the value to compare it with.
/// The document is read as `jsonb`; a missing `iotEdge` is `false`, as in SQLite.
fn where_filter(conditions: &[Condition]) -> Vec<(&'static str, FilterValue)> {
    conditions
        .iter()
        .map(|c| {
            let expr = match c.field {
                Field::RegistrationId | Field::EnrollmentGroupId => "id_key",
                Field::DeviceId => "(doc::jsonb ->> 'deviceId')",
                Field::ProvisioningStatus => "lower(doc::jsonb ->> 'provisioningStatus')",
                Field::IotHubHostName => "lower(doc::jsonb ->> 'iotHubHostName')",
                Field::AllocationPolicy => "lower(doc::jsonb ->> 'allocationPolicy')",
                Field::AttestationType => "lower(attestation)",
                Field::IotEdge => "coalesce((doc::jsonb -> 'capabilities' ->> 'iotEdge')::boolean, false)",
            };
            let value = match &c.value {
                Literal::Str(s) if c.field.case_insensitive() => FilterValue::Text(s.to_lowercase()),
                Literal::Str(s) => FilterValue::Text(s.clone()),
                Literal::Bool(b) => FilterValue::Bool(*b),
            };
            (expr, value)
        })
        .collect()
}

#[async_trait]
impl EnrollmentStore for PgStore {
    async fn get_enrollment(&self, registration_id: &str) -> StoreResult<Option<IndividualEnrollment>> {
        self.get_entity(registration_id).await
    }
    async fn put_enrollment(&self, e: IndividualEnrollment, pre: Precondition) -> StoreResult<IndividualEnrollment> {
        self.put_entity(e, pre).await
    }
    async fn delete_enrollment(&self, registration_id: &str, pre: Precondition) -> StoreResult<()> {
        self.delete_entity::<IndividualEnrollment>(registration_id, pre).await
    }
    async fn query_enrollments(&self, page: PageRequest) -> StoreResult<Page<IndividualEnrollment>> {
        self.query_entities(page, None).await
    }
    async fn put_enrollments(
        &self,
        items: Vec<(IndividualEnrollment, Precondition)>,
    ) -> StoreResult<Vec<StoreResult<IndividualEnrollment>>> {
        self.put_entities(items).await
    }
    async fn get_group(&self, group_id: &str) -> StoreResult<Option<EnrollmentGroup>> {
        self.get_entity(group_id).await
    }
    async fn put_group(&self, g: EnrollmentGroup, pre: Precondition) -> StoreResult<EnrollmentGroup> {
        self.put_entity(g, pre).await
    }
    async fn put_groups(&self, items: Vec<(EnrollmentGroup, Precondition)>) -> StoreResult<Vec<StoreResult<EnrollmentGroup>>> {
        self.put_entities(items).await
    }
    async fn delete_group(&self, group_id: &str, pre: Precondition) -> StoreResult<()> {
        self.delete_entity::<EnrollmentGroup>(group_id, pre).await
    }
    async fn query_groups(&self, page: PageRequest) -> StoreResult<Page<EnrollmentGroup>> {
        self.query_entities(page, None).await
    }
    async fn symmetric_key_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self.query_entities(PageRequest { max_items: 10_000, ..PageRequest::default() }, Some("symmetricKey")).await?.items)
    }
    async fn x509_groups(&self) -> StoreResult<Vec<EnrollmentGroup>> {
        Ok(self.query_entities(PageRequest { max_items: 10_000, ..PageRequest::default() }, Some("x509")).await?.items)
    }
}
