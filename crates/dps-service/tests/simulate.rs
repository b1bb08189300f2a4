//! Simulated devices from the console (#16 items 1–4): `POST /simulations` starts real device clients through
//! the service's own listeners — every transport — and each device's flow is recorded step by step (connect,
//! TLS, sign-in, register, 202, wait, poll, answer) with secrets masked; faults end in the DPS answer they
//! provoke; step-through holds a device at each gate until continued; bad requests are refused with DPS codes.

mod common;

use std::time::Duration;

use common::TestService;
use reqwest::Method;
use serde_json::{json, Value};

/// Starts a run and waits until every device ended (or 60 s went by); the run's final view.
async fn run(s: &TestService, request: Value) -> Value {
    let started = s.service(Method::POST, "/simulations", Some(request.clone())).await;
    assert_eq!(started.status, 201, "{request}: {}", started.body);
    let id = started.body["id"].as_str().expect("the run has an id").to_owned();
    wait_until(s, &id, |run| {
        run["counts"].as_object().is_some_and(|c| ["waiting", "running", "paused"].iter().all(|k| !c.contains_key(*k)))
    })
    .await
}

async fn wait_until(s: &TestService, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..600 {
        let a = s.service(Method::GET, &format!("/simulations/{id}"), None).await;
        assert_eq!(a.status, 200, "{}", a.body);
        if done(&a.body) {
            return a.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("simulation {id} did not get there in 60 s");
}

async fn device(s: &TestService, run: &str, id: &str) -> Value {
    let a = s.service(Method::GET, &format!("/simulations/{run}/devices/{id}"), None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body
}

fn kinds(device: &Value) -> Vec<String> {
    // A device that took no step yet has no `steps` member.
    let steps = device["steps"].as_array().map(Vec::as_slice).unwrap_or_default();
    steps.iter().map(|s| s["kind"].as_str().unwrap_or("?").to_owned()).collect()
}

#[tokio::test]
async fn devices_of_every_transport_provision_through_the_listeners_and_their_flow_is_recorded() {
    let s = TestService::start().await;
    for transport in ["https", "mqtt", "amqp", "mqttWs", "amqpWs"] {
        let r = run(&s, json!({ "transport": transport, "count": 3, "prefix": format!("{transport}-dev-") })).await;
        assert_eq!(r["counts"], json!({ "assigned": 3 }), "{transport}: {r}");
        assert_eq!(r["target"], "group simulated-devices");
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &format!("{transport}-dev-2")).await;
        assert_eq!(d["state"], "assigned");
        assert!(d["deviceId"].as_str().is_some_and(|id| id.eq_ignore_ascii_case(&format!("{transport}-dev-2"))), "{d}");
        let k = kinds(&d);
        let expected = ["connect", "tls", "register", "accepted", "wait", "poll", "answer"];
        let mut at = k.iter();
        assert!(expected.iter().all(|e| at.any(|x| x == e)), "{transport}: the flow in order {expected:?}, got {k:?}");
        if transport != "https" {
            assert!(k.iter().any(|x| x == "login"), "{transport} signs in: {k:?}");
        }
        let upgraded =
            d["steps"].as_array().is_some_and(|st| st.iter().any(|x| x["title"].as_str().is_some_and(|t| t.starts_with("101 "))));
        assert_eq!(upgraded, transport.ends_with("Ws"), "{transport}: a WebSocket upgrade only over WebSockets: {d}");
        let text = d["steps"].to_string();
        assert!(
            text.contains("sig=•••") && !text.contains("sig=%") && !text.contains("sig=\\u"),
            "{transport}: the SAS signature is masked: {text}"
        );
        // The identity was created in the hub: the registration record says so.
        let record = s.service(Method::GET, &format!("/registrations/{transport}-dev-2"), None).await;
        assert_eq!(record.body["status"], "assigned", "{}", record.body);
    }
    let list = s.service(Method::GET, "/simulations", None).await;
    assert_eq!(list.body.as_array().map(Vec::len), Some(5), "{}", list.body);

    // `?flows=N`: the first N devices with their whole flow, in one answer (a run's transcript).
    let id = list.body[0]["id"].as_str().expect("the newest run").to_owned();
    let with = s.service(Method::GET, &format!("/simulations/{id}?flows=2"), None).await;
    assert_eq!(with.status, 200, "{}", with.body);
    let devices = with.body["devices"].as_array().expect("devices");
    for d in devices.iter().take(2) {
        let own = device(&s, &id, d["registrationId"].as_str().unwrap_or_default()).await;
        assert_eq!(d["steps"], own["steps"], "the device's flow as its own route answers it");
    }
    assert_eq!(devices.get(2).map(kinds), Some(vec![]), "the third device without its steps: {}", with.body);
    for bad in ["101", "x", "-1"] {
        let a = s.service(Method::GET, &format!("/simulations/{id}?flows={bad}"), None).await;
        TestService::assert_error(&a, 400, 400004);
    }
}

#[tokio::test]
async fn each_fault_ends_in_the_answer_it_provokes() {
    let s = TestService::start().await;
    for fault in ["wrongKey", "unknownId", "expiredToken"] {
        let r = run(&s, json!({ "count": 2, "fault": fault, "transport": "mqtt" })).await;
        assert_eq!(r["counts"], json!({ "refused": 2 }), "{fault}: {r}");
        for d in r["devices"].as_array().expect("devices") {
            assert_eq!(d["errorCode"], 401002, "{fault}: {d}");
        }
        let one = r["devices"][0]["registrationId"].as_str().expect("id").to_owned();
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &one).await;
        assert_eq!(kinds(&d).last().map(String::as_str), Some("refused"), "{fault}: {d}");
    }
    // Another group's key: the service finds the group whose derived key verifies the token, so the device
    // lands in that group — not in the one the trainer meant.
    let r = run(&s, json!({ "count": 1, "fault": "otherGroupKey", "prefix": "stray-" })).await;
    assert_eq!(r["counts"], json!({ "assigned": 1 }), "{r}");
    let trace = s.service(Method::GET, "/registrations/stray-1/trace", None).await;
    assert!(trace.body.to_string().contains("simulated-devices-other"), "the trace names the group that matched: {}", trace.body);
    let r = run(&s, json!({ "count": 2, "fault": "disabledGroup" })).await;
    assert_eq!(r["target"], "group simulated-devices-disabled");
    let d = &r["devices"][0];
    assert!(d["state"] == "disabled" || d["state"] == "refused", "a disabled group's device does not get a hub: {d}");
    assert!(d["assignedHub"].is_null(), "{d}");
}

#[tokio::test]
async fn a_stepped_device_waits_before_each_step_until_continued() {
    let s = TestService::start().await;
    let started = s.service(Method::POST, "/simulations", Some(json!({ "count": 1, "stepThrough": true, "prefix": "step-" }))).await;
    let run = started.body["id"].as_str().expect("id").to_owned();
    let paused = |before: &'static str| move |r: &Value| r["devices"][0]["pausedBefore"] == before;
    let r = wait_until(&s, &run, paused("connect")).await;
    assert_eq!(r["devices"][0]["state"], "paused");
    assert_eq!(kinds(&device(&s, &run, "step-1").await).len(), 0, "nothing happened before the first continue");
    let path = format!("/simulations/{run}/devices/step-1/continue");
    assert_eq!(s.service(Method::POST, &path, Some(json!({}))).await.status, 200);
    wait_until(&s, &run, paused("tls")).await;
    assert_eq!(kinds(&device(&s, &run, "step-1").await), ["connect"]);
    assert_eq!(s.service(Method::POST, &path, Some(json!({}))).await.status, 200);
    wait_until(&s, &run, paused("register")).await;
    assert_eq!(s.service(Method::POST, &path, Some(json!({ "toEnd": true }))).await.status, 200);
    let r = wait_until(&s, &run, |r| r["devices"][0]["state"] == "assigned").await;
    assert_eq!(r["counts"], json!({ "assigned": 1 }));
}

#[tokio::test]
async fn bad_requests_are_refused_with_dps_codes() {
    let s = TestService::start().await;
    for (body, status, code) in [
        (json!({ "count": 0 }), 400, 400004),
        (json!({ "count": 1001 }), 400, 400004),
        (json!({ "count": 1, "attestation": "tpm", "transport": "mqtt" }), 400, 400004),
        (json!({ "count": 1, "attestation": "tpm", "transport": "mqttWs" }), 400, 400004),
        (json!({ "count": 101, "attestation": "tpm" }), 400, 400004),
        (json!({ "count": 1, "attestation": "tpm", "group": "simulated-devices" }), 400, 400004),
        (json!({ "count": 1, "attestation": "tpm", "fault": "wrongKey" }), 400, 400004),
        (json!({ "count": 1, "attestation": "psk" }), 400, 400004),
        (json!({ "count": 1, "prefix": "bad prefix/" }), 400, 400004),
        (json!({ "count": 2, "enrollment": "someone" }), 400, 400004),
        (json!({ "count": 1, "group": "no-such-group" }), 404, 404202),
        (json!({ "count": 1, "enrollment": "no-such-enrollment" }), 404, 404202),
        (json!({ "count": 1, "transport": "carrier-pigeon" }), 400, 400001),
        (json!({ "count": 2, "faulty": 1 }), 400, 400004),
        (json!({ "count": 2, "fault": "wrongKey", "faulty": 0 }), 400, 400004),
        (json!({ "count": 2, "fault": "wrongKey", "faulty": 3 }), 400, 400004),
    ] {
        let a = s.service(Method::POST, "/simulations", Some(body.clone())).await;
        TestService::assert_error(&a, status, code);
    }
    let a = s.service(Method::GET, "/simulations/sim-404", None).await;
    TestService::assert_error(&a, 404, 404204);
    let a = s.service(Method::POST, "/simulations/sim-404/devices/x/continue", Some(json!({}))).await;
    TestService::assert_error(&a, 404, 404204);
}

#[tokio::test]
async fn an_individual_enrollment_and_a_named_group_are_used_and_a_run_can_be_forgotten() {
    let s = TestService::start().await;
    s.enroll("solo-dev", json!({})).await;
    let r = run(&s, json!({ "count": 1, "enrollment": "solo-dev", "transport": "amqp" })).await;
    assert_eq!((r["counts"].clone(), r["target"].clone()), (json!({ "assigned": 1 }), json!("enrollment solo-dev")), "{r}");
    let g = json!({ "enrollmentGroupId": "line-7", "attestation": { "type": "symmetricKey" } });
    assert_eq!(s.service(Method::PUT, "/enrollmentGroups/line-7", Some(g)).await.status, 200);
    let r = run(&s, json!({ "count": 4, "group": "line-7", "prefix": "line7-" })).await;
    assert_eq!(r["counts"], json!({ "assigned": 4 }), "{r}");
    let id = r["id"].as_str().expect("id").to_owned();
    assert_eq!(s.service(Method::DELETE, &format!("/simulations/{id}"), None).await.status, 204);
    // Made in place: a group and an individual enrollment that did not exist.
    let r = run(&s, json!({ "count": 2, "group": "line-9", "create": true, "prefix": "line9-" })).await;
    assert_eq!(r["counts"], json!({ "assigned": 2 }), "{r}");
    assert_eq!(s.service(Method::GET, "/enrollmentGroups/line-9", None).await.body["attestation"]["type"], "symmetricKey");
    let r = run(&s, json!({ "count": 1, "enrollment": "solo-made", "create": true, "transport": "mqttWs" })).await;
    assert_eq!((r["counts"].clone(), r["target"].clone()), (json!({ "assigned": 1 }), json!("enrollment solo-made")), "{r}");
    assert_eq!(s.service(Method::GET, &format!("/simulations/{id}"), None).await.status, 404);
}

#[tokio::test]
async fn a_built_in_scenario_runs_from_the_service_api_and_its_reset_leaves_nothing() {
    let s = TestService::start().await;
    let list = s.service(Method::GET, "/scenarios", None).await;
    let names: Vec<&str> = list.body.as_array().expect("a list").iter().filter_map(|v| v["name"].as_str()).collect();
    assert!(["evenly-weighted", "static", "reprovisioning", "key-rolling", "disabled"].iter().all(|n| names.contains(n)), "{names:?}");
    let started = s.service(Method::POST, "/scenarios/static/run", None).await;
    assert_eq!((started.status, started.body["state"].as_str()), (202, Some("running")), "{}", started.body);
    let again = s.service(Method::POST, "/scenarios/static/run", None).await;
    TestService::assert_error(&again, 409, 409201);
    let mut view = Value::Null;
    for _ in 0..600 {
        view = s.service(Method::GET, "/scenarios/static", None).await.body;
        if view["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["state"], "passed", "{view}");
    let steps = view["steps"].as_array().expect("steps");
    assert!(!steps.is_empty() && steps.iter().all(|st| st["problems"] == json!([])), "{view}");
    let sample = &steps[0]["sample"];
    assert!(sample["steps"].as_array().is_some_and(|s| s.len() > 3), "a register step keeps its first device's flow: {view}");
    assert_eq!(sample["state"], "assigned", "{view}");
    let devices: u64 = steps.iter().filter_map(|st| st["devices"].as_u64()).sum();
    let on_hubs: u64 = steps.iter().flat_map(|st| st["perHub"].as_object().into_iter().flatten()).filter_map(|(_, n)| n.as_u64()).sum();
    assert!(devices > 0 && devices == on_hubs, "every device of the run is on a hub: {view}");
    assert_eq!(s.service(Method::GET, "/enrollmentGroups/demo-static", None).await.status, 200, "the scenario set up its group");
    let reset = s.service(Method::POST, "/scenarios/static/reset", None).await;
    assert_eq!(reset.status, 200, "{}", reset.body);
    assert!(reset.body.get("state").is_none(), "the run is forgotten: {}", reset.body);
    assert_eq!(s.service(Method::GET, "/enrollmentGroups/demo-static", None).await.status, 404, "the reset removed the group");
    assert_eq!(s.service(Method::GET, "/linkedHubs/static-a.demo.local", None).await.status, 404, "and the hub");
    TestService::assert_error(&s.service(Method::POST, "/scenarios/no-such-demo/run", None).await, 404, 404204);
}

#[tokio::test]
async fn x509_devices_present_certificates_from_a_ca_made_for_the_run_over_every_transport() {
    let s = TestService::start().await;
    for transport in ["https", "mqtt", "amqp", "mqttWs", "amqpWs"] {
        let r = run(&s, json!({ "attestation": "x509", "transport": transport, "count": 2, "prefix": format!("x-{transport}-") })).await;
        assert_eq!(
            (r["counts"].clone(), r["target"].clone()),
            (json!({ "assigned": 2 }), json!("group simulated-x509-devices")),
            "{transport}: {r}"
        );
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &format!("x-{transport}-1")).await;
        let tls = d["steps"].as_array().and_then(|st| st.iter().find(|x| x["kind"] == "tls").cloned()).unwrap_or_default();
        assert!(tls["title"].as_str().is_some_and(|t| t.contains("certificate sent")), "{transport}: {tls}");
        assert!(!d["steps"].to_string().contains("SharedAccessSignature"), "{transport}: no SAS with X.509: {d}");
        let record = s.service(Method::GET, &format!("/registrations/x-{transport}-1"), None).await;
        assert_eq!(record.body["status"], "assigned", "{}", record.body);
    }
    for fault in ["untrustedCa", "cnMismatch", "expiredCertificate"] {
        let r = run(&s, json!({ "attestation": "x509", "count": 1, "fault": fault, "transport": "https" })).await;
        let d = &r["devices"][0];
        assert!(d["state"] == "refused" || d["state"] == "error", "{fault}: no hub for a bad certificate: {r}");
        assert!(d["assignedHub"].is_null(), "{fault}: {d}");
        if fault != "expiredCertificate" {
            assert_eq!(d["errorCode"], 401002, "{fault}: {d}");
        }
    }
    for body in [
        json!({ "attestation": "x509", "count": 1, "fault": "wrongKey" }),
        json!({ "attestation": "symmetricKey", "count": 1, "fault": "cnMismatch" }),
        json!({ "attestation": "x509", "count": 1, "group": "simulated-devices" }),
    ] {
        TestService::assert_error(&s.service(Method::POST, "/simulations", Some(body)).await, 400, 400004);
    }
}

/// #16 item 8 in the simulator: devices that request a certificate send a CSR and receive one from the policy
/// `simulated-devices` (the local CA); X.509 devices then register again with the issued certificate alone, in
/// the same group, and that second registration is part of their flow.
#[tokio::test]
async fn devices_request_certificates_and_x509_devices_register_again_with_them() {
    let s = TestService::start().await;
    let r = run(&s, json!({ "transport": "https", "count": 2, "prefix": "csr-sym-", "requestCertificate": true })).await;
    assert_eq!(r["counts"], json!({ "assigned": 2 }), "{r}");
    let d = device(&s, r["id"].as_str().unwrap_or_default(), "csr-sym-1").await;
    assert!(d["issuedCertificate"].as_str().is_some_and(|c| c.starts_with("CN=csr-sym-1 · serial ")), "{d}");
    let register = d["steps"].as_array().and_then(|s| s.iter().find(|s| s["kind"] == "register")).cloned().unwrap_or_default();
    assert!(register["title"].as_str().is_some_and(|t| t.contains("api-version=2025-07-01-preview")), "{register}");
    assert!(register["message"].as_str().is_some_and(|m| m.contains("\"csr\"")), "the CSR is in the message shown: {register}");

    for transport in ["mqtt", "amqp"] {
        let prefix = format!("csr-x509-{transport}-");
        let request = json!({ "attestation": "x509", "transport": transport, "count": 2, "prefix": prefix, "requestCertificate": true });
        let r = run(&s, request).await;
        assert_eq!(r["counts"], json!({ "assigned": 2 }), "{transport}: {r}");
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &format!("{prefix}2")).await;
        assert!(d["issuedCertificate"].is_string(), "{d}");
        let k = kinds(&d);
        assert_eq!(k.iter().filter(|k| *k == "answer").count(), 2, "two registrations: {k:?}");
        let steps = d["steps"].as_array().cloned().unwrap_or_default();
        assert!(steps.iter().any(|s| s["title"] == "register again, with the issued certificate"), "{steps:?}");
    }
    let issued = s.service(Method::GET, "/issuedCertificates", None).await;
    assert_eq!(issued.body.as_array().map(Vec::len), Some(6), "{}", issued.body);
    let g = s.service(Method::GET, "/enrollmentGroups/simulated-x509-devices", None).await;
    assert_eq!(g.body["credentialPolicyName"], "simulated-devices");
}

/// #16 item 3, `hubDown`: the devices' only hub cannot be reached; they see `assigning` (their polls) while the
/// engine retries the hub (one retry here), then `failed` with 503001, and the hub is never chosen by allocation.
#[tokio::test]
async fn a_hub_that_is_down_fails_its_devices_with_503001_after_the_retries() {
    let s = TestService::start_with(dps_service::config::Overrides { hub_retries: Some(1), ..Default::default() }).await;
    let r = run(&s, json!({ "transport": "mqtt", "count": 2, "prefix": "down-", "fault": "hubDown" })).await;
    assert_eq!(r["counts"], json!({ "failed": 2 }), "{r}");
    assert_eq!(r["target"], "group simulated-devices-hub-down");
    let d = device(&s, r["id"].as_str().unwrap_or_default(), "down-1").await;
    assert_eq!(d["errorCode"], 503001, "{d}");
    assert!(kinds(&d).iter().any(|k| k == "poll"), "the device polled while the hub was retried: {d}");
    let hubs = s.service(Method::GET, "/linkedHubs", None).await;
    let down = hubs.body.as_array().and_then(|h| h.iter().find(|h| h["hostName"] == "simulated-hub-down.dps.local")).cloned();
    assert_eq!(down.map(|h| h["applyAllocationPolicy"].clone()), Some(json!(false)), "{}", hubs.body);
    // Devices of the default group still provision: the hub that is down is never an allocation candidate.
    let ok = run(&s, json!({ "transport": "https", "count": 3, "prefix": "up-" })).await;
    assert_eq!(ok["counts"], json!({ "assigned": 3 }), "{ok}");
}

/// TPM devices (#16 item 1): each starts a software TPM (swtpm), the service enrolls its endorsement key, and
/// the device answers the challenge inside its TPM — over HTTPS (the 401 challenge), AMQP and AMQP over
/// WebSockets (the TPM SASL mechanism). An unenrolled TPM is refused; a disabled enrollment gets no hub.
#[tokio::test]
async fn tpm_devices_start_a_software_tpm_each_enroll_it_and_answer_the_challenge_over_https_and_amqp() {
    let s = TestService::start().await;
    for transport in ["https", "amqp", "amqpWs"] {
        let prefix = format!("tpm-{transport}-");
        let r = run(&s, json!({ "attestation": "tpm", "transport": transport, "count": 2, "prefix": prefix })).await;
        assert_eq!(r["counts"], json!({ "assigned": 2 }), "{transport}: {r}");
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &format!("{prefix}1")).await;
        let k = kinds(&d);
        let expected = ["setup", "connect", "tls", "register", "challenge", "accepted", "answer"];
        let order =
            if transport == "https" { &expected[..] } else { &["setup", "connect", "tls", "login", "challenge", "register", "answer"][..] };
        let mut at = k.iter();
        assert!(order.iter().all(|e| at.any(|x| x == e)), "{transport}: the flow in order {order:?}, got {k:?}");
        let text = d["steps"].to_string();
        assert!(text.contains("ActivateCredential") && text.contains("sig=•••"), "{transport}: the challenge and a masked SAS: {text}");
        let enrollment = s.service(Method::GET, &format!("/enrollments/{prefix}1"), None).await;
        assert_eq!(enrollment.body["attestation"]["type"], "tpm", "{}", enrollment.body);
        assert!(enrollment.body["attestation"]["tpm"]["endorsementKey"].is_string(), "{}", enrollment.body);
        let record = s.service(Method::GET, &format!("/registrations/{prefix}1"), None).await;
        assert_eq!(record.body["status"], "assigned", "{}", record.body);
    }
    let r = run(&s, json!({ "attestation": "tpm", "count": 1, "fault": "unknownId", "prefix": "tpm-stranger-" })).await;
    assert_eq!(r["devices"][0]["state"], "refused", "an unenrolled TPM is refused: {r}");
    assert_eq!(r["devices"][0]["errorCode"], 401002, "{r}");
    assert_eq!(s.service(Method::GET, "/enrollments/tpm-stranger-1", None).await.status, 404, "nobody enrolled it");
    let r = run(&s, json!({ "attestation": "tpm", "transport": "amqp", "count": 1, "fault": "disabledEnrollment", "prefix": "tpm-off-" }))
        .await;
    let d = &r["devices"][0];
    assert!(d["state"] == "disabled" || d["state"] == "refused", "a disabled enrollment's TPM gets no hub: {d}");
    assert!(d["assignedHub"].is_null(), "{d}");
}

