//! Allocation across hubs (§7.2), custom allocation webhooks (§6), re-provisioning (§7.3), initial twins
//! (§7.4), concurrent registrations (409203), key rolling and decision traces.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::TestService;
use dps_service::config::Overrides;
use http_body_util::{BodyExt, Full};
use reqwest::Method;
use serde_json::{json, Value};

async fn link(s: &TestService, host: &str, weight: u32, region: Option<&str>) {
    let a = s
        .service(
            Method::PUT,
            &format!("/linkedHubs/{host}"),
            Some(json!({ "hostName": host, "allocationWeight": weight, "region": region })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
}

async fn group_key(s: &TestService, id: &str, extra: Value) -> String {
    let mut doc = json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let a = s.service(Method::PUT, &format!("/enrollmentGroups/{id}"), Some(doc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned()
}

async fn hub_of(s: &TestService, id: &str, key: &str) -> String {
    let done = s.provision(id, key).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    done.body["registrationState"]["assignedHub"].as_str().unwrap_or_default().to_owned()
}

/// §7.2 `hashed`: shares follow weights 1:2:3; repeat registrations stay; a new hub takes only its share.
#[tokio::test]
async fn weighted_distribution_is_stable() {
    let s = TestService::start().await;
    s.service(Method::DELETE, "/linkedHubs/local-hub.dps.local", None).await;
    for (h, w) in [("hub-1.example", 1), ("hub-2.example", 2), ("hub-3.example", 3)] {
        link(&s, h, w, None).await;
    }
    let key = group_key(&s, "fleet", json!({})).await;
    let ids: Vec<String> = (0..300).map(|i| format!("fleet-{i:03}")).collect();
    let mut first = HashMap::new();
    for id in &ids {
        first.insert(id.clone(), hub_of(&s, id, &dps_crypto::derive_device_key(&key, id).expect("derives the device key")).await);
    }
    for (h, w) in [("hub-1.example", 1.0), ("hub-2.example", 2.0), ("hub-3.example", 3.0)] {
        let share = first.values().filter(|v| v.as_str() == h).count() as f64 / ids.len() as f64;
        assert!((share - w / 6.0).abs() < 0.08, "{h}: {share}");
    }
    for id in ids.iter().take(60) {
        assert_eq!(
            hub_of(&s, id, &dps_crypto::derive_device_key(&key, id).expect("derives the device key")).await,
            first[id],
            "{id} moved"
        );
    }
    link(&s, "hub-4.example", 2, None).await;
    let mut moved = 0;
    for id in ids.iter().take(120) {
        let now = hub_of(&s, id, &dps_crypto::derive_device_key(&key, id).expect("derives the device key")).await;
        if now != first[id] {
            assert_eq!(now, "hub-4.example", "{id} moved elsewhere than the new hub");
            moved += 1;
        }
    }
    assert!(moved > 0, "the new hub took no device");
    let trace = s.service(Method::GET, "/registrations/fleet-000/trace", None).await;
    assert_eq!(trace.body["trace"]["allocation"]["policy"], "hashed", "{}", trace.body);
    assert_eq!(trace.body["trace"]["allocation"]["candidates"].as_array().map(Vec::len), Some(4));
}

/// §7.2 `static` and `geoLatency` from two source networks.
#[tokio::test]
async fn static_and_lowest_latency() {
    let extra = Overrides {
        service_region: Some("lab".into()),
        network_regions: Some(dps_service::config::parse_network_regions("127.0.0.2/32=eu,127.0.0.3/32=us").unwrap_or_default()),
        region_latency: Some(dps_service::config::parse_region_latency("eu:us=90,lab:eu=20,lab:us=60").unwrap_or_default()),
        ..Default::default()
    };
    let s = TestService::start_with(extra).await;
    link(&s, "eu.hub.example", 1, Some("eu")).await;
    link(&s, "us.hub.example", 1, Some("us")).await;
    let key = s.enroll("pinned", json!({ "allocationPolicy": "static", "iotHubs": ["us.hub.example"] })).await;
    assert_eq!(hub_of(&s, "pinned", &key).await, "us.hub.example");

    let gkey = group_key(&s, "geo", json!({ "allocationPolicy": "geoLatency", "iotHubs": ["eu.hub.example", "us.hub.example"] })).await;
    for (ip, expected) in [("127.0.0.2", "eu.hub.example"), ("127.0.0.3", "us.hub.example")] {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(common::tls_client_config(&s.ca_pem))
            .local_address(ip.parse::<std::net::IpAddr>().ok())
            .build()
            .expect("builds");
        for n in 0..5 {
            let id = format!("geo-{ip}-{n}");
            let dk = dps_crypto::derive_device_key(&gkey, &id).expect("derives the device key");
            let sas = s.device_sas(&id, &dk, s.now() + 600);
            let base = format!("{}/{}/registrations/{id}", s.base, s.scope);
            let r: Value = http
                .put(format!("{base}/register"))
                .header("authorization", &sas)
                .json(&json!({}))
                .send()
                .await
                .expect("sends")
                .json()
                .await
                .expect("reads JSON");
            let op = r["operationId"].as_str().unwrap_or_default().to_owned();
            let done = s.poll_done(&id, &op, &sas).await;
            assert_eq!(done.body["registrationState"]["assignedHub"], expected, "{ip}: {}", done.body);
        }
    }
    let t = s.service(Method::GET, "/registrations/geo-127.0.0.3-0/trace", None).await;
    assert_eq!(t.body["trace"]["allocation"]["deviceRegion"], "us", "{}", t.body);
    assert_eq!(t.body["trace"]["allocation"]["candidates"][1]["latencyMs"], 90, "{}", t.body);
}

/// A scripted custom-allocation webhook (§6): answers in turn, records what it received.
#[derive(Clone, Default)]
struct Webhook {
    answers: Arc<Mutex<Vec<(u16, Value, Duration)>>>,
    received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("local addr");
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let me = me.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            me.received
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                            let next = {
                                let mut a = me.answers.lock().unwrap_or_else(|p| p.into_inner());
                                if a.len() > 1 {
                                    a.remove(0)
                                } else {
                                    a.first().cloned().unwrap_or((500, Value::Null, Duration::ZERO))
                                }
                            };
                            tokio::time::sleep(next.2).await;
                            let mut r = hyper::Response::new(Full::new(Bytes::from(next.1.to_string())));
                            *r.status_mut() = hyper::StatusCode::from_u16(next.0).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tcp), svc).await;
                });
            }
        });
        addr
    }

    fn script(&self, answers: Vec<(u16, Value, Duration)>) {
        *self.answers.lock().unwrap_or_else(|p| p.into_inner()) = answers;
    }
}

