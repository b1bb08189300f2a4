//! Individual enrollments and enrollment groups. Symmetric keys are taken out of the document and sealed
//! (associated data `enrollment/<id>` or `group/<id>`), and so is the query of the custom allocation webhook's
//! URL (`customAllocationDefinition.webhookUrl`: Azure Functions' `code=` key lives there, issue #14); the
//! document keeps the URL without it. Reads put both back.

use async_trait::async_trait;
use dps_core::model::{etag_matches, Page, PageRequest, Precondition};
use dps_core::ports::{EnrollmentStore, StoreError, StoreResult};
use dps_core::query::{Condition, Field, Literal};
use dps_proto::{AttestationMechanism, Enrollment, EnrollmentGroup, IndividualEnrollment, SymmetricKeyAttestation};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use dps_crypto::MasterKey;

use crate::{backend, doc_in_tx, from_json, open_sealed, seal, to_json, SqliteStore};

#[derive(Serialize, Deserialize)]
pub(crate) struct Keys {
    primary: Option<String>,
    secondary: Option<String>,
    /// The webhook URL's query, without its `?` (absent in rows written before it was sealed).
    #[serde(default, rename = "webhookQuery")]
    webhook_query: Option<String>,
}

/// Table-specific parts of the two enrollment documents; the rest is [`Enrollment`].
pub(crate) trait Entity: Enrollment {
    const TABLE: &'static str;
    const QUARANTINE: crate::quarantine::Quarantinable;
    const AAD: &'static str;
    fn attestation_mut(&mut self) -> &mut AttestationMechanism {
        self.shared().attestation
    }
    fn stamps(&mut self) -> (&mut Option<chrono::DateTime<chrono::Utc>>, &mut Option<String>) {
        let s = self.shared();
        (s.created_date_time_utc, s.etag)
    }
    fn webhook_url_mut(&mut self) -> Option<&mut String> {
        self.shared().custom_allocation_definition.as_mut().map(|d| &mut d.webhook_url)
    }
}

/// Takes the query (and fragment) off a webhook URL; returns it without its `?`.
fn take_query(url: &mut String) -> Option<String> {
    let at = url.find('?')?;
    let query = url.split_off(at);
    Some(query.get(1..).unwrap_or_default().to_owned())
}

impl Entity for IndividualEnrollment {
    const TABLE: &'static str = "enrollments";
    const QUARANTINE: crate::quarantine::Quarantinable = crate::quarantine::ENROLLMENTS;
    const AAD: &'static str = "enrollment";
}

impl Entity for EnrollmentGroup {
    const TABLE: &'static str = "enrollment_groups";
    const QUARANTINE: crate::quarantine::Quarantinable = crate::quarantine::GROUPS;
    const AAD: &'static str = "group";
}

/// The sealed keys' plaintext, serialised from borrowed strings (the same JSON as [`Keys`]).
#[derive(Serialize)]
struct KeysRef<'a> {
    primary: Option<&'a str>,
    secondary: Option<&'a str>,
    #[serde(rename = "webhookQuery", skip_serializing_if = "Option::is_none")]
    webhook_query: Option<&'a str>,
}

/// An entity without its secrets, and the secrets sealed (and in the clear, for the answer).
struct Stripped<E> {
    key: String,
    kind: String,
    entity: E,
    secrets: Option<String>,
    keys: Option<SymmetricKeyAttestation>,
    webhook_query: Option<String>,
}

/// One item of a batch write made ready outside the writer: keys sealed, document serialised.
pub(crate) struct Staged<E> {
    pub key: String,
    pub kind: String,
    /// The entity without its keys (what `doc` is made of); they go back in for the answer.
    pub entity: E,
    pub keys: Option<SymmetricKeyAttestation>,
    /// The webhook URL's query, sealed with the keys.
    pub webhook_query: Option<String>,
    /// The entity's own created time and etag.
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub etag: Option<String>,
    pub doc: String,
    pub secrets: Option<String>,
    pub pre: Precondition,
}

