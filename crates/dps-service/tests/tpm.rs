//! TPM attestation end to end (§1.10, §4.4) with a real TPM 2.0 on the device side: a private swtpm per test,
//! driven through `dps_device::tpm` (tss-esapi). The service builds the authentication keys in pure Rust;
//! the TPM must accept them (ActivateCredential, Import, Load) and sign with the key they carry.

mod common;

use std::time::Duration;

use base64::Engine;
use common::TestService;
use dps_device::swtpm::Swtpm;
use dps_device::tpm::TpmDevice;
use hmac::Mac;
use reqwest::Method;
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Runs `f` on the TPM in a blocking thread (`TpmDevice` is not `Send`; it is reopened each time).
async fn on_tpm<T: Send + 'static>(tcti: &str, f: impl FnOnce(&mut TpmDevice) -> anyhow::Result<T> + Send + 'static) -> T {
    let tcti = tcti.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut d = TpmDevice::open(&tcti)?;
        f(&mut d)
    })
    .await
    .expect("the TPM thread")
    .expect("the TPM operation")
}

struct Keys {
    ek: String,
    srk: String,
    registration_id: String,
}

async fn keys(tpm: &Swtpm) -> Keys {
    on_tpm(&tpm.tcti(), |d| {
        Ok(Keys { ek: B64.encode(d.endorsement_key()), srk: B64.encode(d.storage_root_key()), registration_id: d.registration_id() })
    })
    .await
}

