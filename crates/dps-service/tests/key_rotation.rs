//! Master-key rotation under load (#15 item 4): devices keep registering while `POST /service/keys/rotate`
//! (what `dps keys rotate` calls) runs; afterwards no stored value opens with the old key, every value opens
//! with the new one alone, and every enrollment — individual symmetric key, group-derived key — still attests,
//! also after a restart with the new key file only. On SQLite and on PostgreSQL.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::time::Duration;

use common::TestService;
use dps_crypto::MasterKey;
use dps_service::config::Overrides;
use reqwest::Method;
use serde_json::{json, Value};

const INDIVIDUAL: usize = 120;

fn read_key(s: &TestService, name: &str) -> (MasterKey, String) {
    let text = std::fs::read_to_string(s.dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (MasterKey::from_base64(&text).expect("from base64"), text)
}

/// Individual enrollments (id, key) and a symmetric-key group's primary key.
async fn enroll_fleet(s: &TestService) -> (Vec<(String, String)>, String) {
    let mut devices = Vec::new();
    for i in 0..INDIVIDUAL {
        let id = format!("rot-dev-{i}");
        devices.push((id.clone(), s.enroll(&id, json!({})).await));
    }
    let g = json!({ "enrollmentGroupId": "rot-fleet", "attestation": { "type": "symmetricKey" } });
    let a = s.service(Method::PUT, "/enrollmentGroups/rot-fleet", Some(g)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let group_key = a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    (devices, group_key)
}

fn group_device(group_key: &str, i: u32) -> (String, String) {
    let id = format!("rot-group-dev-{i}");
    let key = dps_crypto::derive_device_key(group_key, &id).expect("derive device key");
    (id, key)
}

async fn assert_assigned(s: &TestService, id: &str, key: &str) {
    let a = s.provision(id, key).await;
    assert_eq!((a.status, &a.body["status"]), (200, &json!("assigned")), "{id}: {}", a.body);
}

/// Registers devices (group-derived and individual by turns) until `stop`; each result, and `done` counts them.
async fn load(s: &TestService, devices: &[(String, String)], group_key: &str, stop: &AtomicBool, done: &AtomicU32) -> Vec<(String, Value)> {
    let mut results = Vec::new();
    let mut i = 0u32;
    while !stop.load(SeqCst) {
        let (id, key) = match i % 2 {
            0 => group_device(group_key, i),
            _ => devices.get(i as usize % devices.len()).cloned().unwrap_or_default(),
        };
        let a = s.provision(&id, &key).await;
        results.push((id, json!({ "http": a.status, "status": a.body["status"] })));
        done.fetch_add(1, SeqCst);
        i += 1;
    }
    results
}

/// Waits (without a deadline: the test's own timeout bounds it) until `done` reaches `n`.
async fn until(done: &AtomicU32, n: u32) {
    while done.load(SeqCst) < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Rotates once the load has begun; stops the load after two more registrations with the new key.
async fn rotate_under(s: &TestService, stop: &AtomicBool, done: &AtomicU32) -> (common::Answer, u32) {
    until(done, 1).await;
    let before = done.load(SeqCst);
    let r = s.service(Method::POST, "/service/keys/rotate", None).await;
    let during = done.load(SeqCst) - before;
    until(done, done.load(SeqCst) + 2).await;
    stop.store(true, SeqCst);
    (r, during)
}

async fn rotation_under_load(mut s: TestService) {
    let (devices, group_key) = enroll_fleet(&s).await;
    assert_assigned(&s, "rot-dev-0", &devices[0].1).await;
    let (old, old_text) = read_key(&s, "master.key");

    let (stop, done) = (AtomicBool::new(false), AtomicU32::new(0));
    let (results, (rotated, during)) = tokio::join!(load(&s, &devices, &group_key, &stop, &done), rotate_under(&s, &stop, &done));
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    eprintln!("rotation: {} ({during} registrations finished while it ran, {} in all)", rotated.body, results.len());
    assert!(rotated.body["resealed"].as_u64().unwrap_or_default() > INDIVIDUAL as u64, "{}", rotated.body);
    assert_eq!(rotated.body["unreadable"], 0, "{}", rotated.body);
    for (id, r) in &results {
        assert_eq!(r, &json!({ "http": 200, "status": "assigned" }), "{id} during the rotation");
    }

    // The key file holds the new key; the pending file is gone.
    let (new, new_text) = read_key(&s, "master.key");
    assert_ne!(new_text, old_text);
    assert_eq!(rotated.body["keyId"], json!(new.id()));
    assert_eq!(rotated.body["previousKeyId"], json!(old.id()));
    assert!(!s.dir.path().join("master.key.next").exists());

    // No stored value opens with the old key; each opens with the new key alone.
    let store = s.running.as_ref().map(|r| r.store.clone()).unwrap_or_else(|| panic!("not running"));
    let sealed = store.sealed_values().await.expect("sealed values");
    assert!(sealed.len() > INDIVIDUAL + results.len() / 2, "{} sealed values", sealed.len());
    for (table, aad, v) in &sealed {
        assert!(old.open(v, aad).is_err(), "{table} {aad} still opens with the old key");
        assert!(new.open(v, aad).is_ok(), "{table} {aad} does not open with the new key");
    }

    // Every enrollment still attests, now and after a restart with the new key file only.
    for (id, key) in &devices {
        assert_assigned(&s, id, key).await;
    }
    let (id, key) = group_device(&group_key, 0);
    assert_assigned(&s, &id, &key).await;
    let (id, key) = group_device(&group_key, 1_000_001);
    assert_assigned(&s, &id, &key).await;
    s.restart().await;
    assert_assigned(&s, &devices[7].0, &devices[7].1).await;
    let (id, key) = group_device(&group_key, 1_000_002);
    assert_assigned(&s, &id, &key).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_keep_registering_while_the_master_key_rotates_on_sqlite() {
    rotation_under_load(TestService::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn devices_keep_registering_while_the_master_key_rotates_on_postgres() {
    let url = dps_store::testing::database_url().await;
    rotation_under_load(TestService::start_with(Overrides { database_url: Some(url), ..Default::default() }).await).await;
}

/// A rotation interrupted after its new key was written: the next start loads both keys (old values still
/// open), and the next rotation finishes with that same key.
#[tokio::test]
async fn an_interrupted_rotation_is_finished_with_the_same_new_key() {
    let mut s = TestService::start().await;
    let key = s.enroll("resume-dev", json!({})).await;
    s.stop().await;
    let (next, text) = MasterKey::generate();
    dps_service::material::write_private(&s.dir.path().join("master.key.next"), text.as_bytes()).expect("write private");

    s.restart().await;
    assert_assigned(&s, "resume-dev", &key).await;
    let r = s.service(Method::POST, "/service/keys/rotate", None).await;
    assert_eq!((r.status, &r.body["keyId"]), (200, &json!(next.id())), "{}", r.body);
    assert_eq!(read_key(&s, "master.key").0.id(), next.id());
    assert!(!s.dir.path().join("master.key.next").exists());
    let again = s.service(Method::POST, "/service/keys/rotate", None).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_ne!(again.body["keyId"], json!(next.id()), "a second rotation makes another key");
    s.restart().await;
    assert_assigned(&s, "resume-dev", &key).await;
}

/// With the key in `DPS_MASTER_KEY` no key file is made or read, and the service cannot replace the key: a
/// rotation is refused (409) and devices still attest.
#[tokio::test]
async fn a_key_from_the_environment_is_used_and_not_rotated() {
    let (_, text) = MasterKey::generate();
    let env = std::collections::HashMap::from([(dps_service::keys::ENV_KEY.to_owned(), text)]);
    let mut s = TestService::start_with_env(Overrides::default(), env).await;
    assert!(!s.dir.path().join("master.key").exists(), "no key file is made when the environment holds the key");
    let key = s.enroll("env-dev", json!({})).await;
    let r = s.service(Method::POST, "/service/keys/rotate", None).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("DPS_MASTER_KEY"), "{}", r.body);
    s.restart().await;
    assert_assigned(&s, "env-dev", &key).await;
}
