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

    let r = s.http.get(format!("{}/metrics", s.base)).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("text/plain")));
    let text = r.text().await.unwrap_or_default();
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
