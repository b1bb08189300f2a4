//! Persistence for DPS Console behind `dps-core`'s store traits, on two backends:
//!
//! - [`SqliteStore`] (this file and its modules) — the zero-configuration default;
//! - [`PgStore`] (`postgres/`, cargo feature `postgres`) — PostgreSQL, selected by a `postgres://` database
//!   URL; one file per concern as on the SQLite side, its own migrations (`migrations/postgres/`). See its
//!   module docs for how conditional writes and the configuration version work there.
//!
//! [`Store`] is the handle the service holds: either backend, every trait by delegation ([`Store::open`]
//! picks the backend from the database URL). Both backends share what is not SQL: the entities' staging
//! and sealing (`enrollments.rs`), the batch decisions (`batch.rs`), the quarantine's row type.
//!
//! [`SqliteStore`] is the zero-configuration default: one file in the data directory, migrations applied
//! at open, WAL journal with `synchronous = FULL`: a write is on disk before its caller hears back. Every
//! write runs on one writer connection with group commit (`writer.rs`), each in its own savepoint, so a
//! conditional write (etag check and write) cannot interleave with another; reads use a pool. WAL
//! checkpoints run in the background on their own connection, not inside a commit, and keep the log short
//! (`checkpoint.rs`). Documents are stored
//! as JSON in their wire shape; every secret (enrollment and group keys, policy keys, hub identities' keys) is
//! sealed with the master key before it reaches SQL and never appears in a `doc` column.
//!
//! The store suite in `tests/suite.rs` is written against [`Store`] and runs once per backend (`mod sqlite`,
//! `mod postgres`); [`testing`] (feature `testing`) gives each PostgreSQL test a fresh database on one
//! throw-away cluster per test process.

mod batch;
mod certificates;
mod checkpoint;
mod console;
mod credentials;
mod enrollments;
mod hubs;
mod operations;
mod policies;
mod quarantine;
mod registrations;
mod registry;
mod reseal;
mod settings;
mod store;
mod tpm;
mod writer;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dps_core::ports::{ConfigVersion, StoreError, StoreResult};
use dps_crypto::MasterKey;
use futures_util::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqliteConnection, SqlitePool};

pub use console::{AttemptWindow, ConsoleAccess};
pub use quarantine::{Quarantine, QuarantinedRow};
pub use reseal::ResealReport;

/// The purge's batch statement per backend (#15 item 5), for the suite's query-plan checks.
pub mod purge_sql {
    pub use crate::operations::PURGE_SQL as SQLITE;
    #[cfg(feature = "postgres")]
    pub use crate::postgres::operations::PURGE_SQL as POSTGRES;
}
pub use settings::Settings;
pub use store::{is_postgres, redact_url, StartLock, Store};

#[cfg(feature = "postgres")]
pub use postgres::PgStore;

/// SQLite implementation of every store trait.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    key: Arc<MasterKey>,
    writer: writer::Writer,
    /// [`ConfigVersion`]: changed after every write of enrollments, groups, hubs or CAs. One process owns the
    /// database file (the data directory's lock), so counting in memory sees every write.
    config_version: Arc<AtomicU64>,
}

/// The writer connection's page cache (SQLite's `cache_size`: negative = KiB). Registrations insert into
/// several B-trees at random keys; with SQLite's default of 2 MiB the one writer read most interior and leaf
/// pages back from the file system on every commit once the database had grown past a few hundred megabytes, and
/// the soak's assignment time rose with the database's size. Readers keep the default (they are eight, and the
/// hot lookups are cached above the store).
const WRITER_CACHE_KIB: &str = "-65536";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::caused_by(e)
}

/// The `doc` of one row, read inside a write transaction (`sql` selects `doc` by one bound key).
pub(crate) async fn doc_in_tx<T: serde::de::DeserializeOwned>(
    tx: &mut sqlx::SqliteConnection,
    sql: impl sqlx::SqlSafeStr,
    key: &str,
) -> Result<Option<T>, StoreError> {
    use sqlx::Row;
    sqlx::query(sql).bind(key).fetch_optional(tx).await.map_err(backend)?.map(|r| from_json(r.get::<&str, _>("doc"))).transpose()
}

/// Seals a secret with the master key (`aad` names what it is and whose: `enrollment/<id>`, …).
pub(crate) fn seal(key: &MasterKey, plaintext: &str, aad: &str) -> String {
    key.seal(plaintext.as_bytes(), aad)
}

pub(crate) fn open_sealed(key: &MasterKey, sealed: &str, aad: &str) -> Result<String, StoreError> {
    key.open_string(sealed, aad).map_err(|e| StoreError::backend(format!("a sealed secret ({aad}) does not open: {e}")))
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(backend)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::backend(format!("stored document does not parse: {e}")))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path, key: Arc<MasterKey>) -> Result<Self, StoreError> {
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let opts = checkpoint::options(opts);
        // Readers never need a ping before use: a local file does not go away behind the pool's back.
        let pool =
            SqlitePoolOptions::new().max_connections(8).test_before_acquire(false).connect_with(opts.clone()).await.map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        let conn = opts.clone().pragma("cache_size", WRITER_CACHE_KIB).connect().await.map_err(backend)?;
        let checkpointer = checkpoint::connect(&opts).await.map_err(backend)?;
        tokio::spawn(checkpoint::run(checkpointer, pool.close_event()));
        Ok(Self { pool, key, writer: writer::Writer::start(conn), config_version: Arc::default() })
    }

    /// Runs `unit` as one atomic write in the next group commit; answers once it is on disk.
    pub(crate) async fn write<T, F>(&self, unit: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        self.writer.write(unit).await
    }

    /// [`Self::write`] of what a registration reads (enrollments, groups, hubs, CAs): changes the
    /// [`ConfigVersion`] once the write is over, whatever its outcome, before the caller hears back.
    pub(crate) async fn write_config<T, F>(&self, unit: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let result = self.writer.write(unit).await;
        self.config_version.fetch_add(1, Ordering::SeqCst);
        result
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn seal(&self, plaintext: &str, aad: &str) -> String {
        seal(&self.key, plaintext, aad)
    }

    pub(crate) fn open_sealed(&self, sealed: &str, aad: &str) -> Result<String, StoreError> {
        open_sealed(&self.key, sealed, aad)
    }
}

impl ConfigVersion for SqliteStore {
    fn config_version(&self) -> u64 {
        self.config_version.load(Ordering::SeqCst)
    }
}
