//! PostgreSQL implementation of every store trait (cargo feature `postgres`), selected by a `postgres://`
//! database URL. Same documents, same sealing, same semantics as [`crate::SqliteStore`]; what differs is how
//! writes are made atomic:
//!
//! - every write is one transaction on a pooled connection, answered after `COMMIT` (PostgreSQL's default
//!   `synchronous_commit = on`: the commit is flushed to the WAL before the call returns);
//! - a conditional write of the configuration (enrollments, groups, CAs; etag / if-match) first bumps the
//!   row of `config_version` — that row lock makes the configuration's writers take turns, across every
//!   process sharing the database, so the precondition read after it and the write cannot interleave with
//!   another writer (READ COMMITTED: each statement sees what the previous holder committed);
//! - registration records deleted under an etag are read `FOR UPDATE`; operations, leases and TPM
//!   challenges are conditional `UPDATE … WHERE …` (a row lock, re-checked by PostgreSQL); one `assigning`
//!   operation per device is the same partial unique index as SQLite's.
//!
//! [`ConfigVersion`]: the `config_version` row is bumped in the same transaction as every configuration
//! write (a refused one too: the refused unit runs in a savepoint that is rolled back, the bump commits), and
//! `NOTIFY dps_config` is sent with it. The store keeps the last version it saw in memory (read without I/O);
//! its own writes raise it as they commit, a background `LISTEN` raises it on other processes' writes, and
//! after the listener reconnects the row is read again (notifications may have been missed). So one process
//! is exact; several processes see each other's writes once the notification arrives (milliseconds).
//!
//! Ordering and paging: the key columns are `COLLATE "C"` (byte order, as SQLite's), so lists and
//! continuations are identical whatever the database's locale.

mod batch;
mod certificates;
mod credentials;
mod enrollments;
mod hubs;
pub(crate) mod operations;
mod policies;
mod quarantine;
mod registrations;
mod registry;
mod settings;
mod tpm;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dps_core::ports::{ConfigVersion, StoreError, StoreResult};
use dps_crypto::MasterKey;
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

use crate::backend;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel configuration writes notify on (payload: the new version).
const CONFIG_CHANNEL: &str = "dps_config";

/// Connections of the pool (reads and writes).
const MAX_CONNECTIONS: u32 = 16;

/// PostgreSQL implementation of every store trait.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
    pub(crate) key: Arc<MasterKey>,
    version: Arc<Version>,
    closed: watch::Sender<bool>,
}

/// [`ConfigVersion`] as this process knows it: the highest version of the `config_version` row seen, plus one
/// for each configuration write that failed before it could bump the row (still a change to report: the
/// caller's cache may hold what the write was about). Both only grow, so their sum changes on every event.
/// `changes` tells watchers the highest row version seen.
struct Version {
    seen: AtomicU64,
    failed: AtomicU64,
    changes: watch::Sender<u64>,
}

impl Version {
    fn new() -> Self {
        Self { seen: AtomicU64::new(0), failed: AtomicU64::new(0), changes: watch::channel(0).0 }
    }

