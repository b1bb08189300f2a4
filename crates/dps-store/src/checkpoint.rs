//! The WAL checkpointer of [`crate::SqliteStore`]: it copies the write-ahead log into the database file in the
//! background (never inside a commit) and keeps the log short.
//!
//! A `PASSIVE` checkpoint alone never resets the log under a steady load: SQLite rewinds the WAL only when a
//! writer finds it fully copied *and* no reader still reading from it, and with requests arriving all the time
//! some reader always is. The log then grows for ever — 4.7 GB after two minutes at 550 registrations/s, a
//! growing wal-index mapped into the process (RSS creeping up by tens of bytes per registration) and reads that
//! slow down as the index grows (RELIABILITY.md, "Soak and overload"). So each round runs `PASSIVE` first (the
//! bulk of the copying, blocking nobody) and, when that copied the whole log and the log holds [`RESTART_FRAMES`]
//! or more, `RESTART`: it copies the few frames written since, waits for the readers of the log to finish and makes the next
//! writer start the log from its beginning. `RESTART` holds writers off while it runs, so its connection gives
//! up after [`RESTART_WAIT`] (a long reader — an export — makes it retry next round rather than stall
//! registrations), and `journal_size_limit` truncates the file back to [`WAL_SIZE_LIMIT`] after a burst.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, SqliteConnection};

/// How often a round runs: short rounds keep each round's `fsync` of the database file small (a 2 s round wrote
/// seconds of scattered pages at once, and the writer's own WAL `fsync` waited behind it: assignment stalls).
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Frames left in the log after the passive copy from which a round also restarts the log (16 MiB of 4 KiB
/// pages: a fraction of a second of writes at full load).
pub(crate) const RESTART_FRAMES: i64 = 4_096;
/// How long a restart waits for the log's readers before it gives up until the next round.
const RESTART_WAIT: Duration = Duration::from_millis(200);
/// The size the WAL file is truncated back to when the log restarts (bytes).
pub(crate) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// What one round did: frames in the log after the passive copy, and whether the log was restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Round {
    pub(crate) frames: i64,
    pub(crate) restarted: bool,
}

/// The options every connection of the store opens with: no automatic checkpoints inside commits (this module
/// runs them), and the WAL file truncated back to [`WAL_SIZE_LIMIT`] when a writer restarts the log (a
/// per-connection setting, applied by the connection that writes).
pub(crate) fn options(opts: SqliteConnectOptions) -> SqliteConnectOptions {
    opts.pragma("wal_autocheckpoint", "0").pragma("journal_size_limit", WAL_SIZE_LIMIT.to_string())
}

/// The checkpointer's own connection (its short busy timeout must not be the pool's).
pub(crate) async fn connect(opts: &SqliteConnectOptions) -> Result<SqliteConnection, sqlx::Error> {
    opts.clone().busy_timeout(RESTART_WAIT).connect().await
}

/// Runs rounds every [`CHECKPOINT_EVERY`] until `stop` resolves (the store closes).
pub(crate) async fn run(mut conn: SqliteConnection, stop: impl std::future::Future<Output = ()>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tick.tick() => if let Err(e) = round(&mut conn).await {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying next round");
            },
        }
    }
    let _ = conn.close().await;
}

/// One round: a passive copy, then a restart of the log when it is still long.
pub(crate) async fn round(conn: &mut SqliteConnection) -> Result<Round, sqlx::Error> {
    let (_, frames, copied) = checkpoint(conn, "PASSIVE").await?;
    // A restart copies what is left while it holds writers off: only after a passive copy of the whole log.
    if frames < RESTART_FRAMES || copied < frames {
        return Ok(Round { frames, restarted: false });
    }
    let (busy, _, _) = checkpoint(conn, "RESTART").await?;
    Ok(Round { frames, restarted: busy == 0 })
}

/// `PRAGMA wal_checkpoint(mode)`: (busy, frames in the log, frames copied).
async fn checkpoint(conn: &mut SqliteConnection, mode: &'static str) -> Result<(i64, i64, i64), sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("PRAGMA wal_checkpoint({mode})"))).fetch_one(conn).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;

    async fn open(path: &std::path::Path) -> (SqliteConnectOptions, SqliteConnection) {
        let opts = options(
            SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .expect("a file URL")
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Off),
        );
        let mut writer = opts.connect().await.expect("open the database");
        sqlx::raw_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)").execute(&mut writer).await.expect("create");
        (opts, writer)
    }

    /// Enough single-row transactions of 3 KiB values to leave more than [`RESTART_FRAMES`] in the log.
    async fn fill(writer: &mut SqliteConnection) {
        for _ in 0..RESTART_FRAMES * 2 {
            sqlx::query("INSERT INTO t (v) VALUES (zeroblob(3072))").execute(&mut *writer).await.expect("insert");
        }
    }

    fn wal_len(path: &std::path::Path) -> u64 {
        std::fs::metadata(path.with_extension("sqlite-wal")).map(|m| m.len()).expect("the WAL file exists")
    }

    #[tokio::test]
    async fn a_log_that_a_reader_keeps_busy_is_restarted_once_the_reader_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let (opts, mut writer) = open(&path).await;
        let mut checkpointer = connect(&opts).await.expect("checkpointer");
        let mut reader = opts.connect().await.expect("reader");
        fill(&mut writer).await;
        // A reader inside a transaction that has read from the log: the passive copy cannot free the log and
        // the restart gives up after its short wait instead of stalling the writer.
        sqlx::raw_sql("BEGIN; SELECT count(*) FROM t;").execute(&mut reader).await.expect("read");
        fill(&mut writer).await;
        let busy = round(&mut checkpointer).await.expect("round");
        assert!(busy.frames >= RESTART_FRAMES, "{busy:?}");
        assert!(!busy.restarted, "{busy:?}");
        sqlx::raw_sql("COMMIT").execute(&mut reader).await.expect("end the read");

        let done = round(&mut checkpointer).await.expect("round");
        assert!(done.restarted, "{done:?}");
        let grown = wal_len(&path);
        assert!(grown > WAL_SIZE_LIMIT as u64, "the test must grow the log past the size limit: {grown}");
        // The next write starts the log from its beginning and truncates the file to the limit.
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut writer).await.expect("insert");
        assert!(wal_len(&path) <= WAL_SIZE_LIMIT as u64, "{} bytes", wal_len(&path));
        let next = round(&mut checkpointer).await.expect("round");
        assert!(next.frames < 10 && !next.restarted, "{next:?}");
    }

    #[tokio::test]
    async fn a_short_log_is_only_copied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (opts, mut writer) = open(&dir.path().join("db.sqlite")).await;
        let mut checkpointer = connect(&opts).await.expect("checkpointer");
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&mut writer).await.expect("insert");
        let r = round(&mut checkpointer).await.expect("round");
        assert!(r.frames > 0 && r.frames < RESTART_FRAMES && !r.restarted, "{r:?}");
    }
}
