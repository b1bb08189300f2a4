//! Issue #14: `generic_device_errors` gives every refused device the same answer — an unknown registration id,
//! a wrong key, an id owned by another enrollment — over HTTPS, MQTT and AMQP, so the device API does not tell
//! a prober which ids are enrolled; the reason stays in the log and the device's trace. Without the switch the
//! answers say what went wrong.

mod common;

use common::TestService;
use dps_device::{Endpoint, Polling};
use dps_service::config::Overrides;
use reqwest::Method;
use serde_json::json;

/// A key no enrollment has.
const STRANGER: &str = "c3RyYW5nZXIta2V5LW9mLW5vYm9keS0wMTIzNDU2Nzg5";

/// The refusals to compare, as (registration id, key): unknown id, wrong key, id of another enrollment.
async fn refusals(s: &TestService) -> Vec<(String, String)> {
    s.enroll("known-dev", json!({})).await;
    let group = |id: &str| json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    let g = s.service(Method::PUT, "/enrollmentGroups/owner-g", Some(group("owner-g"))).await;
    let h = s.service(Method::PUT, "/enrollmentGroups/other-h", Some(group("other-h"))).await;
    let key = |a: &common::Answer| a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    let derived = |k: &str, id: &str| dps_crypto::derive_device_key(k, id).expect("derives the device key");
    assert_eq!(s.provision("owned-dev", &derived(&key(&g), "owned-dev")).await.body["status"], "assigned");
    vec![
        ("nobody-dev".to_owned(), STRANGER.to_owned()),
        ("known-dev".to_owned(), STRANGER.to_owned()),
        ("owned-dev".to_owned(), derived(&key(&h), "owned-dev")),
    ]
}

/// (errorCode, message) of a device call's refusal.
fn refusal_of(e: &anyhow::Error) -> (i64, String) {
    let r = e.chain().find_map(|c| c.downcast_ref::<dps_device::Refused>()).unwrap_or_else(|| panic!("not a refusal: {e:#}"));
    (r.code, r.message.clone())
}

async fn over_https(s: &TestService, id: &str, key: &str) -> (i64, String) {
    let sas = s.device_sas(id, key, s.now() + 3600);
    let a = s.register(id, &sas, &format!("{{\"registrationId\":\"{id}\"}}")).await;
    assert_eq!(a.status as i64, a.body["errorCode"].as_i64().unwrap_or_default() / 1000, "{}", a.body);
    (a.body["errorCode"].as_i64().unwrap_or_default(), a.body["message"].as_str().unwrap_or_default().to_owned())
}

fn endpoint(s: &TestService) -> Endpoint {
    Endpoint { host: "127.0.0.1".into(), id_scope: s.scope.clone(), ca_pem: s.ca_pem.clone() }
}

async fn over_mqtt(s: &TestService, id: &str, key: &str) -> (i64, String) {
    let mut session = dps_device::mqtt::MqttSession::connect(&endpoint(s), s.mqtt_port, id, key).await.expect("MQTT session");
    let e = session.provision(id, Polling::Every(std::time::Duration::ZERO)).await.expect_err("refused over MQTT");
    refusal_of(&e)
}

async fn over_amqp(s: &TestService, id: &str, key: &str) -> (i64, String) {
    let mut session = dps_device::amqp::AmqpSession::connect(&endpoint(s), s.amqp_port, id, key).await.expect("AMQP session");
    let e = session.provision(id, Polling::Every(std::time::Duration::ZERO)).await.expect_err("refused over AMQP");
    refusal_of(&e)
}

/// Every refusal over every transport, as (transport, registration id, errorCode, message).
async fn answers(s: &TestService) -> Vec<(&'static str, String, i64, String)> {
    let mut out = Vec::new();
    for (id, key) in refusals(s).await {
        let (c, m) = over_https(s, &id, &key).await;
        out.push(("https", id.clone(), c, m));
        let (c, m) = over_mqtt(s, &id, &key).await;
        out.push(("mqtt", id.clone(), c, m));
        let (c, m) = over_amqp(s, &id, &key).await;
        out.push(("amqp", id.clone(), c, m));
    }
    out
}

/// The live log, as `dps serve` sets it up (the test process has no other subscriber).
fn capture_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dps_service::config::Config::load(dir.path().to_path_buf(), None, &std::collections::HashMap::new(), Overrides::default());
    dps_service::diagnostics::init_logging(&config.expect("config"));
}

#[tokio::test]
async fn with_the_switch_every_refusal_reads_the_same_on_every_transport() {
    capture_logs();
    let s = TestService::start_with(Overrides { generic_device_errors: Some(true), ..Default::default() }).await;
    let all = answers(&s).await;
    for (transport, id, code, message) in &all {
        assert_eq!((*code, message.as_str()), (401002, dps_core::registration::GENERIC_MESSAGE), "{transport} {id}: {all:#?}");
    }
    // The reason is kept: in the trace of a device that has a record, and in the log.
    let t = s.service(Method::GET, "/registrations/owned-dev/trace", None).await;
    assert_eq!(t.body["trace"]["refused"]["error"]["code"], 409201, "{}", t.body);
    assert!(t.body["trace"]["refused"]["error"]["message"].as_str().is_some_and(|m| m.contains("another enrollment")), "{}", t.body);
    let logs = s.service(Method::GET, "/diagnostics/logs?limit=2000&registrationId=nobody-dev", None).await.body.to_string();
    assert!(logs.contains("generic answer") && logs.contains("401002"), "the log keeps each refusal: {logs}");
}

#[tokio::test]
async fn without_the_switch_the_refusals_say_why() {
    let s = TestService::start().await;
    let all = answers(&s).await;
    for transport in ["https", "mqtt", "amqp"] {
        let of = |id: &str| all.iter().find(|a| a.0 == transport && a.1 == id).map(|a| (a.2, a.3.clone())).unwrap_or_default();
        let (unknown, wrong_key, owned) = (of("nobody-dev"), of("known-dev"), of("owned-dev"));
        assert_ne!(unknown.1, wrong_key.1, "{transport}: {all:#?}");
        assert_eq!(owned.0, 409201, "{transport}: {all:#?}");
        assert!(![&unknown.1, &wrong_key.1, &owned.1].contains(&&dps_core::registration::GENERIC_MESSAGE.to_owned()), "{all:#?}");
    }
}
