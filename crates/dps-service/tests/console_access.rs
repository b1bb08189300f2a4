//! The console's access (issue: console §3): an initial admin password written once (0600), argon2 at rest,
//! sign-in sessions with every right, sign-out, throttled failures, password change.

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::json;

async fn login(s: &TestService, password: &str) -> common::Answer {
    s.send(Method::POST, "/console/login", None, &[], Some(json!({ "username": "admin", "password": password }).to_string().into_bytes()))
        .await
}

#[tokio::test]
async fn admin_sign_in_sessions_and_password_change() {
    let s = TestService::start().await;
    let file = s.dir.path().join("initial-admin-password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).map(|m| m.permissions().mode() & 0o777).unwrap_or_default();
        assert_eq!(mode, 0o600);
    }
    let password = std::fs::read_to_string(&file).unwrap_or_default().trim().to_owned();
    assert_eq!(password.len(), 20);
    assert!(s.running.as_ref().and_then(|r| r.initial_admin_password.clone()).as_deref() == Some(password.as_str()));

    TestService::assert_error(&login(&s, "wrong-password").await, 401, 401002);
    let ok = login(&s, &password).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let bearer = format!("Bearer {}", ok.body["token"].as_str().unwrap_or_default());
    // A session has every right of the service API.
    assert_eq!(s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await.status, 200);
    let put = s
        .send(
            Method::PUT,
            "/enrollments/console-made",
            Some(&bearer),
            &[],
            Some(json!({ "registrationId": "console-made", "attestation": { "type": "symmetricKey" } }).to_string().into_bytes()),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    TestService::assert_error(&s.send(Method::GET, "/linkedHubs", Some("Bearer forged"), &[], None).await, 401, 401002);

    // The password changes (through the service API); every session ends; the new one signs in.
    let change = s.service(Method::PUT, "/admin/password", Some(json!({ "password": "correct horse battery" }))).await;
    assert_eq!(change.status, 204, "{}", change.body);
    TestService::assert_error(&s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await, 401, 401002);
    TestService::assert_error(&s.service(Method::PUT, "/admin/password", Some(json!({ "password": "short" }))).await, 400, 400004);
    let again = login(&s, "correct horse battery").await;
    assert_eq!(again.status, 200);
    let bearer = format!("Bearer {}", again.body["token"].as_str().unwrap_or_default());
    assert_eq!(s.send(Method::POST, "/console/logout", Some(&bearer), &[], None).await.status, 204);
    TestService::assert_error(&s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await, 401, 401002);

    // Five failures within a minute: the address waits.
    for _ in 0..5 {
        login(&s, "nope-nope-nope").await;
    }
    let throttled = login(&s, "correct horse battery").await;
    TestService::assert_error(&throttled, 429, 429001);
    assert_eq!(throttled.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("60"));

    // A restart keeps the password (hashed in the store) and does not make a new one.
    let mut s = s;
    s.restart().await;
    assert!(s.running.as_ref().is_some_and(|r| r.initial_admin_password.is_none()));
    let db = std::fs::read(s.dir.path().join("dps.sqlite")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&db).contains("correct horse battery"), "the password must be stored hashed");
}
