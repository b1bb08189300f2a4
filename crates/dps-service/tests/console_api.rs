//! What the console needs from the service (issue: console §1, §4, §5): the console port serving the UI's
//! files and the service API on one origin (not the device API), the CA download, search and totals on
//! queries, the live log's `after` cursor, devices per hub, connector status, policies, and the in-process
//! API the desktop shell uses.

mod common;

use common::TestService;
use dps_proto::{AccessPolicyInfo, HubAllocation, HubStatus, LocalRequest, LogRecord};
use reqwest::Method;
use serde_json::{json, Value};

async fn get_console(s: &TestService, path: &str, auth: Option<&str>) -> reqwest::Response {
    let mut rb = s.http.get(format!("{}{path}", s.console_base));
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn password(s: &TestService) -> String {
    std::fs::read_to_string(s.dir.path().join("initial-admin-password")).expect("reads the file").trim().to_owned()
}

#[tokio::test]
async fn the_console_port_serves_the_page_and_the_service_api_but_not_the_device_api() {
    let s = TestService::start().await;
    let page = get_console(&s, "/", None).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-cache"));
    let html = page.text().await.expect("reads the body");
    assert!(html.contains("DPS Console"), "{html}");

    // Same origin: sign in, then the service API with the session.
    let login =
        s.http.post(format!("{}/console/login", s.console_base)).json(&json!({ "password": password(&s) })).send().await.expect("sends");
    assert_eq!(login.status(), 200);
    let token = login.json::<Value>().await.expect("reads JSON")["token"].as_str().unwrap_or_default().to_owned();
    let bearer = format!("Bearer {token}");
    let info = get_console(&s, "/service/info?api-version=2021-10-01", Some(&bearer)).await;
    assert_eq!(info.status(), 200);
    let info: dps_proto::EndpointInfo = info.json().await.expect("reads JSON");
    assert_eq!(info.ports.console, s.console_base.rsplit(':').next().and_then(|p| p.parse().ok()));
    assert_eq!(get_console(&s, "/linkedHubs", None).await.status(), 401);

    // The device API stays on the HTTPS port.
    let register = s
        .http
        .put(format!("{}/{}/registrations/dev-1/register?api-version=2019-03-31", s.console_base, s.scope))
        .header("content-type", "application/json")
        .body("{\"registrationId\":\"dev-1\"}")
        .send()
        .await
        .expect("sends");
    assert_eq!(register.status(), 404);
    assert_eq!(register.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()), Some("404204"));

    // The CA, without authorization, on both ports; it is the CA the client trusts.
    for base in [&s.base, &s.console_base] {
        let ca = s.http.get(format!("{base}/service/ca.pem")).send().await.expect("sends");
        assert_eq!(ca.status(), 200);
        assert_eq!(ca.bytes().await.expect("reads the body").to_vec(), s.ca_pem);
    }
}

#[tokio::test]
async fn queries_search_ids_and_count_matches() {
    let s = TestService::start().await;
    for i in 0..12 {
        let id = if i % 4 == 0 { format!("press-{i:02}") } else { format!("oven-{i:02}") };
        s.enroll(&id, json!({})).await;
    }
    let sas = s.service_sas();
    let page = |search: &'static str, continuation: Option<String>| {
        let sas = sas.clone();
        let s = &s;
        async move {
            let mut headers = vec![("x-ms-max-item-count", "2".to_owned())];
            if let Some(c) = continuation {
                headers.push(("x-ms-continuation", c));
            }
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            s.send(
                Method::POST,
                &format!("/enrollments/query?api-version=2021-10-01&search={search}"),
                Some(&sas),
                &h,
                Some(b"{\"query\":\"*\"}".to_vec()),
            )
            .await
        }
    };
    let first = page("PRESS", None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.headers.get("x-dps-total-count").and_then(|v| v.to_str().ok()), Some("3"));
    let ids: Vec<&str> = first.body.as_array().map(|a| a.iter().filter_map(|e| e["registrationId"].as_str()).collect()).unwrap_or_default();
    assert_eq!(ids, ["press-00", "press-04"]);
    let cont = first.headers.get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let second = page("PRESS", cont).await;
    assert_eq!(second.body.as_array().map(Vec::len), Some(1));
    assert!(second.headers.get("x-ms-continuation").is_none());
    let everything = page("", None).await;
    assert_eq!(everything.headers.get("x-dps-total-count").and_then(|v| v.to_str().ok()), Some("12"));
}

