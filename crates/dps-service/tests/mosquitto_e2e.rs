//! The whole chain with a REAL Mosquitto broker (≥ 2, dynamic-security plugin): a device registers with the
//! service over HTTPS (symmetric key), the service assigns it to a linked hub whose connector is `mosquitto`,
//! and the device then connects to that broker with the credentials it was given (username = device id,
//! password = its primary key). What the broker lets it do is the proof (§7.4).
//!
//! Needs the `mosquitto` Debian package (`scripts/setup.sh` installs it); without it the tests fail with
//! a message saying so.

mod common;

use common::TestService;
use dps_core::ports::DeviceRegistryStore;
use dps_test_mosquitto::{connected, refused, Broker, Device, QoS, SubscribeReasonCode, ADMIN_PASSWORD};
use reqwest::Method;
use serde_json::json;

const HUB: &str = "broker.lab:8883";
/// The service's built-in hub (bootstrapped at start).
const BUILTIN_HUB: &str = "local-hub.dps.local";

// ---- The service side ----

async fn link_broker(s: &TestService, broker: &Broker) {
    let a = s
        .service(
            Method::PUT,
            &format!("/linkedHubs/{HUB}"),
            Some(json!({ "hostName": HUB, "connector": "mosquitto", "connectionString": broker.connection_string() })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("connectionString").is_none_or(|c| c.is_null()), "credentials are write-only: {}", a.body);
}

/// Registers over HTTPS, expects `assigned` to `hub`; returns the device id the service gave.
async fn assigned(s: &TestService, id: &str, key: &str, hub: &str) -> String {
    let done = s.provision(id, key).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let r = &done.body["registrationState"];
    assert_eq!(r["assignedHub"], hub, "{}", done.body);
    let device_id = r["deviceId"].as_str().unwrap_or_default().to_owned();
    assert!(!device_id.is_empty(), "{}", done.body);
    device_id
}

async fn set_hubs(s: &TestService, id: &str, hubs: &[&str]) {
    let mut e = s.service(Method::GET, &format!("/enrollments/{id}"), None).await.body;
    e["iotHubs"] = json!(hubs);
    let a = s.service(Method::PUT, &format!("/enrollments/{id}"), Some(e)).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_registered_device_uses_its_broker_credentials_and_loses_them_when_moved() {
    let broker = Broker::start();
    let s = TestService::start().await;
    link_broker(&s, &broker).await;
    let key = s.enroll("sensor-7", json!({ "iotHubs": [HUB] })).await;
    let dev = assigned(&s, "sensor-7", &key, HUB).await;
    assert_eq!(dev, "sensor-7");

    // Two sessions of the device, with the credentials it was given: one subscribes, the other publishes.
    let mut sub = connected(Device::connect(broker.port, "sensor-7-sub", &dev, &key).await, "the device (subscriber)");
    let mut publ = connected(Device::connect(broker.port, "sensor-7-pub", &dev, &key).await, "the device (publisher)");
    let telemetry = format!("devices/{dev}/telemetry");
    assert_eq!(sub.subscribe(&telemetry).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    publ.publish(&telemetry, "{\"t\":21.5}").await;
    assert_eq!(sub.message().await, (telemetry.clone(), "{\"t\":21.5}".to_owned()));
    // Another device's topics: refused in the SUBACK.
    assert_eq!(sub.subscribe("devices/sensor-8/#").await, SubscribeReasonCode::Failure);
    // A wrong password gets nowhere.
    refused(Device::connect(broker.port, "sensor-7-bad", &dev, "bm90LXRoZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==").await, "a wrong key");
    drop((sub, publ));

    // Re-provisioned to the built-in hub: the service removes the broker client.
    set_hubs(&s, "sensor-7", &[BUILTIN_HUB]).await;
    assert_eq!(assigned(&s, "sensor-7", &key, BUILTIN_HUB).await, dev);
    refused(Device::connect(broker.port, "sensor-7-moved", &dev, &key).await, "the device after moving to the built-in hub");
    let ids = s.service(Method::GET, &format!("/linkedHubs/{BUILTIN_HUB}/devices"), None).await;
    assert!(ids.body.as_array().into_iter().flatten().any(|d| d["deviceId"] == dev.as_str()), "{}", ids.body);
}

#[tokio::test]
async fn a_broker_that_is_down_fails_the_registration_cleanly() {
    let mut broker = Broker::start();
    // No retries beyond the connector's own: the failure comes at once (the retries have their own tests).
    let s = TestService::start_with(dps_service::config::Overrides { hub_retries: Some(0), ..Default::default() }).await;
    link_broker(&s, &broker).await;
    let key = s.enroll("sensor-9", json!({ "iotHubs": [HUB] })).await;

    broker.kill();
    let done = s.provision("sensor-9", &key).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 503001, "{}", done.body);
    assert!(done.body["registrationState"]["assignedHub"].is_null(), "{}", done.body);
    let message = done.body["registrationState"]["errorMessage"].as_str().unwrap_or_default();
    // The device learns that the hub failed, not the broker's address or credentials; the trace has the detail.
    assert!(message.contains(HUB) && !message.contains(ADMIN_PASSWORD) && !message.contains("127.0.0.1"), "{message}");
    let trace = s.service(Method::GET, "/registrations/sensor-9/trace", None).await;
    assert!(trace.body["trace"]["connector"]["result"].as_str().is_some_and(|r| r.contains("unreachable")), "{}", trace.body);
    let store = &s.running.as_ref().unwrap_or_else(|| panic!("running")).store;
    let identities = store.list_identities(None).await.expect("list identities");
    assert!(identities.iter().all(|i| !i.device_id.eq_ignore_ascii_case("sensor-9")), "an identity was left behind: {identities:?}");

    // The broker is back (same port, same accounts): the device registers and connects.
    broker.start_again();
    let dev = assigned(&s, "sensor-9", &key, HUB).await;
    let mut d = connected(Device::connect(broker.port, "sensor-9", &dev, &key).await, "the device once the broker is back");
    assert_eq!(d.subscribe(&format!("devices/{dev}/#")).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
}
