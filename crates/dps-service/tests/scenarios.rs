//! Every built-in scenario runs to its expected outcome from a clean data directory, through a real service:
//! its devices register over HTTPS, MQTT, AMQP and WebSockets through the listeners — with symmetric keys,
//! certificates and software TPMs —, the set-up goes through the service API; and its reset leaves nothing
//! behind (records, identities, groups, enrollments, certificates, hubs) — #16 item 5.

use std::sync::Arc;

use dps_device::Endpoint;
use dps_service::config::{Config, Overrides};
use dps_sim::{DeviceTarget, Event, Runner, Scenario};

struct Service {
    _dir: tempfile::TempDir,
    running: Option<dps_service::Running>,
}

async fn start() -> Service {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let flags = Overrides {
        https_port: Some(0),
        mqtt_port: Some(0),
        amqp_port: Some(0),
        console_port: Some(0),
        retry_after_secs: Some(2),
        ..Default::default()
    };
    let config = Config::load(dir.path().to_path_buf(), None, &Default::default(), flags).expect("loads");
    let listeners = dps_service::bind(&config).expect("binds");
    let running = dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await.expect("start");
    Service { _dir: dir, running: Some(running) }
}

fn target(running: &dps_service::Running) -> DeviceTarget {
    let info = &running.info;
    let ca_pem = std::fs::read(&info.ca_certificate).expect("reads");
    DeviceTarget {
        endpoint: Endpoint { host: format!("127.0.0.1:{}", info.ports.https.unwrap_or_default()), id_scope: info.id_scope.clone(), ca_pem },
        mqtt_port: info.ports.mqtt.unwrap_or_default(),
        amqp_port: info.ports.amqp.unwrap_or_default(),
    }
}

fn quiet(_: Event<'_>) {}

async fn run_and_reset(name: &str) {
    let mut service = start().await;
    let running = service.running.as_ref().unwrap_or_else(|| panic!("not running"));
    let api = running.local_api();
    let runner = Runner { api: &api, target: target(running), on_event: &quiet };
    let scenario = Scenario::built_in(name).unwrap_or_else(|| panic!("no scenario {name}")).expect("the built-in scenario loads");
    let report = runner.run(&scenario).await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    let problems: Vec<&String> = report.steps.iter().flat_map(|s| &s.problems).collect();
    assert!(problems.is_empty(), "{name}: {problems:#?}");
    let devices: usize = report.steps.iter().map(|s| s.outcomes.len()).sum();
    assert!(devices > 0, "{name}: no device registered");
    assert!(!runner.leftovers(&scenario).await.expect("leftovers").is_empty(), "{name}: the run made nothing?");
    runner.reset(&scenario).await.unwrap_or_else(|e| panic!("{name}: reset: {e:#}"));
    let left = runner.leftovers(&scenario).await.expect("leftovers");
    assert!(left.is_empty(), "{name}: the reset left {left:?}");
    // A second run after the reset starts from nothing again and passes too.
    let again = runner.run(&scenario).await.unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(again.passed(), "{name} (second run): {:#?}", again.steps.iter().map(|s| &s.problems).collect::<Vec<_>>());
    if let Some(r) = service.running.take() {
        r.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evenly_weighted() {
    run_and_reset("evenly-weighted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_allocation() {
    run_and_reset("static").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reprovisioning_under_each_policy() {
    run_and_reset("reprovisioning").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rolling() {
    run_and_reset("key-rolling").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_group() {
    run_and_reset("disabled").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lowest_latency_across_regions() {
    run_and_reset("lowest-latency").await;
}

/// CAs verified by proof of possession, an intermediate sent by the devices; the reset deletes the certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x509_group_with_an_intermediate_ca() {
    run_and_reset("x509-intermediate").await;
}

/// Software TPMs, their endorsement keys enrolled at register time, the challenge over HTTPS and AMQP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpm_challenge() {
    run_and_reset("tpm-challenge").await;
}

/// The built-in demo webhook chooses by the registration id, then refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_allocation_by_the_demo_webhook() {
    run_and_reset("custom-webhook").await;
}

/// Every built-in scenario has a test of its own here.
#[test]
fn every_built_in_scenario_is_run_by_a_test() {
    let source = include_str!("scenarios.rs");
    for (name, _) in dps_sim::scenario::BUILT_IN {
        assert!(source.contains(&format!("run_and_reset(\"{name}\")")), "no test runs the scenario {name}");
    }
}

/// A scenario whose expectation does not hold is reported, not passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expectation_is_reported() {
    let mut service = start().await;
    let running = service.running.as_ref().unwrap_or_else(|| panic!("not running"));
    let api = running.local_api();
    let runner = Runner { api: &api, target: target(running), on_event: &quiet };
    let text = dps_sim::scenario::BUILT_IN.iter().find(|(n, _)| *n == "static").map(|(_, t)| *t).unwrap_or_default();
    let wrong = Scenario::parse(&text.replace("hub = \"static-b.demo.local\"", "hub = \"static-a.demo.local\"")).expect("parses");
    let report = runner.run(&wrong).await.expect("run");
    assert!(!report.passed());
    assert!(report.steps.iter().flat_map(|s| &s.problems).all(|p| p.contains("expected hub static-a.demo.local, got static-b.demo.local")));
    runner.reset(&wrong).await.expect("reset");
    if let Some(r) = service.running.take() {
        r.shutdown().await;
    }
}
