//! Persistence for DPS Console behind `dps-core`'s store traits.
//!
//! [`SqliteStore`] is the zero-configuration default: one file in the data directory, migrations applied
//! at open, WAL journal. Documents are stored as JSON in their wire shape; every secret (enrollment and
//! group keys, policy keys, hub identities' keys) is sealed with the master key before it reaches SQL and
//! never appears in a `doc` column. Conditional writes (etags) run under one writer lock inside a
//! transaction, so a check and its write cannot interleave with another writer.
//!
//! The store suite in `tests/suite.rs` is written against the traits, to be instantiated once per backend.

mod certificates;
mod enrollments;
mod hubs;
mod operations;
mod policies;
mod registrations;
mod registry;
mod settings;
mod tpm;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dps_core::ports::StoreError;
use dps_crypto::MasterKey;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use settings::Settings;

/// SQLite implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    key: Arc<MasterKey>,
    write: Arc<tokio::sync::Mutex<()>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The `doc` of one row, read inside a write transaction (`sql` selects `doc` by one bound key).
pub(crate) async fn doc_in_tx<T: serde::de::DeserializeOwned>(
    tx: &mut sqlx::SqliteConnection,
    sql: &'static str,
    key: &str,
) -> Result<Option<T>, StoreError> {
    use sqlx::Row;
    sqlx::query(sql).bind(key).fetch_optional(tx).await.map_err(backend)?.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(backend)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Backend(format!("stored document does not parse: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, key: Arc<MasterKey>) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(opts, key).await
    }

    /// A private in-memory database (tests, benchmarks).
    pub async fn in_memory(key: Arc<MasterKey>) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:").map_err(backend)?;
        // One connection: every connection to ":memory:" is its own database.
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(opts).await.map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(Self { pool, key, write: Arc::default() })
    }

    async fn connect(opts: SqliteConnectOptions, key: Arc<MasterKey>) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(opts).await.map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        Ok(Self { pool, key, write: Arc::default() })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn seal(&self, plaintext: &str, aad: &str) -> String {
        self.key.seal(plaintext.as_bytes(), aad)
    }

    pub(crate) fn open_sealed(&self, sealed: &str, aad: &str) -> Result<String, StoreError> {
        self.key.open_string(sealed, aad).map_err(|e| StoreError::Backend(format!("a sealed secret ({aad}) does not open: {e}")))
    }
}