/// X.509 devices from a CA the trainer picks: a root and an intermediate made for the run (devices send the
/// intermediate with their certificate; the group trusts the root), or the trainer's own CA — made here by
/// OpenSSL — uploaded with its key, which the run's view never shows.
#[tokio::test]
async fn x509_devices_are_issued_by_an_intermediate_or_by_the_trainers_own_ca() {
    let s = TestService::start().await;
    let r = run(
        &s,
        json!({ "attestation": "x509", "transport": "mqtt", "count": 2, "prefix": "x-mid-", "x509Ca": { "kind": "intermediate" } }),
    )
    .await;
    assert_eq!(r["counts"], json!({ "assigned": 2 }), "{r}");
    assert_eq!(r["request"]["x509Ca"], json!({ "kind": "intermediate" }));

    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("openssl")
        .current_dir(dir.path())
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=Trainer CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .args(["-keyout", "ca.key", "-out", "ca.pem", "-days", "30"])
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let certificate = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca.pem");
    let key = std::fs::read_to_string(dir.path().join("ca.key")).expect("ca.key");
    // OpenSSL dates the CA from this second; the service's clock starts at real time.
    s.clock.advance(chrono::Duration::seconds(5));
    let uploaded = json!({ "kind": "uploaded", "certificate": certificate, "key": key });
    let r = run(&s, json!({ "attestation": "x509", "transport": "amqpWs", "count": 2, "prefix": "x-own-", "x509Ca": uploaded })).await;
    assert_eq!(r["counts"], json!({ "assigned": 2 }), "{r}");
    assert!(r["request"]["x509Ca"].get("key").is_none() && !r.to_string().contains("PRIVATE KEY"), "the key is never shown: {r}");
    let g = s.service(Method::GET, "/enrollmentGroups/simulated-x509-devices", None).await;
    let trusted =
        g.body["attestation"]["x509"]["signingCertificates"]["primary"]["info"]["subjectName"].as_str().unwrap_or_default().to_owned();
    assert!(trusted.contains("Trainer CA"), "the group trusts the trainer's CA: {}", g.body);

    let other_key =
        json!({ "kind": "uploaded", "certificate": certificate, "key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" });
    for body in [
        json!({ "attestation": "x509", "count": 1, "x509Ca": other_key }),
        json!({ "attestation": "x509", "count": 1, "x509Ca": { "kind": "uploaded", "certificate": "no PEM", "key": key } }),
        json!({ "attestation": "symmetricKey", "count": 1, "x509Ca": { "kind": "intermediate" } }),
    ] {
        TestService::assert_error(&s.service(Method::POST, "/simulations", Some(body)).await, 400, 400004);
    }
}

