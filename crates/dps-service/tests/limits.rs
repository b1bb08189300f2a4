//! The Azure limits profile (§9, §1.9, README "Azure limits profile") over HTTPS and the service API: a sixth
//! poll within 10 s, the registration and service-operation rates, bulk size, the group count, the run-time
//! toggle, and that the default profile throttles nothing. The service's clock is a `ManualClock`: windows
//! move only when the test moves them. (MQTT and AMQP: `mqtt.rs`, `amqp.rs`.)

mod common;

use common::TestService;
use dps_service::config::{AzureLimitsOverrides, Overrides};
use reqwest::Method;
use serde_json::{json, Value};

fn azure(numbers: AzureLimitsOverrides) -> Overrides {
    Overrides { limits: Some("azure".into()), limits_azure: Some(numbers), ..Default::default() }
}

fn retry_after(a: &common::Answer) -> Option<u32> {
    a.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

async fn metrics(s: &TestService) -> String {
    let r = s.http.get(format!("{}/metrics", s.base)).send().await.expect("GET /metrics");
    r.text().await.expect("reads the body")
}

#[tokio::test]
async fn a_sixth_poll_within_ten_seconds_is_429_with_retry_after_and_the_trace_says_so() {
    let s = TestService::start_with(azure(AzureLimitsOverrides::default())).await;
    let key = s.enroll("lim-poll", json!({})).await;
    let sas = s.device_sas("lim-poll", &key, s.now() + 3600);
    let a = s.register("lim-poll", &sas, "{\"registrationId\":\"lim-poll\"}").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
    for i in 0..5 {
        let p = s.poll("lim-poll", &op, &sas).await;
        assert!(p.status == 200 || p.status == 202, "poll {i}: {} {}", p.status, p.body);
    }
    let sixth = s.poll("lim-poll", &op, &sas).await;
    TestService::assert_error(&sixth, 429, 429001);
    assert_eq!(retry_after(&sixth), Some(10), "the clock stood still: the first poll leaves the window in 10 s");
    s.clock.advance(chrono::Duration::seconds(10));
    let done = s.poll_done("lim-poll", &op, &sas).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "assigned");

    let trace = s.service(Method::GET, "/registrations/lim-poll/trace", None).await;
    assert_eq!(trace.status, 200, "{}", trace.body);
    let t = &trace.body["trace"]["throttled"];
    assert_eq!((t["polls"].as_u64(), t["registrations"].as_u64()), (Some(1), Some(0)), "{}", trace.body);
    assert!(t["last"].is_string() && t["lastRetryAfterSecs"] == 10, "{t}");
    assert!(metrics(&s).await.contains("dps_throttled_requests_total{operation=\"poll\"} 1"));
    let series = s.service(Method::GET, "/diagnostics/metrics?minutes=5", None).await;
    assert!(series.body.as_array().is_some_and(|p| p.iter().any(|p| p["metric"] == "ThrottledRequests")), "{}", series.body);

    // An unauthenticated poll is refused for its credentials, and costs no window.
    let wrong = s.device_sas("lim-poll", &dps_crypto::generate_key(), s.now() + 3600);
    for _ in 0..8 {
        TestService::assert_error(&s.poll("lim-poll", &op, &wrong).await, 401, 401002);
    }
}

#[tokio::test]
async fn the_registration_rate_is_per_service() {
    let n = AzureLimitsOverrides { registrations_per_window: Some(2), registration_window_secs: Some(6), ..Default::default() };
    let s = TestService::start_with(azure(n)).await;
    for id in ["lim-r1", "lim-r2"] {
        let key = s.enroll(id, json!({})).await;
        assert_eq!(s.provision(id, &key).await.body["status"], "assigned");
    }
    let key = s.enroll("lim-r3", json!({})).await;
    let sas = s.device_sas("lim-r3", &key, s.now() + 3600);
    let third = s.register("lim-r3", &sas, "{}").await;
    TestService::assert_error(&third, 429, 429001);
    assert_eq!(retry_after(&third), Some(6));
    s.clock.advance(chrono::Duration::seconds(6));
    assert_eq!(s.provision("lim-r3", &key).await.body["status"], "assigned", "the window moved on");
    let trace = s.service(Method::GET, "/registrations/lim-r3/trace", None).await;
    assert_eq!(trace.body["trace"]["throttled"]["registrations"], 1, "{}", trace.body);
    assert!(metrics(&s).await.contains("dps_throttled_requests_total{operation=\"register\"} 1"));
}

