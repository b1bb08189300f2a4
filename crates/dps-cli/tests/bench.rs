//! `dps bench` runs end to end with tiny numbers: the spawned service and ceiling, each loop mode, transport
//! and attestation, the JSON summary's shape, the ratio and the chart. No figure is asserted — benchmarks are
//! not tests; this only proves the suite works.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn dps(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(args)
        .current_dir(dir)
        .env_remove("DPS_DATA_DIR")
        .env_remove("DPS_CONNECTION_STRING")
        .output()
        .expect("dps bench runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `dps bench args… --json summary.json` and returns the summary and standard output.
fn bench(dir: &Path, args: &[&str]) -> (Value, String) {
    let json = dir.join("summary.json");
    let mut all = args.to_vec();
    all.extend(["--json", json.to_str().expect("utf-8 path")]);
    let mut full = vec!["bench"];
    full.extend(all);
    let o = dps(dir, &full);
    assert!(o.status.success(), "dps {}: {}", full.join(" "), text(&o));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).expect("the JSON summary is written")).expect("JSON");
    (v, String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Every registration succeeded on `phase`, and its figures are there.
fn complete(v: &Value, phase: &str, n: u64) {
    let p = &v[phase];
    assert_eq!(p["registrations"].as_u64(), Some(n), "{phase}: {p}");
    assert_eq!(p["failed"].as_u64(), Some(0), "{phase}: {p}");
    assert_eq!(p["errors"], serde_json::json!({}), "{phase}");
    for k in ["registrationsPerSecond", "p50Ms", "p95Ms", "p99Ms", "maxMs", "seconds"] {
        assert!(p[k].as_f64().is_some_and(|x| x > 0.0), "{phase}.{k}: {p}");
    }
    assert!(p["p50Ms"].as_f64() <= p["p99Ms"].as_f64(), "{p}");
    assert!(p["cdf"].as_array().is_some_and(|a| !a.is_empty()), "{phase}: a latency CDF");
    assert_eq!(p["perSecond"].as_array().map(|a| a.iter().filter_map(Value::as_u64).sum::<u64>()), Some(n), "{phase}");
    let server = &p["server"];
    assert!(server["pid"].as_u64().is_some(), "{phase}: the answering process is known: {p}");
    assert!(server["peakRssKiB"].as_u64().is_some_and(|k| k > 0), "{phase}: {server}");
    assert!(server["cpuSecondsPer1000"].as_f64().is_some(), "{phase}: {server}");
}

/// Both targets completed and the ratio was computed and printed.
fn with_ceiling(v: &Value, out: &str, n: u64) {
    complete(v, "service", n);
    complete(v, "ceiling", n);
    assert!(v["ratio"].as_f64().is_some_and(|r| r > 0.0), "{v}");
    assert!(out.contains("% of the bare ceiling"), "the ratio is printed: {out}");
}

#[test]
fn closed_loop_https_keep_alive_group_with_chart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let chart = dir.path().join("chart.svg");
    let (v, out) = bench(
        dir.path(),
        &["--devices", "20", "--concurrency", "4", "--transport", "https-keep-alive", "--chart", chart.to_str().expect("utf-8")],
    );
    with_ceiling(&v, &out, 20);
    assert_eq!((v["mode"].as_str(), v["concurrency"].as_u64()), (Some("closed"), Some(4)), "{v}");
    assert_eq!((v["transport"].as_str(), v["attestation"].as_str()), (Some("https-keep-alive"), Some("group")));
    assert!(v["machine"]["cpus"].as_u64().is_some(), "{v}");
    let svg = std::fs::read_to_string(&chart).expect("the chart is written");
    assert!(svg.contains("<svg") && svg.contains("Latency CDF") && svg.contains("Registrations per second"), "{svg}");
}

#[test]
fn open_loop_mqtt_individual_enrollments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (v, out) = bench(
        dir.path(),
        &[
            "--devices",
            "20",
            "--rate",
            "40",
            "--transport",
            "mqtt",
            "--attestation",
            "individual",
            "--enrollments",
            "50",
            "--extra-groups",
            "3",
        ],
    );
    with_ceiling(&v, &out, 20);
    assert_eq!((v["mode"].as_str(), v["rate"].as_f64()), (Some("open"), Some(40.0)), "{v}");
    let import = &v["import"];
    assert_eq!((import["enrollments"].as_u64(), import["groups"].as_u64()), (Some(50), Some(3)), "{v}");
    assert_eq!((import["batch"].as_u64(), import["parallel"].as_u64()), (Some(1000), Some(4)), "the import's path: {import}");
    assert!(import["perSecond"].as_f64().is_some_and(|r| r > 0.0), "{import}");
}

#[test]
fn closed_loop_x509_new_connection_per_device() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (v, out) =
        bench(dir.path(), &["--devices", "10", "--concurrency", "3", "--transport", "https-new-connection", "--attestation", "x509"]);
    with_ceiling(&v, &out, 10);
    assert_eq!(v["attestation"], "x509");
}

#[test]
fn amqp_has_no_ceiling_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (v, out) = bench(dir.path(), &["--devices", "10", "--concurrency", "3", "--transport", "amqp", "--output", "json"]);
    complete(&v, "service", 10);
    assert!(v["ceiling"].is_null() && v["ratio"].is_null(), "{v}");
    assert!(v["ceilingNote"].as_str().is_some_and(|n| n.contains("AMQP")), "{v}");
    let printed: Value = serde_json::from_str(&out).expect("--output json prints the summary");
    assert_eq!(printed["service"]["registrations"], 10);
}

#[test]
fn idle_mqtt_connections_report_memory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (v, _) = bench(dir.path(), &["--idle-connections", "10"]);
    assert_eq!(v["idleMqttConnections"].as_u64(), Some(10), "{v}");
    assert!(v["serverRssAfterKiB"].as_u64().is_some_and(|k| k > 0), "{v}");
    assert!(v["stoppedBy"].is_null(), "{v}");
}