    fn saw(&self, v: i64) {
        let v = v.unsigned_abs();
        if self.seen.fetch_max(v, Ordering::SeqCst) < v {
            self.changes.send_if_modified(|current| {
                let newer = *current < v;
                if newer {
                    *current = v;
                }
                newer
            });
        }
    }
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database?…`) and applies the migrations.
    pub async fn open(url: &str, key: Arc<MasterKey>) -> Result<Self, StoreError> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::backend(format!("the database URL does not parse: {e}")))?
            // A write is durable before its caller hears back, whatever the server's or role's default.
            .options([("synchronous_commit", "on")]);
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await
            .map_err(backend)?;
        MIGRATOR.run(&pool).await.map_err(backend)?;
        let version = Arc::new(Version::new());
        let (closed, closed_rx) = watch::channel(false);
        let store = Self { pool, key, version, closed };
        // Listening before the row is read: a write committed in between is seen one way or the other.
        let mut listener = PgListener::connect_with(&store.pool).await.map_err(backend)?;
        listener.listen(CONFIG_CHANNEL).await.map_err(backend)?;
        store.refresh_version().await?;
        tokio::spawn(listen(listener, store.clone_for_listener(), closed_rx));
        Ok(store)
    }

    /// What the listener task keeps: the pool and the version, not the close signal's sender (a store that
    /// is dropped everywhere else ends the task).
    fn clone_for_listener(&self) -> (PgPool, Arc<Version>) {
        (self.pool.clone(), Arc::clone(&self.version))
    }

    /// The database's configuration version as this store last saw it, changing when any process's
    /// configuration write commits (its own at once, others' once their notification arrives): what caches of
    /// several instances sharing the database can wait on.
    pub fn watch_config_version(&self) -> watch::Receiver<u64> {
        self.version.changes.subscribe()
    }

    async fn refresh_version(&self) -> StoreResult<()> {
        read_version(&self.pool, &self.version).await
    }

    /// Runs `unit` in its own transaction; answers once it is committed (or rolled back, when it failed).
    pub(crate) async fn write<T, F>(&self, unit: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        match unit(&mut tx).await {
            Ok(v) => {
                tx.commit().await.map_err(backend)?;
                Ok(v)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// [`Self::write`] of what a registration reads (enrollments, groups, hubs, CAs): bumps the version row
    /// first (the configuration writers' turn, see the module docs), runs `unit` in a savepoint, commits the
    /// bump whatever the unit's outcome; the new version is known here before the caller hears back.
    pub(crate) async fn write_config<T, F>(&self, unit: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let result = self.write_config_inner(unit).await;
        match &result {
            Ok((Some(v), _)) => self.version.saw(*v),
            _ => {
                self.version.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        result.and_then(|(_, r)| r)
    }

    async fn write_config_inner<T, F>(&self, unit: F) -> StoreResult<(Option<i64>, StoreResult<T>)>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let version: i64 = sqlx::query_scalar("UPDATE config_version SET version = version + 1 WHERE id = 1 RETURNING version")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        sqlx::query("SELECT pg_notify($1, $2)").bind(CONFIG_CHANNEL).bind(version.to_string()).execute(&mut *tx).await.map_err(backend)?;
        let result = {
            let mut unit_tx = tx.begin().await.map_err(backend)?;
            let r = unit(&mut unit_tx).await;
            if r.is_ok() {
                unit_tx.commit().await.map_err(backend)?;
            } else {
                unit_tx.rollback().await.map_err(backend)?;
            }
            r
        };
        tx.commit().await.map_err(backend)?;
        Ok((Some(version), result))
    }

    pub async fn close(&self) {
        let _ = self.closed.send(true);
        self.pool.close().await;
    }

    pub(crate) fn seal(&self, plaintext: &str, aad: &str) -> String {
        crate::seal(&self.key, plaintext, aad)
    }

    pub(crate) fn open_sealed(&self, sealed: &str, aad: &str) -> Result<String, StoreError> {
        crate::open_sealed(&self.key, sealed, aad)
    }
}

impl ConfigVersion for PgStore {
    fn config_version(&self) -> u64 {
        self.version.seen.load(Ordering::SeqCst).wrapping_add(self.version.failed.load(Ordering::SeqCst))
    }
}

async fn read_version(pool: &PgPool, version: &Version) -> StoreResult<()> {
    let v: i64 = sqlx::query_scalar("SELECT version FROM config_version WHERE id = 1").fetch_one(pool).await.map_err(backend)?;
    version.saw(v);
    Ok(())
}

/// Follows other processes' configuration writes on `listener` (listening on `dps_config`) until the store
/// closes. After the listener's connection was lost (sqlx reconnects it and listens again) the version row is
/// read again: what was notified meanwhile is lost.
async fn listen(mut listener: PgListener, (pool, version): (PgPool, Arc<Version>), mut closed: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = closed.changed() => return,
            n = listener.try_recv() => match n {
                Ok(Some(n)) => match n.payload().parse::<i64>() {
                    Ok(v) => version.saw(v),
                    Err(_) => tracing::warn!(payload = n.payload(), "a configuration notification without a version"),
                },
                // The connection was lost and is re-established by the next call: what was sent meanwhile is
                // read from the row.
                Ok(None) => {
                    if let Err(e) = read_version(&pool, &version).await {
                        tracing::debug!(error = %e, "cannot read the configuration version; retrying on the next notification");
                    }
                }
                Err(e) => {
                    if pool.is_closed() {
                        return;
                    }
                    tracing::debug!(error = %e, "the configuration listener failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}