#[tokio::test]
async fn bulk_operations_hold_at_most_ten_items_and_group_counts_are_capped_per_attestation_type() {
    let n = AzureLimitsOverrides { max_enrollment_groups: Some(2), max_linked_hubs: Some(1), ..Default::default() };
    let s = TestService::start_with(azure(n)).await;
    let items = |n: usize, prefix: &str| -> Vec<Value> {
        (0..n).map(|i| json!({ "registrationId": format!("{prefix}-{i}"), "attestation": { "type": "symmetricKey" } })).collect()
    };
    let too_many = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": items(11, "bulk-a") }))).await;
    TestService::assert_error(&too_many, 400, 400004);
    assert!(too_many.body["message"].as_str().is_some_and(|m| m.contains("at most 10")), "{}", too_many.body);
    let ten = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": items(10, "bulk-b") }))).await;
    assert_eq!((ten.status, &ten.body["isSuccessful"]), (200, &json!(true)), "{}", ten.body);
    let groups: Vec<Value> =
        (0..11).map(|i| json!({ "enrollmentGroupId": format!("bg-{i}"), "attestation": { "type": "symmetricKey" } })).collect();
    let g = s.service(Method::POST, "/enrollmentGroups", Some(json!({ "mode": "create", "enrollmentGroups": groups }))).await;
    TestService::assert_error(&g, 400, 400004);

    let group = |id: &str| json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    for id in ["lim-g1", "lim-g2"] {
        assert_eq!(s.service(Method::PUT, &format!("/enrollmentGroups/{id}"), Some(group(id))).await.status, 200);
    }
    let third = s.service(Method::PUT, "/enrollmentGroups/lim-g3", Some(group("lim-g3"))).await;
    TestService::assert_error(&third, 403, 403002);
    let again = s.service(Method::PUT, "/enrollmentGroups/lim-g2", Some(group("lim-g2"))).await;
    assert_eq!(again.status, 200, "replacing an existing group is not a new one: {}", again.body);
    // The default hub is the one linked hub allowed.
    let hub = s.service(Method::PUT, "/linkedHubs/second.example", Some(json!({ "hostName": "second.example" }))).await;
    TestService::assert_error(&hub, 403, 403002);
}

#[tokio::test]
async fn the_service_operation_rate_counts_sas_clients() {
    let n = AzureLimitsOverrides { service_operations_per_window: Some(3), ..Default::default() };
    let s = TestService::start_with(azure(n)).await;
    for _ in 0..3 {
        assert_eq!(s.service(Method::GET, "/enrollments/nobody", None).await.status, 404);
    }
    let fourth = s.service(Method::GET, "/enrollments/nobody", None).await;
    TestService::assert_error(&fourth, 429, 429001);
    assert_eq!(retry_after(&fourth), Some(60));
    assert!(metrics(&s).await.contains("dps_throttled_requests_total{operation=\"service\"} 1"));
}

