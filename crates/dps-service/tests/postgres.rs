//! The service on PostgreSQL (`database_url`, issue #15 item 1): enrollments, registrations and settings live in
//! the database, the data directory keeps the key material only. A throw-away cluster per test process
//! (`dps_store::testing`; `DPS_TEST_DATABASE_URL` names a server instead).

mod common;

use std::sync::Arc;

use common::TestService;
use dps_core::ports::RegistrationStore;
use dps_proto::RegistrationStatus;
use dps_service::config::Overrides;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn a_registration_is_found_after_a_restart_on_the_same_database() {
    let url = dps_store::testing::database_url().await;
    let mut s = TestService::start_with(Overrides { database_url: Some(url.clone()), ..Default::default() }).await;
    assert_eq!(s.running.as_ref().map(|r| r.store.backend_name()), Some("postgres"));

    let key = s.enroll("Pg-Device-1", json!({})).await;
    let done = s.provision("pg-device-1", &key).await;
    assert_eq!((done.status, &done.body["status"]), (200, &json!("assigned")), "{}", done.body);
    let scope = s.scope.clone();

    s.restart().await;
    assert_eq!(s.scope, scope, "the ID scope is a setting in the database");
    let a = s.service(Method::GET, "/registrations/PG-DEVICE-1", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!((&a.body["registrationId"], &a.body["status"]), (&json!("pg-device-1"), &json!("assigned")), "{}", a.body);
    assert_eq!(a.body["assignedHub"], "local-hub.dps.local", "{}", a.body);
    let e = s.service(Method::GET, "/enrollments/pg-device-1", None).await;
    assert_eq!((e.status, &e.body["attestation"]["symmetricKey"]["primaryKey"]), (200, &json!(key)), "{}", e.body);
    // The device registers again after the restart: its enrollment and its record are read from the database.
    let again = s.provision("pg-device-1", &key).await;
    assert_eq!((again.status, &again.body["status"]), (200, &json!("assigned")), "{}", again.body);
    s.stop().await;

    assert!(!s.dir.path().join("dps.sqlite").exists(), "no SQLite database is made when database_url names PostgreSQL");
    // The record is in the database itself (read with the data directory's master key).
    let master = dps_crypto::MasterKey::from_base64(&std::fs::read_to_string(s.dir.path().join("master.key")).expect("reads the file"))
        .expect("from base64");
    let store = dps_store::PgStore::open(&url, Arc::new(master)).await.expect("opens");
    let record = store.get_registration("pg-device-1").await.expect("get registration").unwrap_or_else(|| panic!("no record"));
    assert_eq!(record.state.status, Some(RegistrationStatus::Assigned));
    store.close().await;

    // Another data directory (another master key) on the same database is refused before it reads a secret.
    let other = tempfile::tempdir().expect("a temporary directory");
    let err = start_error(other.path(), &url).await;
    assert!(err.contains("does not open this database's secrets"), "{err}");
}

/// Starts a service on `dir` and `url` that is expected to fail; its error.
async fn start_error(dir: &std::path::Path, url: &str) -> String {
    let flags = Overrides {
        https_port: Some(0),
        mqtt_port: Some(0),
        amqp_port: Some(0),
        console_port: Some(0),
        database_url: Some(url.to_owned()),
        ..Default::default()
    };
    let config = dps_service::config::Config::load(dir.into(), None, &Default::default(), flags).expect("loads");
    let listeners = dps_service::bind(&config).expect("binds");
    let clock: Arc<dyn dps_core::Clock> = Arc::new(dps_core::SystemClock);
    match dps_service::start(&config, listeners, clock).await {
        Ok(_) => panic!("the service started"),
        Err(e) => format!("{e:#}"),
    }
}

/// A database that cannot be reached stops the start with its URL in the error — without its password.
#[tokio::test]
async fn an_unreachable_database_fails_the_start_without_showing_the_password() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let socket = dir.path().join("no-server");
    let url = format!("postgres://dps:hunter2@localhost/dps?host={}", socket.display());
    let err = start_error(dir.path(), &url).await;
    assert!(err.contains("cannot open the database postgres://dps:***@localhost/dps"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}