/// The built-in demo allocation webhook behind the webhook faults: `webhookError` fails devices at once with
/// 400207 (the webhook's 400); `webhookTimeout` makes the service wait out its time-out on each call and retry,
/// then fail them with 400207; the webhook itself refuses a call without its code.
#[tokio::test]
async fn the_webhook_faults_go_through_the_demo_webhook_and_fail_with_400207() {
    let overrides = dps_service::config::Overrides {
        webhook_timeout_secs: Some(1),
        webhook_retries: Some(1),
        webhook_retry_initial_ms: Some(100),
        webhook_retry_increment_ms: Some(0),
        ..Default::default()
    };
    let s = TestService::start_with(overrides).await;
    let r = run(&s, json!({ "count": 2, "fault": "webhookError", "transport": "amqp", "prefix": "wh-err-" })).await;
    assert_eq!(r["counts"], json!({ "failed": 2 }), "{r}");
    assert_eq!(r["devices"][0]["errorCode"], 400207, "{r}");
    let trace = s.service(Method::GET, "/registrations/wh-err-1/trace", None).await;
    assert!(trace.body.to_string().contains("/demo/allocationWebhook"), "the trace names the webhook: {}", trace.body);
    assert!(!trace.body.to_string().contains("code="), "the trace hides the webhook's code: {}", trace.body);

    let r = run(&s, json!({ "count": 1, "fault": "webhookTimeout", "prefix": "wh-slow-" })).await;
    assert_eq!(r["devices"][0]["state"], "failed", "{r}");
    assert_eq!(r["devices"][0]["errorCode"], 400207, "{r}");
    assert!(r["target"].as_str().is_some_and(|t| t.contains("2 webhook calls of 1 s")), "{r}");
    let d = device(&s, r["id"].as_str().unwrap_or_default(), "wh-slow-1").await;
    assert!(kinds(&d).iter().any(|k| k == "poll"), "the device polled while the service waited: {d}");

    let url = s.service(Method::GET, "/demo/allocationWebhook", None).await;
    let url = url.body["url"].as_str().expect("the webhook's URL").to_owned();
    assert!(url.contains("code="), "{url}");
    let client =
        reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem).expect("CA")).build().expect("client");
    let path = url.split("/demo/").nth(1).unwrap_or_default();
    let base = url.split("/demo/").next().unwrap_or_default();
    let body = json!({ "deviceRuntimeContext": { "registrationId": "north-1" }, "linkedHubs": ["south.demo.local", "north.demo.local"] });
    let chosen = client.post(format!("{base}/demo/{path}")).json(&body).send().await.expect("webhook call");
    assert_eq!(chosen.status(), 200);
    let answer: Value = chosen.json().await.expect("json");
    assert_eq!(answer["iotHubHostName"], "north.demo.local", "{answer}");
    let wrong = client.post(format!("{base}/demo/allocationWebhook?code=nope")).json(&body).send().await.expect("call");
    assert_eq!(wrong.status(), 401);
    let none = client.post(format!("{base}/demo/allocationWebhook")).json(&body).send().await.expect("call");
    assert_eq!(none.status(), 401);
}

