//! The processes `dps bench` measures: a `dps serve` or the ceiling it spawns (this binary, port 0 listeners, a
//! temporary data directory, found through its `endpoint.json`) and what `/proc/<pid>` says about them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dps_proto::EndpointInfo;

/// A process this run started; stopped (by its PID, SIGKILL) when dropped, before its directory goes.
pub struct Spawned {
    child: Child,
    pub info: EndpointInfo,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `current_exe args… --data-dir <temp>` and waits (60 s at most) for its `endpoint.json`.
    pub async fn start(what: &str, args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(&format!("dps-bench-{what}-")).tempdir()?;
        let data_dir = dir.path().to_path_buf();
        let log = std::fs::File::create(data_dir.join("process.log"))?;
        let child = Command::new(std::env::current_exe().context("this program's path")?)
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir)
            .env_remove("DPS_DATA_DIR")
            .env_remove("DPS_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start the {what}"))?;
        let mut me = Self { child, info: placeholder(), data_dir, _dir: dir };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                let log = std::fs::read_to_string(me.data_dir.join("process.log")).unwrap_or_default();
                bail!("the {what} exited ({status}) before it listened:\n{log}");
            }
            if let Ok(info) = crate::client::read_endpoint(&me.data_dir) {
                me.info = info;
                return Ok(me);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("the {what} did not write {} within 60 s", me.data_dir.join("endpoint.json").display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn placeholder() -> EndpointInfo {
    EndpointInfo {
        id_scope: String::new(),
        host: String::new(),
        ports: Default::default(),
        ca_certificate: String::new(),
        service_connection_string: String::new(),
    }
}

/// A value in kB of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// User + system CPU seconds of `pid` so far (`/proc/<pid>/stat` utime + stime).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks())
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The machine, for the summary: CPU model and count, memory.
pub fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, m)| m.trim().to_owned());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<u64>().ok());
    serde_json::json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpuModel": model,
        "memoryGiB": mem_kib.map(|k| (k as f64 / 1048576.0 * 10.0).round() / 10.0),
        "loadAverage": std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")),
    })
}