fn fast_webhooks() -> Overrides {
    Overrides {
        webhook_timeout_secs: Some(1),
        webhook_retries: Some(2),
        webhook_retry_initial_ms: Some(50),
        webhook_retry_increment_ms: Some(50),
        ..Default::default()
    }
}

/// §6: request shape, hub + twin + payload honoured, and every documented failure.
#[tokio::test]
async fn custom_allocation_webhook() {
    let s = TestService::start_with(fast_webhooks()).await;
    link(&s, "a.hub.example", 1, None).await;
    link(&s, "b.hub.example", 1, None).await;
    let hook = Webhook::default();
    let addr = hook.start().await;
    let def = json!({ "webhookUrl": format!("http://{addr}/api/allocate?code=secret"), "apiVersion": "2021-10-01" });
    let key = group_key(
        &s,
        "custom",
        json!({ "allocationPolicy": "custom", "customAllocationDefinition": def, "iotHubs": ["a.hub.example", "b.hub.example"] }),
    )
    .await;
    let dk = |id: &str| dps_crypto::derive_device_key(&key, id).expect("derives the device key");

    hook.script(vec![(200, json!({ "iotHubHostName": "b.hub.example", "initialTwin": { "tags": { "line": 7 }, "properties": { "desired": { "rate": 5 } } }, "payload": { "hello": "device" } }), Duration::ZERO)]);
    let sas = s.device_sas("cust-1", &dk("cust-1"), s.now() + 600);
    let a = s.register("cust-1", &sas, r#"{"registrationId":"cust-1","payload":{"model":"t-100"}}"#).await;
    let done = s.poll_done("cust-1", a.body["operationId"].as_str().unwrap_or_default(), &sas).await;
    assert_eq!(done.body["registrationState"]["assignedHub"], "b.hub.example", "{}", done.body);
    assert_eq!(done.body["registrationState"]["payload"], json!({ "hello": "device" }));
    let req = hook.received.lock().unwrap_or_else(|p| p.into_inner()).last().cloned().unwrap_or_default();
    assert_eq!(req["deviceRuntimeContext"]["registrationId"], "cust-1", "{req}");
    assert_eq!(req["deviceRuntimeContext"]["payload"], json!({ "model": "t-100" }));
    assert_eq!(req["deviceRuntimeContext"]["symmetricKey"], json!({}));
    assert_eq!(req["linkedHubs"], json!(["a.hub.example", "b.hub.example"]));
    assert_eq!(req["enrollmentGroup"]["enrollmentGroupId"], "custom");
    assert_eq!(req["enrollmentGroup"]["attestation"], json!({ "type": "symmetricKey" }), "secrets must not reach the webhook");
    let ids = s.service(Method::GET, "/linkedHubs/b.hub.example/devices", None).await;
    assert_eq!(ids.body[0]["initialTwin"]["tags"]["line"], 7, "{}", ids.body);
    let t = s.service(Method::GET, "/registrations/cust-1/trace", None).await;
    assert_eq!(t.body["trace"]["allocation"]["webhook"], format!("http://{addr}/api/allocate"), "the function key stays out of traces");

    // A second registration tells the webhook where the device is.
    hook.script(vec![(200, json!({ "iotHubHostName": "b.hub.example" }), Duration::ZERO)]);
    s.provision("cust-1", &dk("cust-1")).await;
    let req = hook.received.lock().unwrap_or_else(|p| p.into_inner()).last().cloned().unwrap_or_default();
    assert_eq!(req["deviceRuntimeContext"]["currentIotHubHostName"], "b.hub.example", "{req}");

    let cases = [
        (vec![(401, json!({}), Duration::ZERO)], 400209),
        (vec![(200, json!({ "iotHubHostName": "" }), Duration::ZERO)], 400208),
        (vec![(200, json!({ "IotHubHostname": null }), Duration::ZERO)], 400208),
        (vec![(500, json!({}), Duration::ZERO)], 400207),
        (vec![(200, json!({ "iotHubHostName": "elsewhere.example" }), Duration::ZERO)], 400207),
        (vec![(200, json!({}), Duration::from_secs(3))], 400207),
    ];
    for (i, (answers, code)) in cases.into_iter().enumerate() {
        hook.script(answers);
        let id = format!("cust-fail-{i}");
        let done = s.provision(&id, &dk(&id)).await;
        assert_eq!(done.body["status"], "failed", "case {i}: {}", done.body);
        assert_eq!(done.body["registrationState"]["errorCode"], code, "case {i}: {}", done.body);
    }
    // ≥ 429 is retried: two refusals, then an answer.
    hook.script(vec![
        (429, json!({}), Duration::ZERO),
        (503, json!({}), Duration::ZERO),
        (200, json!({ "iothubhostname": "a.hub.example" }), Duration::ZERO),
    ]);
    let done = s.provision("cust-retry", &dk("cust-retry")).await;
    assert_eq!(done.body["registrationState"]["assignedHub"], "a.hub.example", "{}", done.body);
    let t = s.service(Method::GET, "/registrations/cust-retry/trace", None).await;
    assert_eq!(t.body["trace"]["allocation"]["attempts"].as_array().map(Vec::len), Some(3), "{}", t.body);

    // While a slow webhook decides, a second register of the same device is refused with 409203.
    hook.script(vec![(200, json!({ "iotHubHostName": "a.hub.example" }), Duration::from_millis(700))]);
    let sas = s.device_sas("cust-slow", &dk("cust-slow"), s.now() + 600);
    let first = s.register("cust-slow", &sas, "{}").await;
    assert_eq!(first.status, 202);
    let second = s.register("cust-slow", &sas, "{}").await;
    TestService::assert_error(&second, 409, 409203);
    let done = s.poll_done("cust-slow", first.body["operationId"].as_str().unwrap_or_default(), &sas).await;
    assert_eq!(done.body["status"], "assigned");
    assert_eq!(s.register("cust-slow", &sas, "{}").await.status, 202, "free again once finished");
}

/// §6.1: `customAllocationDefinition.apiVersion` must be an api-version of 2018-09-01-preview or later, and the
/// webhook receives the enrollment in that version's schema (members of later versions, preview members and
/// members unknown to the schema left out).
#[tokio::test]
async fn webhook_api_version_is_checked_and_shapes_the_request() {
    let s = TestService::start_with(fast_webhooks()).await;
    link(&s, "a.hub.example", 1, None).await;
    let hook = Webhook::default();
    let addr = hook.start().await;
    let url = format!("http://{addr}/api/allocate");
    for bad in ["2018-04-01", "latest", ""] {
        let doc = json!({ "registrationId": "hooked", "attestation": { "type": "symmetricKey" }, "allocationPolicy": "custom",
            "customAllocationDefinition": { "webhookUrl": url, "apiVersion": bad } });
        let a = s.service(Method::PUT, "/enrollments/hooked", Some(doc)).await;
        TestService::assert_error(&a, 400, 400004);
        assert!(a.body["message"].as_str().is_some_and(|m| m.contains("apiVersion")), "{}", a.body);
    }
    for (version, has_info) in [("2019-03-31", false), ("2021-10-01", true)] {
        let id = format!("hooked-{}", &version[..4]);
        let key = s
            .enroll(
                &id,
                json!({ "allocationPolicy": "custom", "optionalDeviceInformation": { "model": "t" },
                "customAllocationDefinition": { "webhookUrl": url, "apiVersion": version } }),
            )
            .await;
        hook.script(vec![(200, json!({ "iotHubHostName": "a.hub.example" }), Duration::ZERO)]);
        assert_eq!(hub_of(&s, &id, &key).await, "a.hub.example");
        let req = hook.received.lock().unwrap_or_else(|p| p.into_inner()).last().cloned().unwrap_or_default();
        let e = &req["individualEnrollment"];
        assert_eq!(e["registrationId"], id.as_str(), "{req}");
        assert_eq!(e.get("optionalDeviceInformation").is_some(), has_info, "{version}: {e}");
        assert!(e.get("registrationState").is_none(), "{e}");
    }
}

/// §7.3: each re-provisioning policy, with its substatus, the old identity removed, the twin migrated or reset.
#[tokio::test]
async fn reprovisioning_policies() {
    let s = TestService::start().await;
    for h in ["a.hub.example", "b.hub.example"] {
        link(&s, h, 1, None).await;
    }
    let devices = |hub: &'static str| {
        let s = &s;
        async move { s.service(Method::GET, &format!("/linkedHubs/{hub}/devices"), None).await.body }
    };
    let twin = json!({ "tags": { "site": "one" } });
    for (id, policy, substatus, old_kept) in [
        ("migrate", json!({ "updateHubAssignment": true, "migrateDeviceData": true }), "deviceDataMigrated", false),
        ("reset", json!({ "updateHubAssignment": true, "migrateDeviceData": false }), "deviceDataReset", false),
        ("never", json!({ "updateHubAssignment": false, "migrateDeviceData": true }), "initialAssignment", true),
    ] {
        let key = s.enroll(id, json!({ "iotHubs": ["a.hub.example"], "reprovisionPolicy": policy, "initialTwin": twin })).await;
        assert_eq!(hub_of(&s, id, &key).await, "a.hub.example");
        let mut e = s.service(Method::GET, &format!("/enrollments/{id}"), None).await.body;
        e["iotHubs"] = json!(["b.hub.example"]);
        e["initialTwin"] = json!({ "tags": { "site": "two" } });
        assert_eq!(s.service(Method::PUT, &format!("/enrollments/{id}"), Some(e)).await.status, 200);
        let done = s.provision(id, &key).await;
        let r = &done.body["registrationState"];
        assert_eq!(r["substatus"], substatus, "{id}: {r}");
        let expected_hub = if old_kept { "a.hub.example" } else { "b.hub.example" };
        assert_eq!(r["assignedHub"], expected_hub, "{id}");
        let on_a = devices("a.hub.example").await.as_array().into_iter().flatten().any(|d| d["deviceId"] == id);
        assert_eq!(on_a, old_kept, "{id}: identity on the old hub");
        if !old_kept {
            let on_b = devices("b.hub.example").await;
            let dev = on_b.as_array().into_iter().flatten().find(|d| d["deviceId"] == id).cloned().unwrap_or_default();
            let site = if id == "migrate" { "one" } else { "two" };
            assert_eq!(dev["initialTwin"]["tags"]["site"], site, "{id}: {dev}");
        }
        let t = s.service(Method::GET, &format!("/registrations/{id}/trace"), None).await;
        assert!(t.body["trace"]["why"].as_str().is_some_and(|w| !w.is_empty()), "{}", t.body);
    }
    // Back to the first hub with migration: reprovisionedToInitialAssignment.
    let key = s.enroll("returns", json!({ "iotHubs": ["a.hub.example"] })).await;
    hub_of(&s, "returns", &key).await;
    for (hub, substatus) in [("b.hub.example", "deviceDataMigrated"), ("a.hub.example", "reprovisionedToInitialAssignment")] {
        let mut e = s.service(Method::GET, "/enrollments/returns", None).await.body;
        e["iotHubs"] = json!([hub]);
        s.service(Method::PUT, "/enrollments/returns", Some(e)).await;
        assert_eq!(s.provision("returns", &key).await.body["registrationState"]["substatus"], substatus);
    }
}