/// `throttled`: devices that poll back to back meet the Azure profile's 5 polls per device per 10 s (429001);
/// without that profile the fault is refused with the reason.
#[tokio::test]
async fn throttled_devices_meet_the_azure_profiles_poll_limit() {
    let s = TestService::start().await;
    let refused = s.service(Method::POST, "/simulations", Some(json!({ "count": 1, "fault": "throttled" }))).await;
    TestService::assert_error(&refused, 400, 400004);
    assert!(refused.body.to_string().contains("azure"), "{}", refused.body);
    let s = TestService::start_with(dps_service::config::Overrides { limits: Some("azure".into()), ..Default::default() }).await;
    for transport in ["https", "mqtt", "amqp"] {
        let prefix = format!("storm-{transport}-");
        let r = run(&s, json!({ "count": 2, "fault": "throttled", "transport": transport, "prefix": prefix })).await;
        assert_eq!(r["counts"], json!({ "refused": 2 }), "{transport}: {r}");
        assert_eq!(r["devices"][0]["errorCode"], 429001, "{transport}: {r}");
        let d = device(&s, r["id"].as_str().unwrap_or_default(), &format!("{prefix}1")).await;
        let polls = kinds(&d).iter().filter(|k| *k == "poll").count();
        assert!(polls >= 5, "{transport}: throttled after its allowed polls: {d}");
    }
}

