//! What `dps serve` prints (#14 item 5): the owner connection string and the admin password on the first start
//! only; a later start on the same data directory names where they are instead. `dps admin set-password`
//! needs the current password.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Starts `dps serve` on `data`, returns what it printed up to "Stop with Ctrl+C." and kills it (by its handle).
fn serve_banner(data: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["serve", "--data-dir", data.to_str().expect("utf-8 path"), "--log", "warn"])
        .args(["--https-port", "0", "--mqtt-port", "0", "--amqp-port", "0", "--console-port", "0"])
        .env_remove("DPS_DATA_DIR")
        .env_remove("DPS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dps serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut banner = String::new();
    // Ends at the banner's last line, or when the process exits (its stdout closes).
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        banner.push_str(&line);
        banner.push('\n');
        if line.starts_with("Stop with Ctrl+C.") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(banner.contains("Stop with Ctrl+C."), "dps serve did not start:\n{banner}");
    banner
}

fn dps(data: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(args)
        .args(["--data-dir", data.to_str().expect("utf-8 path")])
        .env_remove("DPS_DATA_DIR")
        .env_remove("DPS_CONNECTION_STRING")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dps runs");
    if let Some(mut pipe) = child.stdin.take() {
        pipe.write_all(stdin.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("dps ends")
}

#[test]
fn the_owner_connection_string_is_printed_on_the_first_start_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let first = serve_banner(&data);
    let password = std::fs::read_to_string(data.join("initial-admin-password")).expect("initial password").trim().to_owned();
    assert!(first.contains("SharedAccessKeyName=provisioningserviceowner;SharedAccessKey="), "{first}");
    assert!(first.contains(&password), "{first}");

    let endpoint = std::fs::read_to_string(data.join("endpoint.json")).expect("endpoint.json");
    let info: serde_json::Value = serde_json::from_str(&endpoint).expect("json");
    let key = info["serviceConnectionString"].as_str().unwrap_or_default().rsplit("SharedAccessKey=").next().unwrap_or_default().to_owned();
    assert!(key.len() > 20, "{endpoint}");

    let second = serve_banner(&data);
    assert!(!second.contains(&key), "the owner key is printed again:\n{second}");
    assert!(!second.contains("SharedAccessKey="), "{second}");
    assert!(!second.contains(&password), "the admin password is printed again:\n{second}");
    assert!(second.contains("endpoint.json"), "the second start says where the connection string is:\n{second}");
}

#[test]
fn set_password_needs_the_current_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["serve", "--data-dir", data.to_str().expect("utf-8 path"), "--log", "warn"])
        .args(["--https-port", "0", "--mqtt-port", "0", "--amqp-port", "0", "--console-port", "0"])
        .env_remove("DPS_DATA_DIR")
        .env_remove("DPS_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dps serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.starts_with("Stop with Ctrl+C.")), "dps serve did not start");
    let password = std::fs::read_to_string(data.join("initial-admin-password")).expect("initial password").trim().to_owned();

    let wrong = dps(&data, &["admin", "set-password"], "not the password\na brand new password\n");
    let only_new = dps(&data, &["admin", "set-password"], "a brand new password\n");
    let right = dps(&data, &["admin", "set-password"], &format!("{password}\na brand new password\n"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(!wrong.status.success(), "a wrong current password changed it");
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("400004"), "{}", String::from_utf8_lossy(&wrong.stderr));
    assert!(!only_new.status.success(), "one line is not enough");
    assert!(right.status.success(), "{}", String::from_utf8_lossy(&right.stderr));
    assert!(!data.join("initial-admin-password").exists(), "the initial password file is removed after the change");
}
