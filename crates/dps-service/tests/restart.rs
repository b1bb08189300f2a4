//! Operations are persisted (§8): a poll is answered after a restart, and an assignment interrupted by
//! a stop is resumed at the next start.

mod common;

use std::sync::Arc;

use common::TestService;
use dps_core::model::{EnrollmentRef, Operation};
use dps_core::ports::OperationStore;
use dps_proto::AttestationType;
use serde_json::json;

#[tokio::test]
async fn a_poll_is_answered_after_a_restart() {
    let mut s = TestService::start().await;
    let key = s.enroll("restart-1", json!({})).await;
    let sas = s.device_sas("restart-1", &key, s.now() + 3600);
    let a = s.register("restart-1", &sas, "{}").await;
    assert_eq!(a.status, 202);
    let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
    s.restart().await;
    let done = s.poll_done("restart-1", &op, &sas).await;
    assert_eq!((done.status, &done.body["status"]), (200, &json!("assigned")), "{}", done.body);
}

#[tokio::test]
async fn an_interrupted_assignment_resumes_at_start() {
    let mut s = TestService::start().await;
    let key = s.enroll("restart-2", json!({})).await;
    s.stop().await;
    // What a crash between "accepted" and "assigned" leaves behind.
    let master = dps_crypto::MasterKey::from_base64(&std::fs::read_to_string(s.dir.path().join("master.key")).expect("reads the file"))
        .expect("from base64");
    let store = dps_store::SqliteStore::open(&s.dir.path().join("dps.sqlite"), Arc::new(master)).await.expect("opens");
    let now = dps_core::Clock::now(&dps_core::SystemClock);
    let op = Operation::assigning(
        "4.0123456789abcdef.pending",
        "restart-2",
        EnrollmentRef::Individual("restart-2".into()),
        AttestationType::SymmetricKey,
        now,
    );
    store.put_operation(&op).await.expect("put operation");
    store.close().await;
    s.restart().await;
    let sas = s.device_sas("restart-2", &key, s.now() + 3600);
    let done = s.poll_done("restart-2", &op.operation_id, &sas).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    assert_eq!(done.body["registrationState"]["assignedHub"], "local-hub.dps.local");
}

/// A busy *default* MQTT port falls back to a free one (endpoint.json says which); a configured one is an error.
#[test]
fn a_busy_default_mqtt_port_falls_back_but_a_configured_one_fails() {
    let Ok(holder) = std::net::TcpListener::bind("127.0.0.1:8883") else {
        // Something already holds 8883 (another suite's service): that is the situation under test anyway.
        return a_busy_default_port_check(None);
    };
    a_busy_default_port_check(Some(holder))
}

fn a_busy_default_port_check(_holder: Option<std::net::TcpListener>) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let flags = dps_service::config::Overrides { https_port: Some(0), ..Default::default() };
    let config = dps_service::config::Config::load(dir.path().into(), None, &Default::default(), flags).expect("loads");
    assert_eq!(config.mqtt_port, 8883);
    let listeners = dps_service::bind(&config).unwrap_or_else(|e| panic!("the default port should fall back: {e}"));
    assert_ne!(listeners.mqtt.local_addr().map(|a| a.port()).unwrap_or(8883), 8883);
    let flags = dps_service::config::Overrides { https_port: Some(0), mqtt_port: Some(8883), ..Default::default() };
    let config = dps_service::config::Config::load(dir.path().into(), None, &Default::default(), flags).expect("loads");
    let err = dps_service::bind(&config).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(err.contains("8883") && err.contains("--mqtt-port"), "{err}");
}

/// #14 item 5: a data directory whose master key went missing keeps its database: the start is refused with
/// the missing file's name and what to do, and no new key is written.
#[tokio::test]
async fn a_missing_master_key_with_a_database_refuses_to_start() {
    let mut s = TestService::start().await;
    s.enroll("sealed-1", json!({})).await;
    s.stop().await;
    let key = s.dir.path().join("master.key");
    std::fs::remove_file(&key).expect("removes the file");
    let flags = dps_service::config::Overrides {
        https_port: Some(0),
        mqtt_port: Some(0),
        amqp_port: Some(0),
        console_port: Some(0),
        ..Default::default()
    };
    let config = dps_service::Config::load(s.dir.path().into(), None, &Default::default(), flags).expect("loads");
    let listeners = dps_service::bind(&config).expect("binds");
    let clock: Arc<dyn dps_core::Clock> = s.clock.clone();
    let Err(e) = dps_service::start(&config, listeners, clock).await else { panic!("started without its master key") };
    let message = format!("{e:#}");
    assert!(message.contains(&key.display().to_string()), "{message}");
    assert!(message.contains("missing") && message.contains("Restore"), "{message}");
    assert!(!key.exists(), "no new master key is made");
}

/// Private files are owner-only and no temporary file of their atomic writes stays behind.
#[cfg(unix)]
#[tokio::test]
async fn private_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let s = TestService::start().await;
    for name in ["master.key", "ca.key", "endpoint.json", "initial-admin-password"] {
        let mode = std::fs::metadata(s.dir.path().join(name)).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
        assert_eq!(mode, 0o600, "{name}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.ends_with(".tmp")).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