/// A trainer's own scenario file (#16 item 5): uploaded as TOML, listed beside the built-ins, run to its
/// expected outcome, kept across a restart of the list (the settings store), and deleted — which resets what it
/// made first. Files that do not check, and built-in names, are refused with the reason.
#[tokio::test]
async fn a_trainers_own_scenario_file_is_uploaded_run_and_deleted() {
    let s = TestService::start().await;
    let file = r#"
name = "my-lab"
title = "My lab"
summary = "Two hubs, a weighted group, four devices."

[[hubs]]
hostName = "lab-a.demo.local"
allocationWeight = 1

[[hubs]]
hostName = "lab-b.demo.local"
allocationWeight = 3

[[groups]]
enrollmentGroupId = "my-lab-group"
attestation = { type = "symmetricKey" }
allocationPolicy = "hashed"
iotHubs = ["lab-a.demo.local", "lab-b.demo.local"]

[[steps]]
say = "Four devices over MQTT over WebSockets."
register = { group = "my-lab-group", count = 4, transport = "mqttWs" }
expect = { status = "assigned", hubs = ["lab-a.demo.local", "lab-b.demo.local"] }
"#;
    let sas = s.service_sas();
    let upload = |body: String| {
        let sas = sas.clone();
        let s = &s;
        async move {
            s.send(
                Method::POST,
                "/scenarios?api-version=2021-10-01",
                Some(&sas),
                &[("content-type", "application/toml")],
                Some(body.into_bytes()),
            )
            .await
        }
    };
    let made = upload(file.to_owned()).await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!((made.body["name"].clone(), made.body["own"].clone()), (json!("my-lab"), json!(true)), "{}", made.body);
    let list = s.service(Method::GET, "/scenarios", None).await;
    let mine = list.body.as_array().and_then(|l| l.iter().find(|v| v["name"] == "my-lab").cloned()).expect("listed");
    assert_eq!(mine["own"], true);
    assert!(list.body.as_array().is_some_and(|l| l.iter().any(|v| v["name"] == "static" && v.get("own").is_none())), "{}", list.body);

    assert_eq!(s.service(Method::POST, "/scenarios/my-lab/run", None).await.status, 202);
    let mut view = Value::Null;
    for _ in 0..300 {
        view = s.service(Method::GET, "/scenarios/my-lab", None).await.body;
        if view["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["state"], "passed", "{view}");
    assert_eq!(s.service(Method::GET, "/enrollmentGroups/my-lab-group", None).await.status, 200);

    for (bad, why) in [
        (file.replace("name = \"my-lab\"", "name = \"static\""), "built-in"),
        (file.replace("count = 4", "count = 4000"), "1000"),
        (file.replace("\"lab-b.demo.local\"]", "\"elsewhere.example\"]"), "elsewhere.example"),
        ("not toml at all [".to_owned(), "scenario file"),
        (file.replace("[[steps]]", "[[stepz]]"), "stepz"),
    ] {
        let a = upload(bad).await;
        TestService::assert_error(&a, 400, 400004);
        assert!(a.body.to_string().contains(why), "{why}: {}", a.body);
    }

    // As JSON too (what the console sends: its port takes JSON bodies only).
    let again = s.service(Method::POST, "/scenarios", Some(json!({ "file": file }))).await;
    assert_eq!((again.status, again.body["name"].clone()), (201, json!("my-lab")), "{}", again.body);
    assert_eq!(s.service(Method::DELETE, "/scenarios/my-lab", None).await.status, 204);
    assert_eq!(s.service(Method::GET, "/enrollmentGroups/my-lab-group", None).await.status, 404, "the delete reset what it made");
    assert_eq!(s.service(Method::GET, "/linkedHubs/lab-a.demo.local", None).await.status, 404);
    TestService::assert_error(&s.service(Method::GET, "/scenarios/my-lab", None).await, 404, 404204);
    TestService::assert_error(&s.service(Method::DELETE, "/scenarios/static", None).await, 404, 404204);
}

async fn clean_up(s: &TestService, run: &Value) -> common::Answer {
    let id = run["id"].as_str().expect("the run has an id");
    s.service(Method::POST, &format!("/simulations/{id}/cleanUp"), Some(json!({}))).await
}

/// What a finished run left — its devices' registration records, their identities in the hub, the enrollments
/// made for its TPM devices — is removed by its clean-up, which then forgets the run; the groups it used stay.
#[tokio::test]
async fn a_finished_runs_clean_up_removes_its_records_identities_and_tpm_enrollments() {
    let s = TestService::start().await;
    for (request, enrollments) in [
        (json!({ "count": 3, "transport": "mqtt", "prefix": "tidy-" }), 0),
        (json!({ "count": 3, "attestation": "x509", "transport": "amqp", "prefix": "tidy-x-" }), 0),
        (json!({ "count": 3, "attestation": "tpm", "transport": "https", "prefix": "tidy-t-" }), 3),
    ] {
        let r = run(&s, request.clone()).await;
        assert_eq!(r["counts"], json!({ "assigned": 3 }), "{request}: {r}");
        let hub = r["devices"][0]["assignedHub"].as_str().expect("assigned to a hub").to_owned();
        let prefix = request["prefix"].as_str().expect("prefix");
        let done = clean_up(&s, &r).await;
        assert_eq!(done.status, 200, "{}", done.body);
        let expected = json!({ "registrations": 3, "identities": 3, "enrollments": enrollments, "problems": [] });
        assert_eq!(done.body, expected, "{request}");
        for n in 1..=3 {
            assert_eq!(s.service(Method::GET, &format!("/registrations/{prefix}{n}"), None).await.status, 404, "{prefix}{n}'s record");
            assert_eq!(s.service(Method::GET, &format!("/enrollments/{prefix}{n}"), None).await.status, 404, "{prefix}{n}'s enrollment");
        }
        let identities = s.service(Method::GET, &format!("/linkedHubs/{hub}/devices"), None).await;
        assert!(!identities.body.to_string().contains(prefix), "no identity of the run is left in {hub}: {}", identities.body);
        let id = r["id"].as_str().unwrap_or_default();
        assert_eq!(s.service(Method::GET, &format!("/simulations/{id}"), None).await.status, 404, "the run is forgotten");
    }
    for group in ["simulated-devices", "simulated-x509-devices"] {
        assert_eq!(s.service(Method::GET, &format!("/enrollmentGroups/{group}"), None).await.status, 200, "{group} stays for the next run");
    }
    assert_eq!(clean_up(&s, &json!({ "id": "sim-404" })).await.status, 404, "an unknown run");
}

/// A run whose devices have not all ended is not cleaned up (409201). A TPM run never replaces an enrollment
/// that no simulation made — its device fails and says why — and its clean-up leaves that enrollment as it was.
#[tokio::test]
async fn a_run_still_going_is_not_cleaned_up_and_the_trainers_own_enrollments_are_never_touched() {
    let s = TestService::start().await;
    let started = s.service(Method::POST, "/simulations", Some(json!({ "count": 1, "stepThrough": true, "prefix": "busy-" }))).await;
    let paused = wait_until(&s, started.body["id"].as_str().unwrap_or_default(), |r| r["devices"][0]["state"] == "paused").await;
    let refused = clean_up(&s, &paused).await;
    assert_eq!((refused.status, refused.body["errorCode"].as_u64()), (409, Some(409201)), "{}", refused.body);
    let id = paused["id"].as_str().unwrap_or_default();
    let resumed = s.service(Method::POST, &format!("/simulations/{id}/continue"), Some(json!({ "toEnd": true }))).await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    let ended = wait_until(&s, id, |r| r["devices"][0]["state"] == "assigned").await;
    assert_eq!(clean_up(&s, &ended).await.body["registrations"], 1);

    let own = json!({ "registrationId": "press-1", "attestation": { "type": "symmetricKey" } });
    let before = s.service(Method::PUT, "/enrollments/press-1", Some(own)).await;
    assert!(before.status == 200 || before.status == 201, "{}", before.body);
    let r = run(&s, json!({ "count": 2, "attestation": "tpm", "transport": "https", "prefix": "press-" })).await;
    let first = &r["devices"][0];
    assert_ne!(first["state"], "assigned", "press-1 is the trainer's: {r}");
    assert!(first["message"].as_str().unwrap_or_default().contains("no simulation made"), "the device says why: {first}");
    assert_eq!(r["devices"][1]["state"], "assigned", "{r}");
    let done = clean_up(&s, &r).await;
    assert_eq!((&done.body["enrollments"], &done.body["registrations"]), (&json!(1), &json!(1)), "{}", done.body);
    let after = s.service(Method::GET, "/enrollments/press-1", None).await;
    assert_eq!(after.status, 200, "the trainer's enrollment stays: {}", after.body);
    assert_eq!((&after.body["etag"], &after.body["attestation"]["type"]), (&before.body["etag"], &json!("symmetricKey")), "unchanged");
}

/// `faulty`: the fault goes to the first devices only and the others provision — a group fault puts the two kinds
/// in two groups, X.509 and TPM faults are per device — and each device says which fault it was given.
#[tokio::test]
async fn faulty_gives_the_fault_to_the_first_devices_only() {
    let s = TestService::start().await;
    for request in [
        json!({ "count": 3, "fault": "wrongKey", "faulty": 1, "transport": "mqtt", "prefix": "part-k-" }),
        json!({ "count": 3, "fault": "disabledGroup", "faulty": 2, "transport": "amqp", "prefix": "part-g-" }),
        json!({ "count": 3, "attestation": "x509", "fault": "untrustedCa", "faulty": 1, "transport": "https", "prefix": "part-x-" }),
        json!({ "count": 2, "attestation": "tpm", "fault": "unknownId", "faulty": 1, "transport": "https", "prefix": "part-t-" }),
    ] {
        let r = run(&s, request.clone()).await;
        let faulty = request["faulty"].as_u64().unwrap_or_default();
        let devices = r["devices"].as_array().expect("devices");
        assert_eq!(devices.len() as u64, request["count"].as_u64().unwrap_or_default(), "{r}");
        for (n, d) in (1..).zip(devices) {
            if n <= faulty {
                assert_eq!((&d["fault"], d["state"] != "assigned"), (&request["fault"], true), "{request}: device {n} is faulty: {d}");
            } else {
                assert_eq!((&d["fault"], &d["state"]), (&Value::Null, &json!("assigned")), "{request}: device {n} is healthy: {d}");
            }
        }
        if request["fault"] != "disabledGroup" {
            assert_eq!(devices[0]["errorCode"], 401002, "{request}: {r}");
        }
    }
    let r = run(&s, json!({ "count": 2, "fault": "disabledGroup", "faulty": 1, "prefix": "part-n-" })).await;
    let target = r["target"].as_str().unwrap_or_default();
    assert!(
        target.contains("simulated-devices-disabled (the faulty devices) and group simulated-devices (the healthy devices)"),
        "{target}"
    );
}