impl<E: Entity> Staged<E> {
    /// The entity as the caller gets it back: keys in, and `created` (that of the entity it replaced) if given.
    pub(crate) fn into_answer(self, created: Option<Option<chrono::DateTime<chrono::Utc>>>) -> E {
        let mut e = self.entity;
        if let Some(c) = created {
            *e.stamps().0 = c;
        }
        if let Some(k) = self.keys {
            e.attestation_mut().symmetric_key = Some(k);
        }
        restore_query(&mut e, self.webhook_query.as_deref());
        e
    }
}

/// Puts a sealed query back on the webhook URL.
pub(crate) fn restore_query<E: Entity>(e: &mut E, query: Option<&str>) {
    if let (Some(url), Some(q)) = (e.webhook_url_mut(), query) {
        url.push('?');
        url.push_str(q);
    }
}

/// An entity as its row: key, attestation kind, document, sealed secrets.
pub(crate) fn to_row<E: Entity>(master: &MasterKey, e: E) -> StoreResult<(String, String, String, Option<String>)> {
    let s = strip(master, e)?;
    Ok((s.key, s.kind, to_json(&s.entity)?, s.secrets))
}

/// Takes the keys and the webhook URL's query out of `e` and seals them (associated data `<AAD>/<key>`);
/// answers them too.
fn strip<E: Entity>(master: &MasterKey, mut e: E) -> StoreResult<Stripped<E>> {
    let key = e.id().to_ascii_lowercase();
    let webhook_query = e.webhook_url_mut().and_then(take_query);
    let att = e.attestation_mut();
    let kind = att.kind.as_str().to_owned();
    let keys = att.symmetric_key.take();
    if keys.is_some() {
        att.symmetric_key = Some(SymmetricKeyAttestation::default());
    }
    let secrets = if keys.is_some() || webhook_query.is_some() {
        let sk = keys.as_ref();
        let plain = KeysRef {
            primary: sk.and_then(|k| k.primary_key.as_deref()),
            secondary: sk.and_then(|k| k.secondary_key.as_deref()),
            webhook_query: webhook_query.as_deref(),
        };
        let mut aad = String::with_capacity(E::AAD.len() + 1 + key.len());
        aad.push_str(E::AAD);
        aad.push('/');
        aad.push_str(&key);
        Some(seal(master, &to_json(&plain)?, &aad))
    } else {
        None
    };
    Ok(Stripped { key, kind, entity: e, secrets, keys, webhook_query })
}

/// An item of a batch made ready before the write: keys sealed, document serialised.
pub(crate) fn stage<E: Entity>(master: &MasterKey, e: E, pre: Precondition) -> StoreResult<Staged<E>> {
    let Stripped { key, kind, mut entity, secrets, keys, webhook_query } = strip(master, e)?;
    let doc = to_json(&entity)?;
    let (created, etag) = entity.stamps();
    let (created, etag) = (*created, etag.clone());
    Ok(Staged { key, kind, entity, keys, webhook_query, created, etag, doc, secrets, pre })
}

/// An entity from its row: the sealed keys and webhook query put back.
pub(crate) fn entity_from_row<E: Entity>(master: &MasterKey, key: &str, doc: &str, secrets: Option<&str>) -> StoreResult<E> {
    let mut e: E = from_json(doc)?;
    if let Some(s) = secrets {
        let keys: Keys = from_json(&open_sealed(master, s, &format!("{}/{key}", E::AAD))?)?;
        // The document keeps an empty `symmetricKey` where keys were taken out.
        let att = e.attestation_mut();
        if att.symmetric_key.is_some() || keys.primary.is_some() || keys.secondary.is_some() {
            att.symmetric_key = Some(SymmetricKeyAttestation { primary_key: keys.primary, secondary_key: keys.secondary });
        }
        restore_query(&mut e, keys.webhook_query.as_deref());
    }
    Ok(e)
}

