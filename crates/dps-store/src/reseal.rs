//! Master-key rotation's part in the store (#15 item 4): every sealed column, and the pass that re-seals what
//! the current key did not seal. The pass reads a bounded page by primary key, opens each stale value with the
//! key ring (old and new keys both open during a rotation) and writes it back sealed with the current key — a
//! compare-and-set on the old text, so a value a request rewrote meanwhile (sealed with the new key already)
//! is left alone. It is idempotent and restartable: a crash mid-pass leaves rows sealed with either key, and
//! the next pass picks up whatever is still stale. Values that no key of the ring opens are counted, not
//! touched (a quarantined row may hold one).

use async_trait::async_trait;
use dps_core::ports::StoreResult;
use dps_crypto::MasterKey;

/// Rows read and written per step of a pass.
pub(crate) const RESEAL_BATCH: i64 = 200;

/// A sealed column: its table, the primary key columns (as text), the column, the associated data each value
/// is bound to (an SQL expression of the row, the same text the writers bind), and which rows hold one.
/// Constants only, never input: they are formatted into SQL.
pub(crate) struct SealedColumn {
    pub table: &'static str,
    pub keys: &'static [&'static str],
    pub column: &'static str,
    pub aad: &'static str,
    pub filter: &'static str,
}

const fn col(table: &'static str, keys: &'static [&'static str], column: &'static str, aad: &'static str) -> SealedColumn {
    SealedColumn { table, keys, column, aad, filter: "TRUE" }
}

/// Every column a secret is sealed in, on both backends (the schemas agree on these names).
pub(crate) const SEALED_COLUMNS: &[SealedColumn] = &[
    col("enrollments", &["id_key"], "secrets", "'enrollment/' || id_key"),
    col("enrollment_groups", &["id_key"], "secrets", "'group/' || id_key"),
    col("linked_hubs", &["host_key"], "secrets", "'hub/' || host_key || '/connectionString'"),
    col("access_policies", &["name_key"], "primary_sealed", "'policy/' || name_key || '/primary'"),
    col("access_policies", &["name_key"], "secondary_sealed", "'policy/' || name_key || '/secondary'"),
    col("device_identities", &["hub_key", "device_key"], "keys_sealed", "'identity/' || hub_key || '/' || device_key"),
    col("tpm_challenges", &["registration_key"], "key_sealed", "'tpm-challenge/' || registration_key"),
    col("credential_policies", &["name_key"], "key_sealed", "'credential-policy/' || name_key"),
    SealedColumn { table: "settings", keys: &["key"], column: "value", aad: "key", filter: "key = 'master_key_check'" },
    SealedColumn {
        table: "quarantine",
        keys: &["CAST(id AS TEXT)"],
        column: "secrets",
        aad: "CASE tbl WHEN 'enrollments' THEN 'enrollment/' || row_key WHEN 'enrollment_groups' THEN 'group/' || row_key \
              WHEN 'linked_hubs' THEN 'hub/' || row_key || '/connectionString' ELSE tbl || '/' || row_key END",
        filter: "TRUE",
    },
];

/// What `dps keys reset` runs after the master key was lost (the same SQL on both backends, one transaction):
/// rows useless without their secret go, the sealed columns of the rest are cleared, the key check row goes.
pub(crate) const FORGET_SECRETS: &[&str] = &[
    "DELETE FROM enrollments WHERE attestation = 'symmetricKey'",
    "UPDATE enrollments SET secrets = NULL WHERE secrets IS NOT NULL",
    "DELETE FROM enrollment_groups WHERE attestation = 'symmetricKey'",
    "UPDATE enrollment_groups SET secrets = NULL WHERE secrets IS NOT NULL",
    "UPDATE linked_hubs SET secrets = NULL WHERE secrets IS NOT NULL",
    "DELETE FROM access_policies",
    "UPDATE device_identities SET keys_sealed = NULL WHERE keys_sealed IS NOT NULL",
    "DELETE FROM tpm_challenges",
    "DELETE FROM credential_policies WHERE key_sealed IS NOT NULL",
    "UPDATE quarantine SET secrets = NULL WHERE secrets IS NOT NULL",
    "DELETE FROM settings WHERE key = 'master_key_check'",
];

/// One sealed value as a pass reads it.
pub(crate) struct SealedRow {
    pub keys: Vec<String>,
    pub value: String,
    pub aad: String,
}

/// A value to write back: the row's keys, the text it held, the new text.
pub(crate) struct Resealed {
    pub keys: Vec<String>,
    pub old: String,
    pub new: String,
}

/// What a backend does for a pass: read a page after a cursor, write a page of compare-and-sets.
#[async_trait]
pub(crate) trait SealedTables: Send + Sync {
    /// Up to [`RESEAL_BATCH`] rows of `c` holding a value, in key order, after `after` (the last page's keys).
    async fn sealed_page(&self, c: &'static SealedColumn, after: Option<Vec<String>>) -> StoreResult<Vec<SealedRow>>;
    /// Writes each value where the row still holds its old text, in one transaction; how many were written.
    async fn write_resealed(&self, c: &'static SealedColumn, rows: Vec<Resealed>) -> StoreResult<u64>;
}

/// What a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResealReport {
    /// Values read that the current key did not seal.
    pub stale: u64,
    /// Of these, the values written back sealed with the current key.
    pub resealed: u64,
    /// Values no key of the ring opens (left as they are).
    pub unreadable: u64,
}

/// The n-th placeholder: `$n` is understood by both backends (SQLite reads it as a parameter numbered by its
/// first appearance, which is n here), so one SQL text serves both.
fn p(n: usize) -> String {
    format!("${n}")
}

/// The `SELECT` of a page.
pub(crate) fn page_sql(c: &SealedColumn, after: bool) -> String {
    let keys = c.keys.join(", ");
    let selected: Vec<String> = c.keys.iter().enumerate().map(|(i, k)| format!("{k} AS k{i}")).collect();
    let mut sql = format!(
        "SELECT {}, {} AS v, {} AS aad FROM {} WHERE {} IS NOT NULL AND {}",
        selected.join(", "),
        c.column,
        c.aad,
        c.table,
        c.column,
        c.filter
    );
    let mut n = 0;
    if after {
        n = c.keys.len();
        let ps: Vec<String> = (1..=n).map(p).collect();
        sql.push_str(&format!(" AND ({keys}) > ({})", ps.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY {keys} LIMIT {}", p(n + 1)));
    sql
}

/// The compare-and-set `UPDATE` of one value: new text first, then the keys, then the old text.
pub(crate) fn update_sql(c: &SealedColumn) -> String {
    let keys: Vec<String> = c.keys.iter().enumerate().map(|(i, k)| format!("{k} = {}", p(i + 2))).collect();
    format!("UPDATE {} SET {} = {} WHERE {} AND {} = {}", c.table, c.column, p(1), keys.join(" AND "), c.column, p(c.keys.len() + 2))
}

/// One pass over every sealed column: re-seals with `key`'s current key what it did not seal.
pub(crate) async fn reseal_all(t: &dyn SealedTables, key: &MasterKey) -> StoreResult<ResealReport> {
    let mut report = ResealReport::default();
    for c in SEALED_COLUMNS {
        let mut pages = Pages::new(t, c);
        while let Some(page) = pages.next().await? {
            let mut writes = Vec::new();
            for r in page.into_iter().filter(|r| !key.is_current(&r.value)) {
                report.stale += 1;
                match key.open(&r.value, &r.aad) {
                    Ok(plain) => writes.push(Resealed { new: key.seal(&plain, &r.aad), keys: r.keys, old: r.value }),
                    Err(_) => report.unreadable += 1,
                }
            }
            if !writes.is_empty() {
                report.resealed += t.write_resealed(c, writes).await?;
            }
        }
    }
    Ok(report)
}

/// Every sealed value with the associated data it is bound to (`table`, `aad`, sealed text).
pub(crate) async fn sealed_values(t: &dyn SealedTables) -> StoreResult<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for c in SEALED_COLUMNS {
        let mut pages = Pages::new(t, c);
        while let Some(page) = pages.next().await? {
            out.extend(page.into_iter().map(|r| (c.table.to_owned(), r.aad, r.value)));
        }
    }
    Ok(out)
}

/// The pages of a column's rows holding a value, in key order.
struct Pages<'a> {
    t: &'a dyn SealedTables,
    c: &'static SealedColumn,
    after: Option<Vec<String>>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(t: &'a dyn SealedTables, c: &'static SealedColumn) -> Self {
        Self { t, c, after: None, done: false }
    }

    async fn next(&mut self) -> StoreResult<Option<Vec<SealedRow>>> {
        if self.done {
            return Ok(None);
        }
        let page = self.t.sealed_page(self.c, self.after.take()).await?;
        let full = i64::try_from(page.len()).unwrap_or(i64::MAX) >= RESEAL_BATCH;
        self.after = page.last().map(|r| r.keys.clone());
        self.done = !full || self.after.is_none();
        Ok(Some(page))
    }
}

/// [`SealedTables`] and `forget_secrets` for a backend's store: the same SQL on both (`$n` placeholders), the
/// same row reading; only the store type differs.
macro_rules! sealed_tables {
    ($store:ty) => {
        impl $store {
            /// Runs [`FORGET_SECRETS`]; the rows each statement changed.
            pub(crate) async fn forget_secrets(&self) -> StoreResult<Vec<u64>> {
                self.write_config(|tx| {
                    Box::pin(async move {
                        let mut counts = Vec::new();
                        for sql in FORGET_SECRETS {
                            counts.push(sqlx::query(*sql).execute(&mut *tx).await.map_err(crate::backend)?.rows_affected());
                        }
                        Ok(counts)
                    })
                })
                .await
            }
        }

        #[async_trait]
        impl SealedTables for $store {
            async fn sealed_page(&self, c: &'static SealedColumn, after: Option<Vec<String>>) -> StoreResult<Vec<SealedRow>> {
                use sqlx::Row;
                let mut q = sqlx::query(sqlx::AssertSqlSafe(page_sql(c, after.is_some())));
                for k in after.unwrap_or_default() {
                    q = q.bind(k);
                }
                let rows = q.bind(RESEAL_BATCH).fetch_all(&self.pool).await.map_err(crate::backend)?;
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
                let sql = update_sql(c);
                self.write(move |tx| {
                    Box::pin(async move {
                        let mut n = 0;
                        for r in rows {
                            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(r.new);
                            for k in r.keys {
                                q = q.bind(k);
                            }
                            n += q.bind(r.old).execute(&mut *tx).await.map_err(crate::backend)?.rows_affected();
                        }
                        Ok(n)
                    })
                })
                .await
            }
        }
    };
}

sealed_tables!(crate::SqliteStore);
#[cfg(feature = "postgres")]
sealed_tables!(crate::PgStore);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_of_a_page_and_of_a_compare_and_set() {
        let c = &SEALED_COLUMNS[5];
        assert_eq!(
            page_sql(c, true),
            "SELECT hub_key AS k0, device_key AS k1, keys_sealed AS v, 'identity/' || hub_key || '/' || device_key AS aad \
             FROM device_identities WHERE keys_sealed IS NOT NULL AND TRUE AND (hub_key, device_key) > ($1, $2) \
             ORDER BY hub_key, device_key LIMIT $3"
        );
        assert!(page_sql(c, false).ends_with("AND TRUE ORDER BY hub_key, device_key LIMIT $1"));
        assert_eq!(
            update_sql(c),
            "UPDATE device_identities SET keys_sealed = $1 WHERE hub_key = $2 AND device_key = $3 AND keys_sealed = $4"
        );
    }
}
