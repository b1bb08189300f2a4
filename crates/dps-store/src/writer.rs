//! Group commit: every write of the store runs on one writer connection, and the writes that arrive while a
//! commit is on its way share the next transaction — one `fsync` for all of them (`synchronous = FULL`: a
//! write is on disk when its caller hears back). Each write is a unit inside its own savepoint, so one that
//! fails (an etag mismatch, a constraint) rolls back alone and the others of its batch still commit.
//!
//! Why hand-written: sqlx has no group commit, and SQLite has one writer at a time anyway; the writer is a
//! task with a channel, the batch is whatever is queued when the previous commit finished (no waiting for
//! more, so a lone write is not delayed).

use futures_util::future::BoxFuture;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use dps_core::ports::{StoreError, StoreResult};

use crate::backend;

/// At most this many units share one transaction.
const MAX_BATCH: usize = 256;

/// What a unit tells the writer: keep it (`true`) or roll it back, and how to answer once the commit is done.
type Ran = (bool, Box<dyn FnOnce(StoreResult<()>) + Send>);
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Ran> + Send>;

/// The handle the store keeps; cloning shares the writer.
#[derive(Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on its own connection.
    pub(crate) fn start(conn: SqliteConnection) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        tokio::spawn(run(conn, rx));
        Self { jobs }
    }

    /// Runs `unit` in the next transaction; answers once that transaction is committed (or the unit failed).
    pub(crate) async fn write<T, F>(&self, unit: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<StoreResult<T>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = unit(conn).await;
                let keep = result.is_ok();
                let answer: Box<dyn FnOnce(StoreResult<()>) + Send> = Box::new(move |committed| {
                    let _ = tx.send(committed.and(result));
                });
                (keep, answer)
            })
        });
        self.jobs.send(job).await.map_err(|_| StoreError::backend("the store is closed"))?;
        rx.await.map_err(|_| StoreError::backend("the write could not run (the store's writer logged why)"))?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let jobs = std::mem::take(&mut batch);
        commit(&mut conn, jobs).await;
    }
    let _ = conn.close().await;
}

/// Runs one of the writer's fixed statements, prepared once and kept in the connection's statement cache.
async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> StoreResult<()> {
    sqlx::query(sql).execute(&mut *conn).await.map(|_| ()).map_err(backend)
}

/// One transaction for the batch; each job in a savepoint. A job that cannot run is dropped, which closes its
/// answer channel: its caller gets an error, never a false success.
async fn commit(conn: &mut SqliteConnection, jobs: Vec<Job>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        warn!(error = %e, "cannot begin a write transaction");
        return;
    }
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Err(e) = exec(conn, "SAVEPOINT unit").await {
            warn!(error = %e, "cannot open a savepoint");
            continue;
        }
        let (keep, answer) = job(conn).await;
        let end = if keep { exec(conn, "RELEASE unit").await } else { rollback_unit(conn).await };
        match end {
            Ok(()) => answers.push((keep, answer)),
            Err(e) => {
                let _ = rollback_unit(conn).await;
                answer(Err(e));
            }
        }
    }
    let committed = exec(conn, "COMMIT").await;
    if let Err(e) = &committed {
        warn!(error = %e, "a write transaction did not commit");
        let _ = exec(conn, "ROLLBACK").await;
    }
    for (keep, answer) in answers {
        // A unit that failed answers its own error whatever the commit did.
        answer(if keep { committed.clone() } else { Ok(()) });
    }
}

async fn rollback_unit(conn: &mut SqliteConnection) -> StoreResult<()> {
    exec(conn, "ROLLBACK TO unit").await?;
    exec(conn, "RELEASE unit").await
}