/// Registers over HTTPS with the given device api-version and waits for the result's hub.
async fn hub_with_api(s: &TestService, id: &str, key: &str, api_version: &str) -> String {
    let sas = s.device_sas(id, key, s.now() + 3600);
    let path = format!("/{}/registrations/{id}/register?api-version={api_version}", s.scope);
    let a = s.send(Method::PUT, &path, Some(&sas), &[], Some(format!("{{\"registrationId\":\"{id}\"}}").into_bytes())).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let done = s.poll_done(id, a.body["operationId"].as_str().unwrap_or_default(), &sas).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    done.body["registrationState"]["assignedHub"].as_str().unwrap_or_default().to_owned()
}

/// §7.3 backward compatibility: an enrollment written through the service API at ≤ 2018-04-01 gets no
/// re-provisioning policy (the member did not exist), and a device speaking ≤ 2018-04-01 whose enrollment has no
/// policy keeps its hub (the sticky behaviour before re-provisioning); a current device of the same enrollment
/// follows the default (re-provision and migrate); a policy — explicit, or the default a current write fills
/// in — applies to every device.
#[tokio::test]
async fn legacy_devices_keep_their_hub_without_a_policy() {
    let s = TestService::start().await;
    for h in ["a.hub.example", "b.hub.example"] {
        link(&s, h, 1, None).await;
    }
    let sas = s.service_sas();
    let put = |id: &'static str, hub: &'static str, api: &'static str| {
        let (s, sas) = (&s, &sas);
        async move {
            let doc = json!({ "registrationId": id, "attestation": { "type": "symmetricKey", "symmetricKey": {
                "primaryKey": "cHJpbWFyeS1rZXktb2YtdGhlLWRldmljZS0wMTIzNDU=", "secondaryKey": "c2Vjb25kYXJ5LWtleS1vZi10aGUtZGV2aWNlLTAxMjM=" } },
                "iotHubs": [hub] });
            let a = s
                .send(Method::PUT, &format!("/enrollments/{id}?api-version={api}"), Some(sas), &[], Some(doc.to_string().into_bytes()))
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            a.body
        }
    };
    let key = "cHJpbWFyeS1rZXktb2YtdGhlLWRldmljZS0wMTIzNDU=";
    let written = put("legacy", "a.hub.example", "2018-04-01").await;
    assert!(written.get("reprovisionPolicy").is_none(), "a 2018-04-01 write fills in no policy: {written}");
    assert_eq!(hub_with_api(&s, "legacy", key, "2018-04-01").await, "a.hub.example");
    put("legacy", "b.hub.example", "2018-04-01").await;
    assert_eq!(hub_with_api(&s, "legacy", key, "2018-04-01").await, "a.hub.example", "sticky: the legacy device keeps its hub");
    let t = s.service(Method::GET, "/registrations/legacy/trace", None).await;
    assert!(t.body["trace"]["reprovision"].as_str().is_some_and(|w| w.contains("2018-04-01")), "the trace says why: {}", t.body);
    assert_eq!(hub_with_api(&s, "legacy", key, "2017-11-15").await, "a.hub.example", "older versions are legacy too");
    assert_eq!(hub_with_api(&s, "legacy", key, "2019-03-31").await, "b.hub.example", "a current SDK is re-provisioned");

    let written = put("current", "a.hub.example", "2021-10-01").await;
    assert_eq!(written["reprovisionPolicy"], json!({ "updateHubAssignment": true, "migrateDeviceData": true }), "{written}");
    assert_eq!(hub_with_api(&s, "current", key, "2018-04-01").await, "a.hub.example");
    put("current", "b.hub.example", "2021-10-01").await;
    assert_eq!(hub_with_api(&s, "current", key, "2018-04-01").await, "b.hub.example", "a policy applies to every device");
}