async fn enroll_tpm(s: &TestService, id: &str, ek: &str, extra: Value) {
    let mut doc = json!({ "registrationId": id, "attestation": { "type": "tpm", "tpm": { "endorsementKey": ek } } });
    if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let a = s.service(Method::PUT, &format!("/enrollments/{id}"), Some(doc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

fn register_body(k: &Keys) -> String {
    json!({ "registrationId": k.registration_id, "tpm": { "endorsementKey": k.ek, "storageRootKey": k.srk } }).to_string()
}

/// §1.10 step 1–2: the unauthenticated register is the challenge.
async fn challenge(s: &TestService, k: &Keys) -> common::Answer {
    s.send(
        Method::PUT,
        &format!("/{}/registrations/{}/register?api-version=2021-06-01", s.scope, k.registration_id),
        None,
        &[],
        Some(register_body(k).into_bytes()),
    )
    .await
}

/// Activates the challenge's blob and returns a SAS token signed in the TPM with its key.
async fn answer(s: &TestService, tpm: &Swtpm, k: &Keys, c: &common::Answer) -> String {
    assert_eq!(c.status, 401, "§1.10 the challenge is a 401: {}", c.body);
    assert!(c.body.get("status").is_none(), "§1.10 a challenge has no status member (C decides by its absence)");
    assert_eq!(c.body["keyName"], "registration", "{}", c.body);
    let blob = B64.decode(c.body["authenticationKey"].as_str().expect("authenticationKey")).expect("base64");
    let (scope, id, se) = (s.scope.clone(), k.registration_id.clone(), s.now() + 3600);
    on_tpm(&tpm.tcti(), move |d| {
        d.activate_identity_key(&blob)?;
        d.sas_token(&scope, &id, se, Some("registration"))
    })
    .await
}

/// Registers with the answer and polls to the end.
async fn register(s: &TestService, k: &Keys, sas: &str) -> common::Answer {
    let a = s.register(&k.registration_id, sas, &register_body(k)).await;
    if a.status != 202 {
        return a;
    }
    s.poll_done(&k.registration_id, a.body["operationId"].as_str().unwrap_or_default(), sas).await
}

/// §4.4.3 step 4: the device activates K2 and its TPM signs `{hub}/devices/{id}` as the hub identity's key does.
async fn assert_holds_hub_key(s: &TestService, tpm: &Swtpm, done: &Value) -> String {
    let state = &done["registrationState"];
    let blob = B64.decode(state["tpm"]["authenticationKey"].as_str().expect("§1.5 tpm.authenticationKey on assigned")).expect("b64");
    let (hub, device) =
        (state["assignedHub"].as_str().unwrap_or_default().to_owned(), state["deviceId"].as_str().unwrap_or_default().to_owned());
    let message = format!("{hub}/devices/{device}\n{}", s.now() + 3600);
    let signed = {
        let message = message.clone();
        on_tpm(&tpm.tcti(), move |d| {
            d.activate_identity_key(&blob)?;
            d.sign(message.as_bytes())
        })
        .await
    };
    let store = &s.running.as_ref().expect("running").store;
    let (primary, _) = store.identity_keys(&hub, &device).await.expect("store").expect("the hub identity has keys");
    let key = B64.decode(primary.expose()).expect("key");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).expect("hmac");
    mac.update(message.as_bytes());
    assert_eq!(signed, mac.finalize().into_bytes().to_vec(), "the TPM's HMAC must equal the hub identity key's");
    primary.expose().to_owned()
}

#[tokio::test]
async fn a_tpm_device_registers_over_https_and_holds_its_hub_key() {
    let s = TestService::start().await;
    let tpm = Swtpm::start().expect("swtpm (apt-get install swtpm)");
    let k = keys(&tpm).await;
    assert_eq!(k.registration_id.len(), 52, "§4.4.2 registration id from the EK");
    enroll_tpm(&s, &k.registration_id, &k.ek, json!({})).await;
    let sas = answer(&s, &tpm, &k, &challenge(&s, &k).await).await;
    let done = register(&s, &k, &sas).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let k2 = assert_holds_hub_key(&s, &tpm, &done.body).await;

    // Again: a new challenge, a new K2, the TPM follows.
    let sas = answer(&s, &tpm, &k, &challenge(&s, &k).await).await;
    let again = register(&s, &k, &sas).await;
    assert_eq!(again.body["status"], "assigned", "{}", again.body);
    assert_eq!(again.body["registrationState"]["substatus"], "initialAssignment");
    let k2_again = assert_holds_hub_key(&s, &tpm, &again.body).await;
    assert_ne!(k2, k2_again, "every registration issues a new hub key");

    // Re-provisioned to another hub (the enrollment names it): the device moves and gets a new key there.
    let a = s.service(Method::PUT, "/linkedHubs/second.hub.example", Some(json!({ "hostName": "second.hub.example" }))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let e = s.service(Method::GET, &format!("/enrollments/{}", k.registration_id), None).await.body;
    let mut moved_doc = e.clone();
    moved_doc["iotHubs"] = json!(["second.hub.example"]);
    let put = s.send_json_if_match(&format!("/enrollments/{}", k.registration_id), moved_doc, e["etag"].as_str().unwrap_or("*")).await;
    assert_eq!(put.status, 200, "{}", put.body);
    let sas = answer(&s, &tpm, &k, &challenge(&s, &k).await).await;
    let moved = register(&s, &k, &sas).await;
    assert_eq!(moved.body["registrationState"]["assignedHub"], "second.hub.example", "{}", moved.body);
    let k2_moved = assert_holds_hub_key(&s, &tpm, &moved.body).await;
    assert_ne!(k2_moved, k2_again);

    // Re-provisioned from the service API (no TPM in that flow): the record moves on, and the device's next
    // registration brings it a key for its identity again.
    let r = s.service(Method::POST, &format!("/registrations/{}/reprovision", k.registration_id), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["registrationState"]["status"], "assigned", "{}", r.body);
    assert!(r.body["trace"]["tpm"]["hubKey"].as_str().is_some_and(|t| t.contains("next registration")), "{}", r.body);
    let sas = answer(&s, &tpm, &k, &challenge(&s, &k).await).await;
    let after = register(&s, &k, &sas).await;
    assert_eq!(after.body["status"], "assigned", "{}", after.body);
    assert_holds_hub_key(&s, &tpm, &after.body).await;

    // The decision trace shows the TPM step.
    let trace = s.service(Method::GET, &format!("/registrations/{}/trace", k.registration_id), None).await;
    assert!(trace.body["trace"]["tpm"].is_object(), "{}", trace.body);
}

#[tokio::test]
async fn a_challenge_survives_a_restart_and_is_answered_once() {
    let mut s = TestService::start().await;
    let tpm = Swtpm::start().expect("swtpm");
    let k = keys(&tpm).await;
    enroll_tpm(&s, &k.registration_id, &k.ek, json!({})).await;
    let c = challenge(&s, &k).await;
    s.restart().await;
    let sas = answer(&s, &tpm, &k, &c).await;
    let done = register(&s, &k, &sas).await;
    assert_eq!(done.body["status"], "assigned", "the challenge lives in the store: {}", done.body);
    let twice = s.register(&k.registration_id, &sas, &register_body(&k)).await;
    TestService::assert_error(&twice, 401, 401002);
    assert!(twice.body["message"].as_str().unwrap_or_default().contains("answered already"), "{}", twice.body);
}

#[tokio::test]
async fn tpm_refusals_carry_dps_codes() {
    let s = TestService::start().await;
    let (tpm, other) = (Swtpm::start().expect("swtpm"), Swtpm::start().expect("swtpm"));
    let (k, stranger) = (keys(&tpm).await, keys(&other).await);

    // An EK that is not the enrollment's.
    enroll_tpm(&s, &k.registration_id, &stranger.ek, json!({})).await;
    let c = challenge(&s, &k).await;
    TestService::assert_error(&c, 401, 401002);
    assert!(c.body["message"].as_str().unwrap_or_default().contains("does not match"), "{}", c.body);

    // A token signed with another key than the challenge's.
    enroll_tpm(&s, &k.registration_id, &k.ek, json!({})).await;
    let c = challenge(&s, &k).await;
    assert_eq!(c.status, 401);
    let forged = s.device_sas(&k.registration_id, &dps_crypto::generate_key(), s.now() + 3600);
    let r = s.register(&k.registration_id, &forged, &register_body(&k)).await;
    TestService::assert_error(&r, 401, 401002);
    assert!(r.body["message"].as_str().unwrap_or_default().contains("key of its TPM challenge"), "{}", r.body);

    // An answer after the challenge expired.
    let sas = answer(&s, &tpm, &k, &c).await;
    s.clock.advance(chrono::Duration::minutes(16));
    let late = s.register(&k.registration_id, &sas, &register_body(&k)).await;
    TestService::assert_error(&late, 401, 401002);
    assert!(late.body["message"].as_str().unwrap_or_default().contains("expired"), "{}", late.body);

    // No enrollment at all, and TPM on a group.
    let unknown = challenge(&s, &stranger).await;
    TestService::assert_error(&unknown, 401, 401002);
    let g = s
        .service(
            Method::PUT,
            "/enrollmentGroups/tpm-group",
            Some(json!({ "enrollmentGroupId": "tpm-group", "attestation": { "type": "tpm", "tpm": { "endorsementKey": k.ek } } })),
        )
        .await;
    assert_eq!(g.status, 400, "groups cannot use TPM: {}", g.body);

    // A malformed EK is a bad request, not a crash.
    let bad = s
        .send(
            Method::PUT,
            &format!("/{}/registrations/{}/register", s.scope, k.registration_id),
            None,
            &[],
            Some(
                json!({ "registrationId": k.registration_id, "tpm": { "endorsementKey": "AAEC", "storageRootKey": k.srk } })
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[tokio::test]
async fn a_disabled_tpm_enrollment_answers_disabled() {
    let s = TestService::start().await;
    let tpm = Swtpm::start().expect("swtpm");
    let k = keys(&tpm).await;
    enroll_tpm(&s, &k.registration_id, &k.ek, json!({ "provisioningStatus": "disabled" })).await;
    let sas = answer(&s, &tpm, &k, &challenge(&s, &k).await).await;
    let done = register(&s, &k, &sas).await;
    assert_eq!(done.body["status"], "disabled", "{}", done.body);
    assert!(done.body["registrationState"]["tpm"].is_null(), "no hub key for a disabled device: {}", done.body);
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn a_tpm_device_registers_over_amqp_with_the_tpm_sasl_mechanism() {
    let s = TestService::start().await;
    let tpm = Swtpm::start().expect("swtpm");
    let k = keys(&tpm).await;
    enroll_tpm(&s, &k.registration_id, &k.ek, json!({})).await;
    let endpoint = dps_device::Endpoint { host: "127.0.0.1".into(), id_scope: s.scope.clone(), ca_pem: s.ca_pem.clone() };
    let worker = dps_device::tpm_worker::TpmWorker::open(Some(tpm.tcti())).await.expect("open the TPM");
    let status = dps_device::tpm_amqp::provision(
        &endpoint,
        dps_device::carrier::Carrier::Port(s.amqp_port),
        &worker,
        None,
        dps_device::Polling::Every(Duration::from_millis(50)),
        dps_device::flow::Flow::default(),
    )
    .await
    .expect("§3.3 TPM SASL, then register and poll over AMQP");
    assert_eq!(status.status, dps_proto::RegistrationStatus::Assigned);
    let done = serde_json::to_value(&status).expect("json");
    drop(worker);
    assert_holds_hub_key(&s, &tpm, &done).await;
    let trace = s.service(Method::GET, &format!("/registrations/{}/trace", k.registration_id), None).await;
    assert_eq!(trace.body["trace"]["protocol"], "amqp", "{}", trace.body);
}