#[tokio::test]
async fn the_default_profile_throttles_nothing() {
    let s = TestService::start().await;
    let settings = s.service(Method::GET, "/service/limits", None).await;
    assert_eq!((settings.body["profile"].as_str(), settings.body["configured"].as_bool()), (Some("default"), Some(false)));
    let key = s.enroll("lim-free", json!({})).await;
    let sas = s.device_sas("lim-free", &key, s.now() + 3600);
    let op = s.register("lim-free", &sas, "{}").await.body["operationId"].as_str().unwrap_or_default().to_owned();
    for i in 0..30 {
        let p = s.poll("lim-free", &op, &sas).await;
        assert!(p.status == 200 || p.status == 202, "poll {i}: {}", p.body);
    }
    let items: Vec<Value> =
        (0..11).map(|i| json!({ "registrationId": format!("free-{i}"), "attestation": { "type": "symmetricKey" } })).collect();
    let bulk = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": items }))).await;
    assert_eq!(bulk.status, 200, "{}", bulk.body);
    assert!(!metrics(&s).await.contains("dps_throttled_requests_total{"));
    assert!(s.service(Method::GET, "/registrations/lim-free/trace", None).await.body["trace"].get("throttled").is_none());
}

#[tokio::test]
async fn the_console_toggle_switches_at_once_and_is_kept_for_the_next_start() {
    let mut s = TestService::start_with(Overrides {
        limits_azure: Some(AzureLimitsOverrides { polls_per_window: Some(1), ..Default::default() }),
        ..Default::default()
    })
    .await;
    let bad = s.service(Method::PUT, "/service/limits", Some(json!({ "profile": "strict" }))).await;
    TestService::assert_error(&bad, 400, 400004);
    let on = s.service(Method::PUT, "/service/limits", Some(json!({ "profile": "azure" }))).await;
    assert_eq!((on.status, &on.body["profile"], &on.body["azure"]["pollsPerWindow"]), (200, &json!("azure"), &json!(1)), "{}", on.body);
    assert_eq!(on.body["azure"]["maxBulkItems"], 10, "Azure's numbers where none is overridden");
    let key = s.enroll("lim-toggle", json!({})).await;
    let sas = s.device_sas("lim-toggle", &key, s.now() + 3600);
    let op = s.register("lim-toggle", &sas, "{}").await.body["operationId"].as_str().unwrap_or_default().to_owned();
    assert!(s.poll("lim-toggle", &op, &sas).await.status < 300);
    assert_eq!(s.poll("lim-toggle", &op, &sas).await.status, 429);
    s.restart().await;
    assert_eq!(s.service(Method::GET, "/service/limits", None).await.body["profile"], "azure", "kept in the store");
    let off = s.service(Method::PUT, "/service/limits", Some(json!({ "profile": "default" }))).await;
    assert_eq!(off.body["profile"], "default");
    for _ in 0..3 {
        assert!(s.poll("lim-toggle", &op, &sas).await.status < 300);
    }
}

#[test]
fn bad_limits_configuration_is_refused_at_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = |k: &str, v: &str| std::collections::HashMap::from([(k.to_owned(), v.to_owned())]);
    for (k, v) in [("DPS_LIMITS", "strict"), ("DPS_LIMITS_AZURE_POLLS_PER_WINDOW", "0"), ("DPS_LIMITS_AZURE_POLL_WINDOW_SECS", "x")] {
        let r = dps_service::config::Config::load(dir.path().into(), None, &env(k, v), Overrides::default());
        assert!(r.is_err(), "{k}={v} accepted");
    }
}

