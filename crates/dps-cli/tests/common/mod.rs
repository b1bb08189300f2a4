//! A `dps serve` of a test's own: port-0 listeners, a temporary data directory, killed (by its handle) when
//! dropped; and `dps …` run against it.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A `dps serve` on a temporary data directory, killed (by its handle) when dropped.
pub struct Serve {
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Serve {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_dps"))
            .args(["serve", "--data-dir", data.to_str().expect("utf-8 path"), "--log", "warn"])
            .args(["--https-port", "0", "--mqtt-port", "0", "--amqp-port", "0", "--console-port", "0"])
            .env_remove("DPS_DATA_DIR")
            .env_remove("DPS_CONFIG")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dps serve starts");
        let mut s = Self { child, dir };
        // Started once it wrote its endpoint; a service that exits instead fails the test with its status.
        for _ in 0..1200 {
            if s.data().join("endpoint.json").exists() {
                return s;
            }
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("dps serve exited before it wrote endpoint.json: {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dps serve wrote no endpoint.json")
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `dps args… --data-dir <data>` with `stdin` as its standard input.
    pub fn dps(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let data = self.data();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dps"));
        cmd.args(args)
            .args(["--data-dir", data.to_str().expect("utf-8 path")])
            .env_remove("DPS_DATA_DIR")
            .env_remove("DPS_CONNECTION_STRING")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("dps runs");
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input).expect("stdin");
        }
        child.wait_with_output().expect("dps ends")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
