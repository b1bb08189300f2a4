//! Issue #14: a registration id assigned through one enrollment cannot be claimed through another. A device
//! holding a valid credential of group H (its derived key) cannot register under an id assigned through group G
//! and take over its identity in the hub — unless G was deleted, or an individual enrollment names the device.

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::{json, Value};

async fn group_key(s: &TestService, id: &str) -> String {
    let doc = json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    let a = s.service(Method::PUT, &format!("/enrollmentGroups/{id}"), Some(doc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned()
}

fn derived(group_key: &str, id: &str) -> String {
    dps_crypto::derive_device_key(group_key, id).expect("derives the device key")
}

async fn register(s: &TestService, id: &str, key: &str) -> common::Answer {
    let sas = s.device_sas(id, key, s.now() + 3600);
    s.register(id, &sas, &format!("{{\"registrationId\":\"{id}\"}}")).await
}

async fn record(s: &TestService, id: &str) -> Value {
    let a = s.service(Method::GET, &format!("/registrations/{id}/trace"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

/// The built-in registry's identities in the default hub.
async fn identity(s: &TestService, id: &str) -> Value {
    let a = s.service(Method::GET, "/linkedHubs/local-hub.dps.local/devices", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let all = a.body.as_array().cloned().or_else(|| a.body["items"].as_array().cloned()).unwrap_or_default();
    all.into_iter().find(|d| d["deviceId"] == id).unwrap_or(Value::Null)
}

#[tokio::test]
async fn another_group_cannot_claim_an_assigned_registration_id() {
    let s = TestService::start().await;
    let (g, h) = (group_key(&s, "group-g").await, group_key(&s, "group-h").await);
    let done = s.provision("victim", &derived(&g, "victim")).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let before = record(&s, "victim").await;

    // Group H's derived key for the same id: a valid credential, refused at register (409201), nothing written.
    let a = register(&s, "victim", &derived(&h, "victim")).await;
    TestService::assert_error(&a, 409, 409201);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("another enrollment") && !message.contains("group-g"), "the owner is not named: {message}");
    let after = record(&s, "victim").await;
    assert_eq!(after["enrollment"], json!({ "kind": "group", "id": "group-g" }), "{after}");
    assert_eq!(after["registrationState"], before["registrationState"], "the owner's record is untouched");
    // The refusal is in the record's trace, with both enrollments.
    let note = &after["trace"]["claimRefused"];
    assert_eq!(note["owner"], json!({ "kind": "group", "id": "group-g" }), "{after}");
    assert_eq!(note["claimedBy"], json!({ "kind": "group", "id": "group-h" }), "{after}");
    assert_eq!(note["error"]["code"], 409201, "{after}");
    assert_eq!(identity(&s, "victim").await["createdBy"], format!("dps-console:{}:group:group-g", s.scope));

    // The owner itself registers again as before.
    let again = s.provision("victim", &derived(&g, "victim")).await;
    assert_eq!(again.body["status"], "assigned", "{}", again.body);
}

#[tokio::test]
async fn a_deleted_owner_or_an_individual_enrollment_allows_the_takeover() {
    let s = TestService::start().await;
    let (g, h) = (group_key(&s, "old-group").await, group_key(&s, "new-group").await);
    assert_eq!(s.provision("moved", &derived(&g, "moved")).await.body["status"], "assigned");
    // The owning group is deleted: its devices are given up, another enrollment may take them.
    let del = s.service(Method::DELETE, "/enrollmentGroups/old-group", None).await;
    assert_eq!(del.status, 204, "{}", del.body);
    let done = s.provision("moved", &derived(&h, "moved")).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    assert_eq!(record(&s, "moved").await["enrollment"], json!({ "kind": "group", "id": "new-group" }));
    assert_eq!(identity(&s, "moved").await["createdBy"], format!("dps-console:{}:group:new-group", s.scope));

    // An individual enrollment for the id names the device: it takes it over from the group that still exists.
    let key = s.enroll("moved", json!({})).await;
    let done = s.provision("moved", &key).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    assert_eq!(record(&s, "moved").await["enrollment"], json!({ "kind": "individual", "id": "moved" }));
    assert_eq!(identity(&s, "moved").await["createdBy"], format!("dps-console:{}:individual:moved", s.scope));
}

/// The record was deleted (so the register's check has no owner to compare), but the hub still has the identity
/// of group G: the connector refuses to replace it, and the registration fails with the reason in its trace.
#[tokio::test]
async fn the_hub_identity_of_another_enrollment_is_not_replaced() {
    let s = TestService::start().await;
    let (g, h) = (group_key(&s, "owner-g").await, group_key(&s, "other-h").await);
    assert_eq!(s.provision("dev-i", &derived(&g, "dev-i")).await.body["status"], "assigned");
    let del = s.service(Method::DELETE, "/registrations/dev-i", None).await;
    assert_eq!(del.status, 204, "{}", del.body);

    let done = s.provision("dev-i", &derived(&h, "dev-i")).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 409201, "{}", done.body);
    let t = record(&s, "dev-i").await;
    let result = t["trace"]["connector"]["result"].as_str().unwrap_or_default();
    assert!(result.contains("belongs to another enrollment"), "{t}");
    assert_eq!(identity(&s, "dev-i").await["createdBy"], format!("dps-console:{}:group:owner-g", s.scope), "the identity is kept");
    // The refused claim owns nothing: G's device still registers.
    assert_eq!(s.provision("dev-i", &derived(&g, "dev-i")).await.body["status"], "assigned");
    s.service(Method::DELETE, "/registrations/dev-i", None).await;

    // Once G is gone, H's device may have the identity.
    s.service(Method::DELETE, "/enrollmentGroups/owner-g", None).await;
    let done = s.provision("dev-i", &derived(&h, "dev-i")).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let t = record(&s, "dev-i").await;
    let attempts = t["trace"]["connector"]["failedAttempts"].to_string();
    assert!(attempts.contains("taken over") && attempts.contains("owner-g"), "{t}");
    assert_eq!(identity(&s, "dev-i").await["createdBy"], format!("dps-console:{}:group:other-h", s.scope));
}
