//! Metrics: the Prometheus exporter and the per-minute series behind the console's charts.

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn registrations_and_attestations_are_counted() {
    let s = TestService::start().await;
    let key = s.enroll("metered", json!({})).await;
    assert_eq!(s.provision("metered", &key).await.body["status"], "assigned");
    let wrong = s.device_sas("metered", &dps_crypto::generate_key(), s.now() + 60);
    TestService::assert_error(&s.register("metered", &wrong, "{}").await, 401, 401002);

    let r = s.http.get(format!("{}/metrics", s.base)).send().await.expect("sends");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.expect("reads the body");
    for line in [
        "dps_registration_attempts_total{hub=\"local-hub.dps.local\",status=\"assigned\"} 1",
        "dps_device_assignments_total{hub=\"local-hub.dps.local\"} 1",
        "dps_attestation_attempts_total{mechanism=\"symmetricKey\",protocol=\"https\",status=\"success\"} 1",
        "dps_attestation_attempts_total{mechanism=\"symmetricKey\",protocol=\"https\",status=\"failure\"} 1",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }

    TestService::assert_error(&s.send(Method::GET, "/diagnostics/metrics", None, &[], None).await, 401, 401002);
    let series = s.service(Method::GET, "/diagnostics/metrics", None).await;
    let points = series.body.as_array().cloned().unwrap_or_default();
    assert!(
        points.iter().any(|p| p["metric"] == "RegistrationAttempts" && p["dimensions"]["status"] == "assigned" && p["count"] == 1),
        "{}",
        series.body
    );
}

/// The live log (`/diagnostics/logs`): recent entries with filters, and a stream that shows a registration as
/// it happens.
#[tokio::test]
async fn the_live_log_streams_registrations() {
    use tracing_subscriber::layer::SubscriberExt;
    // As `dps serve` sets it up: the level filter in front of the live log.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info")).with(dps_service::diagnostics::LogHub::layer()),
    );
    let s = TestService::start().await;
    let key = s.enroll("logged", json!({})).await;
    let sas = s.service_sas();
    let mut stream = s
        .http
        .get(format!("{}/diagnostics/logs?follow=true&registrationId=logged&level=info", s.base))
        .header("authorization", &sas)
        .send()
        .await
        .expect("sends");
    assert_eq!(stream.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    assert_eq!(s.provision("logged", &key).await.body["status"], "assigned");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.contains("registration finished") {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk()).await.unwrap_or_else(|_| panic!("no live entry: {seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap_or_default().unwrap_or_default()));
    }
    assert!(seen.contains("\"registration_id\":\"logged\""), "{seen}");
    let recent = s.send(Method::GET, "/diagnostics/logs?registrationId=logged&q=accepted", Some(&sas), &[], None).await;
    assert!(
        recent.body.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|e| e["fields"]["registration_id"] == "logged")),
        "{}",
        recent.body
    );
    TestService::assert_error(&s.send(Method::GET, "/diagnostics/logs?level=loud", Some(&sas), &[], None).await, 400, 400004);
}

/// #14 item 5: with `metrics_token` set, `GET /metrics` needs `Authorization: Bearer <token>` (401002
/// otherwise, with the DPS error shape); without it, the exporter stays open (the test above).
#[tokio::test]
async fn metrics_can_require_a_token() {
    let token = "a-scraper-token-of-32-characters";
    let s = TestService::start_with(dps_service::config::Overrides { metrics_token: Some(token.into()), ..Default::default() }).await;
    TestService::assert_error(&s.send(Method::GET, "/metrics", None, &[], None).await, 401, 401002);
    TestService::assert_error(&s.send(Method::GET, "/metrics", Some("Bearer not-the-token-at-all-000"), &[], None).await, 401, 401002);
    TestService::assert_error(&s.send(Method::GET, "/metrics", Some(&s.service_sas()), &[], None).await, 401, 401002);
    let r = s.http.get(format!("{}/metrics", s.base)).header("authorization", format!("Bearer {token}")).send().await.expect("sends");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("reads the body").contains("dps_"), "Prometheus text");
    let console = s.http.get(format!("{}/metrics", s.console_base)).send().await.expect("sends");
    assert_eq!(console.status(), 401, "the console port asks for it too");
}
