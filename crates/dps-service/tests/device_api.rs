//! Device API over HTTPS against the real listener (§1, §4.1, §4.2, §7.1).

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::json;

/// §1.1, §1.5, §0.3, §0.9: register → 202 + lower-case retry-after; poll → 200 with the whole result.
#[tokio::test]
async fn individual_enrollment_provisions_with_the_whole_result() {
    let s = TestService::start().await;
    let key = s.enroll("dev-1", json!({ "deviceId": "sensor-1", "initialTwin": { "tags": { "site": "b12" } } })).await;
    let sas = s.device_sas("dev-1", &key, s.now() + 3600);
    let a = s.register("dev-1", &sas, r#"{"registrationId":"dev-1"}"#).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
    assert_eq!(a.body["status"], "assigning");
    let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
    assert!(op.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'), "{op}");
    let done = s.poll_done("dev-1", &op, &sas).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let r = &done.body["registrationState"];
    assert_eq!(done.body["status"], "assigned");
    assert_eq!(r["registrationId"], "dev-1");
    assert_eq!(r["assignedHub"], "local-hub.dps.local");
    assert_eq!(r["deviceId"], "sensor-1");
    assert_eq!(r["status"], "assigned");
    assert_eq!(r["substatus"], "initialAssignment");
    assert!(r["etag"].as_str().is_some_and(|e| !e.is_empty()));
    for t in ["createdDateTimeUtc", "lastUpdatedDateTimeUtc"] {
        assert!(chrono::DateTime::parse_from_rfc3339(r[t].as_str().unwrap_or_default()).is_ok(), "{t}: {r}");
    }
    // The built-in hub holds the identity with the twin (§7.4).
    let devices = s.service(Method::GET, "/linkedHubs/local-hub.dps.local/devices", None).await;
    assert_eq!(devices.body[0]["deviceId"], "sensor-1");
    assert_eq!(devices.body[0]["initialTwin"]["tags"]["site"], "b12");
    // The device's status look-up (§1.1) and the service's record agree.
    let look = s
        .send(Method::POST, &format!("/{}/registrations/dev-1?api-version=2019-03-31", s.scope), Some(&sas), &[], Some(b"{}".to_vec()))
        .await;
    assert_eq!((look.status, &look.body["assignedHub"]), (200, &json!("local-hub.dps.local")));
    let rec = s.service(Method::GET, "/registrations/dev-1", None).await;
    assert_eq!(rec.body["deviceId"], "sensor-1");
}

/// §4.2: devices of a group sign with keys derived from the group key; each gets its own identity.
#[tokio::test]
async fn group_devices_provision_with_derived_keys() {
    let s = TestService::start().await;
    let g = s
        .service(
            Method::PUT,
            "/enrollmentGroups/line-7",
            Some(json!({ "enrollmentGroupId": "line-7", "attestation": { "type": "symmetricKey" } })),
        )
        .await;
    assert_eq!(g.status, 200, "{}", g.body);
    let group_key = g.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    let secondary = g.body["attestation"]["symmetricKey"]["secondaryKey"].as_str().unwrap_or_default().to_owned();
    for id in ["Line7-A", "line7-b", "line7-c"] {
        let key = dps_crypto::derive_device_key(&group_key, id).expect("derives the device key");
        let done = s.provision(id, &key).await;
        assert_eq!(done.body["status"], "assigned", "{}", done.body);
        assert_eq!(done.body["registrationState"]["deviceId"], id);
        assert_eq!(done.body["registrationState"]["symmetricKey"]["enrollmentGroupId"], "line-7");
    }
    // The secondary derived key works too.
    let key = dps_crypto::derive_device_key(&secondary, "line7-d").expect("derives the device key");
    assert_eq!(s.provision("line7-d", &key).await.body["status"], "assigned");
    // A key derived for another id does not.
    let wrong = dps_crypto::derive_device_key(&group_key, "line7-a").expect("derives the device key");
    let a = s.register("line7-e", &s.device_sas("line7-e", &wrong, s.now() + 60), "{}").await;
    TestService::assert_error(&a, 401, 401002);
    let q = s.service(Method::POST, "/registrations/line-7/query", Some(json!({ "query": "*" }))).await;
    assert_eq!(q.body.as_array().map(Vec::len), Some(4));
    assert_eq!(q.headers.get("x-ms-item-type").and_then(|v| v.to_str().ok()), Some("DeviceRegistration"));
}

/// §7.1: a disabled enrollment ends in `disabled`; registering again keeps the hub (§7.2 rule 3).
#[tokio::test]
async fn disabled_enrollments_and_repeat_registrations() {
    let s = TestService::start().await;
    for h in ["hub-a.example", "hub-b.example", "hub-c.example"] {
        assert_eq!(
            s.service(Method::PUT, &format!("/linkedHubs/{h}"), Some(json!({ "hostName": h, "allocationWeight": 5 }))).await.status,
            200
        );
    }
    let key = s.enroll("off", json!({ "provisioningStatus": "disabled" })).await;
    let done = s.provision("off", &key).await;
    assert_eq!((done.status, &done.body["status"]), (200, &json!("disabled")), "{}", done.body);

    let key = s.enroll("again", json!({})).await;
    let first = s.provision("again", &key).await.body["registrationState"].clone();
    let second = s.provision("again", &key).await.body["registrationState"].clone();
    assert_eq!(first["assignedHub"], second["assignedHub"]);
    assert_eq!(second["substatus"], "initialAssignment");
    assert_eq!(first["createdDateTimeUtc"], second["createdDateTimeUtc"]);
    assert_ne!(first["etag"], second["etag"]);
}

/// Bad input is answered with the documented status and code, and the service keeps serving.
#[tokio::test]
async fn bad_device_input_gets_clear_errors() {
    let s = TestService::start().await;
    let key = s.enroll("dev", json!({})).await;
    let good = s.device_sas("dev", &key, s.now() + 3600);

    TestService::assert_error(&s.register("dev", &good, "{not json").await, 400, 400001);
    let big = format!("{{\"registrationId\":\"dev\",\"payload\":\"{}\"}}", "x".repeat(100 * 1024));
    TestService::assert_error(&s.register("dev", &good, &big).await, 413, 413001);
    TestService::assert_error(&s.register("dev", &good, r#"{"registrationId":"other"}"#).await, 400, 400004);
    let bad_id = s.send(Method::PUT, &format!("/{}/registrations/dev%21x/register", s.scope), Some(&good), &[], Some(b"{}".to_vec())).await;
    TestService::assert_error(&bad_id, 400, 400004);
    TestService::assert_error(&s.register("dev", &s.device_sas("dev", &key, s.now() - 3600), "{}").await, 401, 401002);
    let for_other = s.device_sas("other", &key, s.now() + 3600);
    TestService::assert_error(&s.register("dev", &for_other, "{}").await, 401, 401002);
    let unknown = s.device_sas("nobody", &key, s.now() + 3600);
    TestService::assert_error(&s.register("nobody", &unknown, "{}").await, 401, 401002);
    TestService::assert_error(&s.register("dev", "SharedAccessSignature garbage", "{}").await, 401, 401002);
    let no_auth = s.send(Method::PUT, &format!("/{}/registrations/dev/register", s.scope), None, &[], Some(b"{}".to_vec())).await;
    TestService::assert_error(&no_auth, 401, 401002);
    let scope = s.send(Method::PUT, "/0ne00000000/registrations/dev/register", Some(&good), &[], Some(b"{}".to_vec())).await;
    TestService::assert_error(&scope, 404, 404204);
    TestService::assert_error(&s.poll("dev", "4.0000000000000000.nope", &good).await, 404, 404203);
    let method = s.send(Method::DELETE, &format!("/{}/registrations/dev/register", s.scope), Some(&good), &[], None).await;
    TestService::assert_error(&method, 405, 405001);

    // Still serving, and an empty body is accepted (§0.12).
    let a = s.register("dev", &good, "").await;
    assert_eq!(a.status, 202, "{}", a.body);
    // §7.3: while that operation is assigning, the same device is refused (409203); then it may register again.
    let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s.poll_done("dev", &op, &good).await.body["status"], "assigned");
    assert_eq!(s.provision("dev", &key).await.body["status"], "assigned");
}

/// §1.4: a registration id may not start with a special character; the device end refuses it with the same rule
/// as enrollment creation (400004, a message naming the rule), before any attestation.
#[tokio::test]
async fn registration_ids_starting_with_a_special_character_are_refused() {
    let s = TestService::start().await;
    let key = s.enroll("dev", json!({})).await;
    for id in ["-dev", ".dev", "_dev", ":dev"] {
        let sas = s.device_sas(id, &key, s.now() + 3600);
        let a = s.register(id, &sas, &format!("{{\"registrationId\":\"{id}\"}}")).await;
        TestService::assert_error(&a, 400, 400004);
        assert!(a.body["message"].as_str().is_some_and(|m| m.contains("must start with a letter or a digit")), "{id}: {}", a.body);
    }
    assert_eq!(s.provision("dev", &key).await.body["status"], "assigned");
}

/// §4.1: every SDK's token shape verifies (URL-encoded `sr`, no `skn`, any order).
#[tokio::test]
async fn tokens_in_every_sdk_shape_are_accepted() {
    let s = TestService::start().await;
    let key = s.enroll("shape", json!({})).await;
    let raw = dps_crypto::decode_key(&key).expect("decodes the key");
    let se = s.now() + 600;
    let enc = format!("{}%2Fregistrations%2Fshape", s.scope);
    let lower = format!("{}%2fregistrations%2fshape", s.scope);
    let sig =
        |sr: &str| percent_encoding::utf8_percent_encode(&dps_crypto::sign(&raw, sr, se), percent_encoding::NON_ALPHANUMERIC).to_string();
    for token in [
        format!("SharedAccessSignature sr={enc}&sig={}&se={se}", sig(&enc)),
        format!("SharedAccessSignature sig={}&se={se}&skn=&sr={lower}", sig(&lower)),
        format!("SharedAccessSignature sr={enc}&sig={}&se={se}&skn=registration", sig(&enc)),
    ] {
        let a = s.register("shape", &token, r#"{"registrationId":"shape","payload":null}"#).await;
        assert_eq!(a.status, 202, "{token}: {}", a.body);
        let done = s.poll_done("shape", a.body["operationId"].as_str().unwrap_or_default(), &token).await;
        assert_eq!(done.body["status"], "assigned", "{token}: {}", done.body);
    }
}