/// §7.3 and the hub connectors: a hub that stays unavailable keeps the operation `assigning` through the
/// service's retries (`hub_retries`), then the registration fails with 503001, the record says so and the trace
/// lists every failed attempt.
#[tokio::test]
async fn an_unavailable_hub_fails_the_registration_only_after_the_retries() {
    let s = TestService::start_with(Overrides { hub_retries: Some(1), ..Default::default() }).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("and then").port();
    let cs = format!(
        "HostName=down.azure-devices.net;SharedAccessKeyName=iothubowner;SharedAccessKey=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=;GatewayHostName=127.0.0.1:{closed}"
    );
    let hub =
        json!({ "hostName": "down.azure-devices.net", "connector": "azureIotHub", "connectionString": cs, "applyAllocationPolicy": false });
    assert_eq!(s.service(Method::PUT, "/linkedHubs/down.azure-devices.net", Some(hub)).await.status, 200);
    let key = s.enroll("unlucky", json!({ "iotHubs": ["down.azure-devices.net"] })).await;
    let sas = s.device_sas("unlucky", &key, s.now() + 600);
    let a = s.register("unlucky", &sas, "{}").await;
    assert_eq!(a.status, 202, "{}", a.body);
    let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
    let first = s.poll("unlucky", &op, &sas).await;
    assert_eq!((first.status, &first.body["status"]), (202, &json!("assigning")), "still assigning while the hub is retried");
    let mut done = first;
    for _ in 0..200 {
        done = s.poll("unlucky", &op, &sas).await;
        if done.status != 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 503001, "{}", done.body);
    let record = s.service(Method::GET, "/registrations/unlucky", None).await;
    assert_eq!(record.body["status"], "failed", "{}", record.body);
    assert_eq!(record.body["errorCode"], 503001, "{}", record.body);
    let t = s.service(Method::GET, "/registrations/unlucky/trace", None).await;
    assert_eq!(t.body["trace"]["connector"]["failedAttempts"].as_array().map(Vec::len), Some(2), "one per round: {}", t.body);
}

