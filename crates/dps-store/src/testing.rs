//! Throw-away PostgreSQL for tests (feature `testing`): [`database_url`] gives each caller a fresh, empty
//! database. This crate's store suite uses it, and so can any other crate's tests (`dps-service` starts the
//! service on it).
//!
//! Where the databases live:
//! - `DPS_TEST_DATABASE_URL` set (`postgres://user:password@host/db`, a role allowed to `CREATE DATABASE`):
//!   on that server, one database `t_<pid>_<n>` per call; they are left there (drop them with the server).
//! - otherwise one cluster per test process: `initdb` into a temporary directory (as the `postgres` user when
//!   the tests run as root: PostgreSQL refuses root), started with `pg_ctl` on a unix socket in that
//!   directory only (no TCP port: nothing to collide with, nothing reachable from elsewhere), `fsync = off`
//!   (a throw-away cluster need not survive a power cut). The process's statics are never dropped, so a
//!   watchdog started with `setsid` polls the test process and, once it is gone, stops the cluster
//!   (`pg_ctl stop -m immediate`) and removes the directory.
//!
//! The server binaries are looked for in `$DPS_PG_BIN`, `/usr/lib/postgresql/<newest version>/bin`, then
//! `PATH`. Missing binaries are a failure (a panic naming what to install), never a skipped test.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use sqlx::{Connection, PgConnection};

/// The environment variable naming a server to use instead of a throw-away cluster.
pub const DATABASE_URL_ENV: &str = "DPS_TEST_DATABASE_URL";

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Where this process's test databases are made.
enum Server {
    /// Our cluster: its unix socket directory.
    Cluster { socket_dir: PathBuf },
    /// `DPS_TEST_DATABASE_URL`.
    External { url: String },
}

impl Server {
    fn url(&self, database: &str) -> String {
        match self {
            Self::Cluster { socket_dir } => format!("postgres://postgres@localhost/{database}?host={}", socket_dir.display()),
            Self::External { url } => with_database(url, database),
        }
    }
}

/// The URL of a new, empty database (no tables: the store's migrations make them). Panics, saying why, when
/// no server can be had.
pub async fn database_url() -> String {
    let server = match SERVER.get_or_init(|| match std::env::var(DATABASE_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Ok(Server::External { url }),
        _ => start_cluster().map(|socket_dir| Server::Cluster { socket_dir }),
    }) {
        Ok(s) => s,
        Err(e) => panic!("no PostgreSQL for the tests: {e}"),
    };
    let name = format!("t_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    // Databases are created from the cluster's `postgres` database, or from the one the given URL names.
    let admin = match server {
        Server::Cluster { .. } => server.url("postgres"),
        Server::External { url } => url.clone(),
    };
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test server {}: {e}", crate::redact_url(&admin)));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let _ = conn.close().await;
    server.url(&name)
}

/// `url` naming `database` instead of its own (the path of a `postgres://` URL).
fn with_database(url: &str, database: &str) -> String {
    let (head, query) = match url.find(['?', '#']) {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let path_start = head.get(authority_start..).and_then(|a| a.find('/')).map_or(head.len(), |i| authority_start + i);
    format!("{}/{database}{query}", head.get(..path_start).unwrap_or(head))
}

/// The directory holding `initdb` and `pg_ctl`.
fn bin_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("DPS_PG_BIN") {
        let dir = PathBuf::from(dir);
        if !dir.join("initdb").is_file() {
            return Err(format!("DPS_PG_BIN is {}, which has no initdb (PostgreSQL's server binaries)", dir.display()));
        }
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(dir) = std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| d.join("initdb").is_file())) {
        return Ok(dir);
    }
    Err("the PostgreSQL server binaries (initdb, pg_ctl) are not installed: looked in $DPS_PG_BIN, \
         /usr/lib/postgresql/<version>/bin and PATH. Install Debian's `postgresql` package (`make setup` does), \
         or set DPS_TEST_DATABASE_URL to a server where this role may CREATE DATABASE"
        .into())
}

/// PostgreSQL refuses to run as root: as root, the cluster belongs to `postgres` and its tools run as it.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// `program` with `args`, as the cluster's owner; its output in the error.
fn run(as_postgres: bool, program: &Path, args: &[&str]) -> Result<(), String> {
    let mut cmd = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).stdin(Stdio::null()).output().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {} failed ({}): {}{}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Makes and starts this process's cluster; answers its socket directory.
fn start_cluster() -> Result<PathBuf, String> {
    let bin = bin_dir()?;
    let as_postgres = running_as_root();
    let dir = tempfile::Builder::new().prefix("dps-pg-").tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?.keep();
    let text = |p: &Path| p.to_string_lossy().into_owned();
    if as_postgres {
        let out = Command::new("chown").arg("postgres:postgres").arg(&dir).output().map_err(|e| format!("cannot run chown: {e}"))?;
        if !out.status.success() {
            return Err(format!("cannot give {} to the postgres user: {}", dir.display(), String::from_utf8_lossy(&out.stderr)));
        }
    }
    let data = dir.join("data");
    // The watchdog first: whatever happens below, the directory (and a started server) goes with the process.
    watchdog(&bin, &dir, &data, as_postgres)?;
    run(as_postgres, &bin.join("initdb"), &["-D", &text(&data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])?;
    let options = format!("-c listen_addresses='' -c unix_socket_directories={} -c fsync=off -c max_connections=300", text(&dir));
    run(
        as_postgres,
        &bin.join("pg_ctl"),
        &["-D", &text(&data), "-l", &text(&dir.join("server.log")), "-w", "-t", "60", "-o", &options, "start"],
    )
    .map_err(|e| format!("{e}\n(server log: {})", std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()))?;
    Ok(dir)
}

/// A `setsid` shell that waits for this process to end, then stops the cluster and removes `dir`.
fn watchdog(bin: &Path, dir: &Path, data: &Path, as_postgres: bool) -> Result<(), String> {
    let pg_ctl = bin.join("pg_ctl");
    let stop = if as_postgres {
        format!("runuser -u postgres -- '{}' -D '{}' stop -m immediate", pg_ctl.display(), data.display())
    } else {
        format!("'{}' -D '{}' stop -m immediate", pg_ctl.display(), data.display())
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; if [ -f '{data}/postmaster.pid' ]; then {stop}; fi; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    let mut child = Command::new("setsid")
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the cluster's watchdog (setsid): {e}"))?;
    // Reaped should it end first (it outlives this process normally: it is waiting for its end).
    std::thread::spawn(move || child.wait());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(with_database("postgres://u:p@h:5/base?sslmode=disable", "t_1"), "postgres://u:p@h:5/t_1?sslmode=disable");
        assert_eq!(with_database("postgres://h", "t_1"), "postgres://h/t_1");
        assert_eq!(with_database("postgres://h/?host=/s", "t_1"), "postgres://h/t_1?host=/s");
    }
}
