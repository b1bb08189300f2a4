//! The console's access (issue: console §3): an initial admin password written once (0600), argon2 at rest,
//! sign-in sessions with every right, sign-out, throttled failures, password change. Hardening (#14 item 5):
//! the password changes only with the current one, sign-in attempts are counted before any verification,
//! cross-site requests to the console port are refused.

mod common;

use common::TestService;
use dps_proto::LocalRequest;
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
    let password = std::fs::read_to_string(&file).expect("reads the file").trim().to_owned();
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

    // The password changes (through the service API, with the current one); every session ends; the new one
    // signs in.
    let change =
        s.service(Method::PUT, "/admin/password", Some(json!({ "currentPassword": password, "password": "correct horse battery" }))).await;
    assert_eq!(change.status, 204, "{}", change.body);
    TestService::assert_error(&s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await, 401, 401002);
    let short = json!({ "currentPassword": "correct horse battery", "password": "short" });
    TestService::assert_error(&s.service(Method::PUT, "/admin/password", Some(short)).await, 400, 400004);
    let again = login(&s, "correct horse battery").await;
    assert_eq!(again.status, 200);
    let bearer = format!("Bearer {}", again.body["token"].as_str().unwrap_or_default());
    assert_eq!(s.send(Method::POST, "/console/logout", Some(&bearer), &[], None).await.status, 204);
    TestService::assert_error(&s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await, 401, 401002);

    // Five attempts within a minute from one address: it waits.
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
    let db = std::fs::read(s.dir.path().join("dps.sqlite")).expect("reads the file");
    assert!(!String::from_utf8_lossy(&db).contains("correct horse battery"), "the password must be stored hashed");
}

fn initial_password(s: &TestService) -> String {
    std::fs::read_to_string(s.dir.path().join("initial-admin-password")).expect("reads the file").trim().to_owned()
}

async fn change_password(s: &TestService, auth: &str, body: serde_json::Value) -> common::Answer {
    s.send(Method::PUT, "/admin/password?api-version=2021-10-01", Some(auth), &[], Some(body.to_string().into_bytes())).await
}

/// #14 item 5: a session (or the owner's key) alone cannot change the password; the desktop shell's in-process
/// path neither. The first change removes the initial password file.
#[tokio::test]
async fn the_password_changes_only_with_the_current_one_and_the_initial_file_goes() {
    let s = TestService::start().await;
    let first = initial_password(&s);
    let session = login(&s, &first).await;
    let bearer = format!("Bearer {}", session.body["token"].as_str().unwrap_or_default());

    let missing = change_password(&s, &bearer, json!({ "password": "taken over by a thief" })).await;
    TestService::assert_error(&missing, 400, 400004);
    assert!(missing.body["message"].as_str().is_some_and(|m| m.contains("currentPassword")), "{}", missing.body);
    let owner = s.service_sas();
    let guess = json!({ "currentPassword": "a guess of the owner", "password": "taken over by a thief" });
    TestService::assert_error(&change_password(&s, &owner, guess).await, 400, 400004);
    let Some(running) = s.running.as_ref() else { panic!("not running") };
    let desktop = running
        .local_api()
        .send(LocalRequest {
            method: "PUT".into(),
            path: "/admin/password".into(),
            body: Some(json!({ "password": "taken over by a thief" }).to_string()),
            ..Default::default()
        })
        .await;
    assert_eq!((desktop.status, desktop.header("x-ms-error-code")), (400, Some("400004")), "{}", desktop.body);
    // Nothing changed: the session and the first password still work, the file is still there.
    assert_eq!(s.send(Method::GET, "/linkedHubs", Some(&bearer), &[], None).await.status, 200);
    assert!(s.dir.path().join("initial-admin-password").exists());

    let ok = change_password(&s, &bearer, json!({ "currentPassword": first, "password": "the owner's new password" })).await;
    assert_eq!(ok.status, 204, "{}", ok.body);
    assert!(!s.dir.path().join("initial-admin-password").exists(), "the initial password file is removed after the first change");
    TestService::assert_error(&login(&s, &first).await, 401, 401002);
    assert_eq!(login(&s, "the owner's new password").await.status, 200);
}