/// Key rolling: the old key stops at once, the new one provisions, the hub identity gets it.
#[tokio::test]
async fn key_rolling() {
    let s = TestService::start().await;
    let old = s.enroll("roll", json!({})).await;
    hub_of(&s, "roll", &old).await;
    let renewed = s.service(Method::POST, "/enrollments/roll/renewKey", Some(json!({ "keyType": "primary" }))).await;
    let new = renewed.body["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    assert!(!new.is_empty() && new != old, "{}", renewed.body);
    TestService::assert_error(&s.register("roll", &s.device_sas("roll", &old, s.now() + 600), "{}").await, 401, 401002);
    hub_of(&s, "roll", &new).await;
    let store = &s.running.as_ref().unwrap_or_else(|| panic!("running")).store;
    let keys = store.identity_keys("local-hub.dps.local", "roll").await.expect("identity keys").unwrap_or_else(|| panic!("no identity"));
    assert_eq!(keys.0.expose(), new);

    let gkey = group_key(&s, "roll-g", json!({})).await;
    hub_of(&s, "roll-g-1", &dps_crypto::derive_device_key(&gkey, "roll-g-1").expect("derives the device key")).await;
    let r = s.service(Method::POST, "/enrollmentGroups/roll-g/renewKey", Some(json!({ "keyType": "both" }))).await;
    let g2 = r.body["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    let old_dk = dps_crypto::derive_device_key(&gkey, "roll-g-1").expect("derives the device key");
    TestService::assert_error(&s.register("roll-g-1", &s.device_sas("roll-g-1", &old_dk, s.now() + 600), "{}").await, 401, 401002);
    hub_of(&s, "roll-g-1", &dps_crypto::derive_device_key(&g2, "roll-g-1").expect("derives the device key")).await;
    TestService::assert_error(
        &s.service(Method::POST, "/enrollments/roll/renewKey", Some(json!({ "keyType": "tertiary" }))).await,
        400,
        400004,
    );
}

/// `--measure-hub-latency`: a hub whose endpoint answers gets a measured round-trip time, used for devices
/// in the service's own region.
#[tokio::test]
async fn measured_hub_latency_decides_for_local_devices() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
    let port = listener.local_addr().expect("local addr").port();
    tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let reachable = format!("127.0.0.1:{port}");
    let extra = Overrides {
        service_region: Some("lab".into()),
        measure_hub_latency: Some(true),
        default_latency_ms: Some(500),
        ..Default::default()
    };
    let mut s = TestService::start_with(extra).await;
    s.service(Method::DELETE, "/linkedHubs/local-hub.dps.local", None).await;
    link(&s, &reachable, 1, Some("remote")).await;
    link(&s, "unreachable.hub.invalid", 1, Some("remote")).await;
    // The measurement runs when the service starts: restart so it sees both hubs.
    s.restart().await;
    let key = s.enroll("near", json!({ "allocationPolicy": "geoLatency" })).await;
    let mut chosen = String::new();
    for _ in 0..50 {
        let done = s.provision("near", &key).await;
        chosen = done.body["registrationState"]["assignedHub"].as_str().unwrap_or_default().to_owned();
        if chosen == reachable {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(chosen, reachable, "the measured hub should beat the 500 ms default");
    let t = s.service(Method::GET, "/registrations/near/trace", None).await;
    let c = t.body["trace"]["allocation"]["candidates"].as_array().cloned().unwrap_or_default();
    assert_eq!(c[0]["latencySource"], "measured", "{}", t.body);
    assert_eq!(c[1]["latencyMs"], 500, "{}", t.body);
}

/// A webhook's answer reaches the device's error and the decision trace bounded: a huge hub name is cut with
/// a marker (`dps_proto::truncate_for_display`), not stored whole.
#[tokio::test]
async fn a_webhooks_huge_answer_is_truncated_in_the_error_and_the_trace() {
    let s = TestService::start_with(fast_webhooks()).await;
    link(&s, "a.hub.example", 1, None).await;
    let hook = Webhook::default();
    let addr = hook.start().await;
    let def = json!({ "webhookUrl": format!("http://{addr}/api/allocate"), "apiVersion": "2021-10-01" });
    let key = group_key(&s, "custom-huge", json!({ "allocationPolicy": "custom", "customAllocationDefinition": def })).await;
    hook.script(vec![(200, json!({ "iotHubHostName": "h".repeat(20_000) }), Duration::ZERO)]);
    let done = s.provision("cust-huge", &dps_crypto::derive_device_key(&key, "cust-huge").expect("derives the device key")).await;
    assert_eq!(done.body["registrationState"]["errorCode"], 400207, "{}", done.body);
    let t = s.service(Method::GET, "/registrations/cust-huge/trace", None).await;
    let message = t.body["trace"]["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("more bytes]") && message.len() < 1000, "{} bytes: {}", message.len(), t.body);
    let device_message = done.body["registrationState"]["errorMessage"].as_str().unwrap_or_default();
    assert!(device_message.len() < 1000, "{} bytes", device_message.len());
}