#[tokio::test]
async fn allocation_hub_status_policies_and_the_log_cursor() {
    use tracing_subscriber::layer::SubscriberExt;
    // As `dps serve` sets it up: the level filter in front of the live log.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(tracing_subscriber::EnvFilter::new("info")).with(dps_service::diagnostics::LogHub::layer()),
    );
    let s = TestService::start().await;
    let key = s.enroll("counted-1", json!({})).await;
    assert_eq!(s.provision("counted-1", &key).await.body["status"], "assigned");

    let a = s.service(Method::GET, "/diagnostics/allocation", None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let hubs: Vec<HubAllocation> = serde_json::from_value(a.body).unwrap_or_default();
    assert_eq!(hubs.iter().map(|h| (h.host_name.as_str(), h.devices)).collect::<Vec<_>>(), [("local-hub.dps.local", 1)]);

    let st = s.service(Method::GET, "/linkedHubs/local-hub.dps.local/status", None).await;
    let st: HubStatus = serde_json::from_value(st.body).unwrap_or_default();
    assert!(st.reachable, "{st:?}");
    // A broker nobody listens on: unreachable, with the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(1);
    let put = s
        .service(
            Method::PUT,
            "/linkedHubs/broker.test",
            Some(json!({ "hostName": "broker.test", "allocationWeight": 1, "connector": "mosquitto", "connectionString": format!("mqtt://admin:pw@127.0.0.1:{closed}") })),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let st = s.service(Method::GET, "/linkedHubs/broker.test/status", None).await;
    let st: HubStatus = serde_json::from_value(st.body).unwrap_or_default();
    assert!(!st.reachable && st.message.contains(&closed.to_string()), "{st:?}");
    TestService::assert_error(&s.service(Method::GET, "/linkedHubs/nope.test/status", None).await, 404, 404204);

    let p = s.service(Method::GET, "/service/policies", None).await;
    let policies: Vec<AccessPolicyInfo> = serde_json::from_value(p.body).unwrap_or_default();
    let owner = policies.iter().find(|p| p.key_name == "provisioningserviceowner").unwrap_or_else(|| panic!("{policies:?}"));
    assert_eq!(owner.rights.len(), 5);
    assert!(owner.connection_string.ends_with(&format!("SharedAccessKey={}", s.owner_key)));

    let logs = s.service(Method::GET, "/diagnostics/logs?limit=2000", None).await;
    let logs: Vec<LogRecord> = serde_json::from_value(logs.body).unwrap_or_default();
    let last = logs.last().map(|l| l.seq).unwrap_or_default();
    assert!(logs.windows(2).all(|w| w[0].seq < w[1].seq));
    let key2 = s.enroll("counted-2", json!({ "iotHubs": ["local-hub.dps.local"] })).await;
    s.provision("counted-2", &key2).await;
    let newer = s.service(Method::GET, &format!("/diagnostics/logs?after={last}&registrationId=counted-2"), None).await;
    let newer: Vec<LogRecord> = serde_json::from_value(newer.body).unwrap_or_default();
    assert!(!newer.is_empty() && newer.iter().all(|l| l.seq > last), "{newer:?}");
    TestService::assert_error(&s.service(Method::GET, "/diagnostics/logs?after=x", None).await, 400, 400004);

    // A device refused at the door is found by its registration id too.
    let wrong = s.device_sas("counted-2", "d3JvbmctLWtleS0tMTIzNDU2Nzg5MDEy", s.now() + 3600);
    assert_eq!(s.register("counted-2", &wrong, "{\"registrationId\":\"counted-2\"}").await.status, 401);
    let refused = s.service(Method::GET, &format!("/diagnostics/logs?after={last}&registrationId=COUNTED-2&q=refused"), None).await;
    let refused: Vec<LogRecord> = serde_json::from_value(refused.body).unwrap_or_default();
    assert!(refused.iter().any(|l| l.fields.get("code").map(String::as_str) == Some("401002")), "{refused:?}");
}

#[tokio::test]
async fn the_in_process_api_is_signed_in_and_survives_a_password_change() {
    let s = TestService::start().await;
    let Some(running) = s.running.as_ref() else { panic!("not running") };
    let local = running.local_api();
    let get = |path: &str| LocalRequest { method: "GET".into(), path: path.into(), ..Default::default() };
    let info = local.send(get("/service/info")).await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert!(info.body.contains(&s.scope));
    let put = local
        .send(LocalRequest {
            method: "PUT".into(),
            path: "/enrollments/from-desktop".into(),
            body: Some(json!({ "registrationId": "from-desktop", "attestation": { "type": "symmetricKey" } }).to_string()),
            ..Default::default()
        })
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let query = local
        .send(LocalRequest {
            method: "POST".into(),
            path: "/enrollments/query".into(),
            query: vec![("search".into(), "DESKTOP".into())],
            headers: vec![("x-ms-max-item-count".into(), "10".into())],
            body: Some("{\"query\":\"*\"}".into()),
        })
        .await;
    assert_eq!(query.header("x-dps-total-count"), Some("1"));
    // Errors keep their DPS shape; the device API is not there.
    let missing = local.send(get("/enrollments/nobody")).await;
    assert_eq!((missing.status, missing.header("x-ms-error-code")), (404, Some("404202")));
    let device = local
        .send(LocalRequest { method: "PUT".into(), path: format!("/{}/registrations/x/register", s.scope), ..Default::default() })
        .await;
    assert_eq!(device.status, 404);
    // A password change ends every session; the shell signs in again by itself.
    let body = json!({ "currentPassword": password(&s), "password": "a long enough password" });
    let change = s.service(Method::PUT, "/admin/password", Some(body)).await;
    assert_eq!(change.status, 204);
    assert_eq!(local.send(get("/linkedHubs")).await.status, 200);
}

#[tokio::test]
async fn reprovision_runs_the_registration_again_under_the_current_enrollment() {
    let s = TestService::start().await;
    let hub = |h: &'static str| json!({ "hostName": h, "allocationWeight": 1, "applyAllocationPolicy": true, "connector": "builtin" });
    assert_eq!(s.service(Method::PUT, "/linkedHubs/hub-b.test", Some(hub("hub-b.test"))).await.status, 200);
    let key = s.enroll("mover", json!({ "iotHubs": ["local-hub.dps.local"] })).await;
    assert_eq!(s.provision("mover", &key).await.body["registrationState"]["assignedHub"], "local-hub.dps.local");

    // The enrollment now names another hub: re-provisioning moves the device there and removes it from the old one.
    let e = s.service(Method::GET, "/enrollments/mover", None).await.body;
    let mut changed = e.clone();
    changed["iotHubs"] = json!(["hub-b.test"]);
    assert_eq!(s.service(Method::PUT, "/enrollments/mover", Some(changed)).await.status, 200);
    let r = s.service(Method::POST, "/registrations/mover/reprovision", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["registrationState"]["assignedHub"], "hub-b.test");
    assert_eq!(r.body["registrationState"]["substatus"], "deviceDataMigrated");
    assert!(r.body["trace"].is_object(), "{}", r.body);
    let on = |h: &'static str| {
        let s = &s;
        async move {
            let d = s.service(Method::GET, &format!("/linkedHubs/{h}/devices"), None).await.body;
            d.as_array().map(|a| a.iter().any(|x| x["deviceId"] == "mover")).unwrap_or(false)
        }
    };
    assert!(on("hub-b.test").await && !on("local-hub.dps.local").await);
    // The device itself, registering again, is told the new hub.
    assert_eq!(s.provision("mover", &key).await.body["registrationState"]["assignedHub"], "hub-b.test");

    // A policy that keeps the hub keeps it.
    let mut keep = s.service(Method::GET, "/enrollments/mover", None).await.body;
    keep["iotHubs"] = json!(["local-hub.dps.local"]);
    keep["reprovisionPolicy"] = json!({ "updateHubAssignment": false, "migrateDeviceData": true });
    assert_eq!(s.service(Method::PUT, "/enrollments/mover", Some(keep)).await.status, 200);
    let r = s.service(Method::POST, "/registrations/mover/reprovision", None).await;
    assert_eq!(r.body["registrationState"]["assignedHub"], "hub-b.test", "{}", r.body);

    TestService::assert_error(&s.service(Method::POST, "/registrations/nobody/reprovision", None).await, 404, 404201);
    TestService::assert_error(&s.service(Method::GET, "/registrations/mover/reprovision", None).await, 405, 405001);
}