/// Stages every item (one result slot per item: `Some(Err)` for one that cannot be staged).
#[allow(clippy::type_complexity)]
pub(crate) fn stage_all<E: Entity>(
    master: &MasterKey,
    items: Vec<(E, Precondition)>,
) -> (Vec<Option<StoreResult<E>>>, Vec<(usize, Staged<E>)>) {
    let mut results: Vec<Option<StoreResult<E>>> = Vec::with_capacity(items.len());
    let mut staged = Vec::with_capacity(items.len());
    for (i, (e, pre)) in items.into_iter().enumerate() {
        match stage(master, e, pre) {
            Ok(s) => {
                staged.push((i, s));
                results.push(None);
            }
            Err(err) => results.push(Some(Err(err))),
        }
    }
    (results, staged)
}

/// The batch's answers put in their slots, in the caller's order.
pub(crate) fn gather<E>(mut results: Vec<Option<StoreResult<E>>>, written: Vec<(usize, StoreResult<E>)>) -> Vec<StoreResult<E>> {
    for (i, r) in written {
        if let Some(slot) = results.get_mut(i) {
            *slot = Some(r);
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(|| Err(StoreError::backend("a batch item got no answer")))).collect()
}

impl SqliteStore {
    async fn get_entity<E: Entity>(&self, id: &str) -> StoreResult<Option<E>> {
        let key = id.to_ascii_lowercase();
        let row = sqlx::query(table_sql(format!("SELECT doc, secrets FROM {} WHERE id_key = ?", E::TABLE)))
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
        let store = self.clone();
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = e.id().to_ascii_lowercase();
                let current: Option<E> = doc_in_tx(&mut *tx, current_sql::<E>(), &key).await?;
                check(&pre, current.clone().map(|mut c| c.stamps().1.clone()))?;
                if let Some(mut c) = current {
                    let created = *c.stamps().0;
                    *e.stamps().0 = created;
                }
                let returned = e.clone();
                let (key, kind, doc, secrets) = to_row(&store.key, e)?;
                sqlx::query(table_sql(format!(
                    "INSERT INTO {} (id_key, attestation, doc, secrets) VALUES (?, ?, ?, ?)
                     ON CONFLICT(id_key) DO UPDATE SET attestation = excluded.attestation, doc = excluded.doc, secrets = excluded.secrets",
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

    /// Many writes in one durable write (`batch.rs`): keys sealed and documents serialised here, before the
    /// writer; one result per item, in order.
    async fn put_entities<E: Entity>(&self, items: Vec<(E, Precondition)>) -> StoreResult<Vec<StoreResult<E>>> {
        let (results, staged) = stage_all(&self.key, items);
        let written = if staged.is_empty() {
            Vec::new()
        } else {
            self.write_config(move |tx| Box::pin(crate::batch::write::<E>(tx, staged))).await?
        };
        Ok(gather(results, written))
    }

    async fn delete_entity<E: Entity>(&self, id: &str, pre: Precondition) -> StoreResult<()> {
        let id = id.to_owned();
        self.write_config(move |tx| {
            Box::pin(async move {
                let key = id.to_ascii_lowercase();
                let current: Option<E> = doc_in_tx(&mut *tx, current_sql::<E>(), &key).await?;
                let Some(mut current) = current else { return Err(StoreError::NotFound) };
                check(&pre, Some(current.stamps().1.clone()))?;
                sqlx::query(table_sql(format!("DELETE FROM {} WHERE id_key = ?", E::TABLE)))
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
        let (where_conditions, values) = where_filter(&page.filter);
        let mut filter = "(? IS NULL OR attestation = ?) AND (? IS NULL OR instr(id_key, ?) > 0)".to_owned();
        for c in &where_conditions {
            filter.push_str(" AND ");
            filter.push_str(c);
        }
        let mut rows = sqlx::query(table_sql(format!(
            "SELECT id_key, doc, secrets FROM {} WHERE id_key > ? AND {filter} ORDER BY id_key LIMIT ?",
            E::TABLE
        )))
        .bind(&after)
        .bind(only_kind)
        .bind(only_kind)
        .bind(&search)
        .bind(&search);
        for v in &values {
            rows = match v {
                FilterValue::Text(t) => rows.bind(t.clone()),
                FilterValue::Int(i) => rows.bind(*i),
            };
        }
        let rows = rows.bind(i64::try_from(limit + 1).unwrap_or(i64::MAX)).fetch_all(&self.pool).await.map_err(backend)?;
        // The count names only the filters in use, so SQLite can answer it from the id index alone (a full
        // scan of the documents costs ≈ 10 ms at 100,000 enrollments; benches/enrollment_list.rs) unless a
        // query's WHERE names a member of the document.
        let mut count_sql = format!("SELECT COUNT(*) FROM {}", E::TABLE);
        let mut conditions = Vec::new();
        if only_kind.is_some() {
            conditions.push("attestation = ?");
        }
        if search.is_some() {
            conditions.push("instr(id_key, ?) > 0");
        }
        conditions.extend(where_conditions.iter().map(String::as_str));
        if !conditions.is_empty() {
            count_sql = format!("{count_sql} WHERE {}", conditions.join(" AND "));
        }
        let mut count = sqlx::query_scalar::<_, i64>(table_sql(count_sql));
        if let Some(k) = only_kind {
            count = count.bind(k);
        }
        if let Some(q) = &search {
            count = count.bind(q.clone());
        }
        for v in values {
            count = match v {
                FilterValue::Text(t) => count.bind(t),
                FilterValue::Int(i) => count.bind(i),
            };
        }
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
    Int(i64),
}

/// The SQL of a query's conditions (`expr = ?` each; the expressions are constants chosen by field, never
/// input) and the values to bind, in order. JSON booleans read as 1/0 through `json_extract`.
fn where_filter(conditions: &[Condition]) -> (Vec<String>, Vec<FilterValue>) {
    let mut sql = Vec::with_capacity(conditions.len());
    let mut values = Vec::with_capacity(conditions.len());
    for c in conditions {
        let expr = match c.field {
            Field::RegistrationId | Field::EnrollmentGroupId => "id_key",
            Field::DeviceId => "json_extract(doc, '$.deviceId')",
            Field::ProvisioningStatus => "lower(json_extract(doc, '$.provisioningStatus'))",
            Field::IotHubHostName => "lower(json_extract(doc, '$.iotHubHostName'))",
            Field::AllocationPolicy => "lower(json_extract(doc, '$.allocationPolicy'))",
            Field::AttestationType => "lower(attestation)",
            Field::IotEdge => "coalesce(json_extract(doc, '$.capabilities.iotEdge'), 0)",
        };
        sql.push(format!("{expr} = ?"));
        values.push(match &c.value {
            Literal::Str(s) if c.field.case_insensitive() => FilterValue::Text(s.to_lowercase()),
            Literal::Str(s) => FilterValue::Text(s.clone()),
            Literal::Bool(b) => FilterValue::Int(i64::from(*b)),
        });
    }
    (sql, values)
}

/// Checks a precondition against the current etag (`None`: the entity does not exist).
pub(crate) fn check(pre: &Precondition, current: Option<Option<String>>) -> StoreResult<()> {
    match (pre, current) {
        (Precondition::None, _) => Ok(()),
        (Precondition::NotExists, None) => Ok(()),
        (Precondition::NotExists, Some(_)) => Err(StoreError::Conflict),
        (Precondition::Exists, Some(_)) => Ok(()),
        (Precondition::Exists | Precondition::Etag(_), None) => Err(StoreError::PreconditionFailed),
        (Precondition::Etag(want), Some(have)) => {
            if have.as_deref().is_some_and(|h| etag_matches(h, want)) {
                Ok(())
            } else {
                Err(StoreError::PreconditionFailed)
            }
        }
    }
}

#[async_trait]
impl EnrollmentStore for SqliteStore {
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

/// The document of one entity by key, read inside a write.
pub(crate) fn current_sql<E: Entity>() -> sqlx::AssertSqlSafe<String> {
    table_sql(format!("SELECT doc FROM {} WHERE id_key = ?", E::TABLE))
}

/// SQL text built from one of this module's two table names (constants, never input).
pub(crate) fn table_sql(s: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(s)
}