/// #14 item 5: argon2 is expensive, so every attempt is counted before it is verified: of twenty concurrent
/// guesses from one address, five are verified (401) and the rest refused at once (429 with Retry-After);
/// then even the right password waits. Another address is not affected.
#[tokio::test]
async fn sign_in_attempts_are_counted_before_the_password_is_verified() {
    let s = TestService::start().await;
    let s = &s;
    let guesses = (0..20).map(|i| async move { login(s, &format!("guess number {i}")).await });
    let answers = futures_util::future::join_all(guesses).await;
    let refused: Vec<_> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(answers.iter().filter(|a| a.status == 401).count(), 5, "only five attempts are verified");
    assert_eq!(refused.len(), 15, "the others are refused before verification");
    for a in &refused {
        TestService::assert_error(a, 429, 429001);
        let retry = a.headers.get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u32>().ok());
        assert!(retry.is_some_and(|r| (1..=60).contains(&r)), "{retry:?}");
    }
    TestService::assert_error(&login(s, &initial_password(s)).await, 429, 429001);

    // Another address has its own count.
    let other = reqwest::Client::builder()
        .use_preconfigured_tls(common::tls_client_config(&s.ca_pem))
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("builds");
    let body = json!({ "username": "admin", "password": initial_password(s) });
    let r = other.post(format!("{}/console/login", s.base)).json(&body).send().await.expect("sends");
    assert_eq!(r.status(), 200);
}

/// A request to the console port with exactly these headers (and body, if any).
async fn to_console(s: &TestService, method: Method, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> common::Answer {
    let mut rb = s.http.request(method, format!("{}{path}", s.console_base));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if let Some(b) = body {
        rb = rb.body(b.to_owned());
    }
    let r = rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    let bytes = r.bytes().await.expect("reads the body");
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    common::Answer { status, headers, body }
}

/// #14 item 5: the console port refuses what another site's page can make a browser send — a foreign
/// `Origin`, a cross-site fetch, a body that is not JSON (`text/plain` needs no CORS preflight), a WebSocket
/// upgrade from another origin — with 403001 in the DPS error shape. Its own origin, and clients that send no
/// `Origin` (the CLI, SDKs), still work.
#[tokio::test]
async fn cross_site_requests_to_the_console_port_are_refused() {
    let s = TestService::start().await;
    let own = s.console_base.clone();
    let sign_in = json!({ "username": "admin", "password": initial_password(&s) }).to_string();
    let json_type = ("content-type", "application/json");

    let login_path = "/console/login";
    let foreign = to_console(&s, Method::POST, login_path, &[("origin", "https://evil.example"), json_type], Some(&sign_in)).await;
    TestService::assert_error(&foreign, 403, 403001);
    let null = to_console(&s, Method::POST, login_path, &[("origin", "null"), json_type], Some(&sign_in)).await;
    TestService::assert_error(&null, 403, 403001);
    let plain = to_console(&s, Method::POST, login_path, &[("content-type", "text/plain")], Some(&sign_in)).await;
    TestService::assert_error(&plain, 403, 403001);
    TestService::assert_error(&to_console(&s, Method::POST, login_path, &[], Some(&sign_in)).await, 403, 403001);
    let fetched = to_console(&s, Method::GET, "/service/info", &[("sec-fetch-site", "cross-site")], None).await;
    TestService::assert_error(&fetched, 403, 403001);
    let upgrade = [
        ("origin", "https://evil.example"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    TestService::assert_error(&to_console(&s, Method::GET, "/", &upgrade, None).await, 403, 403001);

    // The console's own page signs in; a tool without Origin uses its SAS; the console's files stay public.
    let same_origin = [("origin", own.as_str()), ("sec-fetch-site", "same-origin"), json_type];
    let same = to_console(&s, Method::POST, login_path, &same_origin, Some(&sign_in)).await;
    assert_eq!(same.status, 200, "{}", same.body);
    let bearer = format!("Bearer {}", same.body["token"].as_str().unwrap_or_default());
    let enrollment = json!({ "registrationId": "same-origin", "attestation": { "type": "symmetricKey" } }).to_string();
    let with_session = [("origin", own.as_str()), ("authorization", bearer.as_str()), json_type];
    assert_eq!(to_console(&s, Method::PUT, "/enrollments/same-origin", &with_session, Some(&enrollment)).await.status, 200);
    let sas = s.service_sas();
    let tool = to_console(&s, Method::GET, "/enrollments/same-origin?api-version=2021-10-01", &[("authorization", &sas)], None).await;
    assert_eq!(tool.status, 200, "{}", tool.body);
    let page = to_console(&s, Method::GET, "/", &[("sec-fetch-site", "cross-site")], None).await;
    assert_eq!(page.status, 200, "a link from another site opens the console");
    // The device port is not the console's: its service API keeps answering tools as before.
    let device_port =
        s.send(Method::GET, "/enrollments/same-origin?api-version=2021-10-01", Some(&sas), &[("origin", "https://evil.example")], None);
    assert_eq!(device_port.await.status, 200);
}