/// A bulk operation near the count quota: the items that still fit are written, the rest get 403002 one by
/// one (as single writes would), and replacing an existing enrollment is never a new one.
#[tokio::test]
async fn bulk_operations_near_the_quota_write_what_fits() {
    let n = AzureLimitsOverrides { max_individual_enrollments: Some(5), max_enrollment_groups: Some(2), ..Default::default() };
    let s = TestService::start_with(azure(n)).await;
    let item = |id: &str| json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
    let first = s
        .service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": [item("q-1"), item("q-2"), item("q-3")] })))
        .await;
    assert_eq!(first.body, json!({ "isSuccessful": true, "errors": [] }));
    let items = [item("q-1"), item("q-4"), item("q-5"), item("q-6"), item("q-4"), item("q-7")];
    let next = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "update", "enrollments": items }))).await;
    let failed: Vec<(String, i64)> = next.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["registrationId"].as_str().unwrap_or_default().to_owned(), e["errorCode"].as_i64().unwrap_or_default()))
        .collect();
    assert_eq!(failed, [("q-6".to_owned(), 403002), ("q-7".to_owned(), 403002)], "{}", next.body);
    for (id, status) in [("q-1", 200), ("q-4", 200), ("q-5", 200), ("q-6", 404), ("q-7", 404)] {
        assert_eq!(s.service(Method::GET, &format!("/enrollments/{id}"), None).await.status, status, "{id}");
    }
    let group = |id: &str, kind: &str| match kind {
        "x509" => {
            json!({ "enrollmentGroupId": id, "attestation": { "type": "x509", "x509": { "caReferences": { "primary": "nowhere" } } } })
        }
        _ => json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } }),
    };
    let groups = [group("qg-1", "sym"), group("qg-2", "sym"), group("qg-3", "sym"), group("qg-x", "x509")];
    let g = s.service(Method::POST, "/enrollmentGroups", Some(json!({ "mode": "create", "enrollmentGroups": groups }))).await;
    let failed: Vec<(String, i64)> = g.body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["enrollmentGroupId"].as_str().unwrap_or_default().to_owned(), e["errorCode"].as_i64().unwrap_or_default()))
        .collect();
    assert_eq!(failed, [("qg-3".to_owned(), 403002), ("qg-x".to_owned(), 400004)], "{}", g.body);
}

/// Overload: with `max_registrations_in_flight` registrations under way (one here, held by a hub that is down and
/// retried), the next register is answered 429001 with `retry-after` at once and counted as `overload`; when the
/// held one ends, registrations are admitted again.
#[tokio::test]
async fn registrations_beyond_the_in_flight_limit_are_answered_429_until_one_ends() {
    let s = TestService::start_with(Overrides { max_registrations_in_flight: Some(1), hub_retries: Some(3), ..Default::default() }).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let cs = format!(
        "HostName=down.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=;GatewayHostName=127.0.0.1:{closed}"
    );
    let hub =
        json!({ "hostName": "down.azure-devices.net", "connector": "azureIotHub", "connectionString": cs, "applyAllocationPolicy": false });
    assert_eq!(s.service(Method::PUT, "/linkedHubs/down.azure-devices.net", Some(hub)).await.status, 200);
    let held_key = s.enroll("held", json!({ "iotHubs": ["down.azure-devices.net"] })).await;
    let held_sas = s.device_sas("held", &held_key, s.now() + 600);
    let held = s.register("held", &held_sas, "{}").await;
    assert_eq!(held.status, 202, "{}", held.body);

    let key = s.enroll("next", json!({})).await;
    let sas = s.device_sas("next", &key, s.now() + 600);
    let refused = s.register("next", &sas, "{}").await;
    TestService::assert_error(&refused, 429, 429001);
    assert_eq!(retry_after(&refused), Some(2), "told to come back after the configured poll interval");
    let text = metrics(&s).await;
    assert!(text.contains("dps_throttled_requests_total{operation=\"overload\"} 1"), "{text}");
    assert!(text.contains("\ndps_registrations_in_flight 1\n"), "the held registration is in flight: {text}");
    assert!(text.contains("\ndps_registrations_in_flight_limit 1\n"), "{text}");
    let record = s.service(Method::GET, "/registrations/next", None).await;
    assert_eq!(record.status, 404, "a refused register leaves no record: {}", record.body);

    let op = held.body["operationId"].as_str().unwrap_or_default().to_owned();
    let mut done = s.poll("held", &op, &held_sas).await;
    for _ in 0..600 {
        if done.status != 202 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        done = s.poll("held", &op, &held_sas).await;
    }
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    let admitted = s.provision("next", &key).await;
    assert_eq!(admitted.body["status"], "assigned", "admitted again once the held registration ended: {}", admitted.body);
}
