//! The durable engine's coordination, from the outside: 409203 is a store constraint (100 parallel registers
//! of one device make one operation and one record), an assignment whose owner stopped renewing its lease is
//! taken over by the sweeper without a restart, a register whose client went away still finishes and does not
//! block the next one, one process per data directory, and a row that cannot be read is quarantined while the
//! service starts and serves the rest.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::TestService;
use dps_core::model::{EnrollmentRef, Operation, RegistrationRecord};
use dps_core::ports::{Lease, OperationStore};
use dps_proto::{AttestationType, DeviceRegistrationState, RegistrationStatus};
use reqwest::Method;
use serde_json::json;

/// Polls the service API's record of `id` until `done` holds (bounded).
async fn record_until(s: &TestService, id: &str, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let r = s.service(Method::GET, &format!("/registrations/{id}"), None).await;
        if r.status == 200 && done(&r.body) {
            return r.body;
        }
        last = r.body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the record of {id} never got there: {last}");
}

#[tokio::test]
async fn parallel_registers_of_one_device_make_one_operation() {
    let s = TestService::start().await;
    let key = s.enroll("crowded", json!({})).await;
    let sas = s.device_sas("crowded", &key, s.now() + 3600);
    let answers = futures_util::future::join_all((0..100).map(|_| s.register("crowded", &sas, "{}"))).await;
    let accepted: Vec<_> = answers.iter().filter(|a| a.status == 202).collect();
    let refused = answers.iter().filter(|a| a.status == 409 && a.body["errorCode"] == 409203).count();
    // Registers that arrive after the first finished start a new operation; each one that overlapped is refused.
    assert!(!accepted.is_empty() && accepted.len() + refused == 100, "202s: {}, 409203s: {refused}", accepted.len());
    let first = accepted[0].body["operationId"].as_str().unwrap_or_default().to_owned();
    let done = s.poll_done("crowded", &first, &sas).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let records = s.service(Method::POST, "/registrations/query", Some(json!({}))).await;
    let mine = records.body.as_array().into_iter().flatten().filter(|r| r["registrationId"] == "crowded").count();
    assert_eq!(mine, 1, "{}", records.body);
    let ids = s.service(Method::GET, "/linkedHubs/local-hub.dps.local/devices", None).await;
    assert_eq!(ids.body.as_array().into_iter().flatten().filter(|d| d["deviceId"] == "crowded").count(), 1, "{}", ids.body);
    // When nothing is assigning, the device registers again at once.
    record_until(&s, "crowded", |r| r["status"] == "assigned").await;
    assert_eq!(s.register("crowded", &sas, "{}").await.status, 202);
}

#[tokio::test]
async fn the_sweeper_takes_over_an_assignment_whose_owner_stopped() {
    let s = TestService::start().await;
    s.enroll("orphan", json!({})).await;
    let store = &s.running.as_ref().unwrap_or_else(|| panic!("running")).store;
    // What an instance that died mid-assignment leaves: an operation assigning, leased to it, its record assigning.
    let now = dps_core::Clock::now(s.clock.as_ref());
    let op = Operation::assigning(
        "4.00000000000000aa.orphan",
        "orphan",
        EnrollmentRef::Individual("orphan".into()),
        AttestationType::SymmetricKey,
        now,
    );
    let record = RegistrationRecord {
        state: DeviceRegistrationState {
            registration_id: Some("orphan".into()),
            status: Some(RegistrationStatus::Assigning),
            ..Default::default()
        },
        enrollment: op.enrollment.clone(),
        attestation: op.attestation,
        trace: None,
        first_hub: None,
    };
    let lease = Lease { owner: "an-instance-that-died".into(), until: now + chrono::Duration::seconds(30) };
    store.begin_registration(&op, &record, &lease).await.expect("begin registration");
    // While the lease runs, nobody touches it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(store.get_operation(&op.operation_id).await.ok().flatten().map(|o| o.status), Some(RegistrationStatus::Assigning));
    // The lease expires (the service's clock moves on): the sweeper takes over within seconds, no restart.
    s.clock.advance(chrono::Duration::seconds(31));
    let r = record_until(&s, "orphan", |r| r["status"] == "assigned").await;
    assert_eq!(r["assignedHub"], "local-hub.dps.local", "{r}");
    assert_eq!(store.get_operation(&op.operation_id).await.ok().flatten().map(|o| o.status), Some(RegistrationStatus::Assigned));
}

#[tokio::test]
async fn a_register_whose_client_went_away_finishes_and_frees_the_device() {
    let s = TestService::start().await;
    let key = s.enroll("gone", json!({})).await;
    let sas = s.device_sas("gone", &key, s.now() + 3600);
    // The request is sent, and the client gives up before the answer (a 1 ms deadline drops the request future).
    let url = format!("{}/{}/registrations/gone/register?api-version=2021-06-01", s.base, s.scope);
    let sent = s
        .http
        .put(url)
        .header("authorization", &sas)
        .header("content-type", "application/json")
        .body("{}")
        .timeout(Duration::from_millis(1))
        .send()
        .await;
    assert!(sent.is_err(), "the client was meant to give up: {sent:?}");
    // Whether or not the register reached the engine, the device is never stranded: it can register, and is assigned.
    let mut answer = s.register("gone", &sas, "{}").await;
    for _ in 0..100 {
        if answer.status != 409 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        answer = s.register("gone", &sas, "{}").await;
    }
    assert_eq!(answer.status, 202, "{}", answer.body);
    let done = s.poll_done("gone", answer.body["operationId"].as_str().unwrap_or_default(), &sas).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
}

#[tokio::test]
async fn a_second_process_on_the_same_data_directory_is_refused() {
    let s = TestService::start().await;
    let flags = dps_service::config::Overrides {
        https_port: Some(0),
        mqtt_port: Some(0),
        amqp_port: Some(0),
        console_port: Some(0),
        ..Default::default()
    };
    let config = dps_service::config::Config::load(s.dir.path().into(), None, &Default::default(), flags).expect("loads");
    let listeners = dps_service::bind(&config).expect("binds");
    let second = dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await;
    let message = second.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(message.contains("is in use by process") && message.contains("another `dps serve`"), "{message}");
    // The first one still serves.
    assert_eq!(s.service(Method::GET, "/service/info", None).await.status, 200);
}

#[tokio::test]
async fn a_corrupt_row_is_quarantined_and_the_service_starts() {
    let mut s = TestService::start().await;
    for id in ["good-1", "bad-doc", "good-2"] {
        s.enroll(id, json!({})).await;
    }
    for g in ["group-ok", "group-bad"] {
        let doc = json!({ "enrollmentGroupId": g, "attestation": { "type": "symmetricKey" } });
        assert_eq!(s.service(Method::PUT, &format!("/enrollmentGroups/{g}"), Some(doc)).await.status, 200);
    }
    let ok_group = s.service(Method::GET, "/enrollmentGroups/group-ok", None).await.body;
    let group_key = ok_group["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    s.stop().await;
    {
        let url = format!("sqlite://{}", s.dir.path().join("dps.sqlite").display());
        let pool = sqlx::SqlitePool::connect(&url).await.expect("connects");
        for sql in [
            "UPDATE enrollments SET doc = '{\"registrationId\": 42' WHERE id_key = 'bad-doc'",
            "UPDATE enrollment_groups SET secrets = 'not-a-sealed-secret' WHERE id_key = 'group-bad'",
        ] {
            sqlx::query(sql).execute(&pool).await.expect("execute");
        }
        pool.close().await;
    }
    s.restart().await;
    let list = s.service(Method::POST, "/enrollments/query", Some(json!({ "query": "SELECT * FROM enrollments" }))).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let ids: Vec<_> = list.body.as_array().into_iter().flatten().filter_map(|e| e["registrationId"].as_str()).collect();
    assert_eq!(ids, ["good-1", "good-2"], "the rest serves");
    TestService::assert_error(&s.service(Method::GET, "/enrollments/bad-doc", None).await, 404, 404202);
    // Group attestation walks every symmetric-key group: the bad one no longer stops it.
    let dk = dps_crypto::derive_device_key(&group_key, "grouped-1").expect("derives the device key");
    let done = s.provision("grouped-1", &dk).await;
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let q = s.service(Method::GET, "/diagnostics/quarantine", None).await;
    assert_eq!(q.status, 200, "{}", q.body);
    let rows = q.body.as_array().cloned().unwrap_or_default();
    let found = |table: &str, key: &str, why: &str| {
        rows.iter().any(|r| r["table"] == table && r["key"] == key && r["reason"].as_str().is_some_and(|m| m.contains(why)))
    };
    assert!(found("enrollments", "bad-doc", "does not parse"), "{}", q.body);
    assert!(found("enrollment_groups", "group-bad", "does not open"), "{}", q.body);
    assert!(rows.iter().all(|r| r.get("secrets").is_none()), "sealed columns are not shown: {}", q.body);
}

/// Polls reuse the attestation of the same token (the engine remembers it), but never past what would have
/// refused it: the token's expiry, a change of the enrollment's keys, or the group's removal (§4.1, §4.2).
#[tokio::test]
async fn remembered_attestations_end_with_the_token_the_keys_and_the_group() {
    let s = TestService::start().await;
    let key = s.enroll("memo-1", json!({})).await;
    let sas = s.device_sas("memo-1", &key, s.now() + 60);
    let op = s.register("memo-1", &sas, "{}").await.body["operationId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s.poll_done("memo-1", &op, &sas).await.status, 200);
    assert_eq!(s.poll("memo-1", &op, &sas).await.status, 200, "the same token again");
    s.clock.advance(chrono::Duration::seconds(60 + 31));
    TestService::assert_error(&s.poll("memo-1", &op, &sas).await, 401, 401002);

    let fresh = s.device_sas("memo-1", &key, s.now() + 3600);
    assert_eq!(s.poll("memo-1", &op, &fresh).await.status, 200);
    let renewed = s.service(Method::POST, "/enrollments/memo-1/renewKey", Some(json!({ "keyType": "both" }))).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    TestService::assert_error(&s.poll("memo-1", &op, &fresh).await, 401, 401002);

    let g = s
        .service(
            Method::PUT,
            "/enrollmentGroups/memo-g",
            Some(json!({ "enrollmentGroupId": "memo-g", "attestation": { "type": "symmetricKey" } })),
        )
        .await;
    let gkey = g.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    let dk = dps_crypto::derive_device_key(&gkey, "memo-g-1").expect("derives the device key");
    let gsas = s.device_sas("memo-g-1", &dk, s.now() + 3600);
    let gop = s.register("memo-g-1", &gsas, "{}").await.body["operationId"].as_str().unwrap_or_default().to_owned();
    assert_eq!(s.poll_done("memo-g-1", &gop, &gsas).await.status, 200);
    assert_eq!(s.service(Method::DELETE, "/enrollmentGroups/memo-g", None).await.status, 204);
    TestService::assert_error(&s.poll("memo-g-1", &gop, &gsas).await, 401, 401002);
}

/// An assignment normally ends within milliseconds: a poll of one this instance runs waits for its outcome
/// (at most `POLL_WAIT`), so the device's first poll gets `assigned` and it needs no second one.
#[tokio::test]
async fn the_first_poll_gets_the_outcome() {
    let s = TestService::start().await;
    for id in ["first-1", "first-2", "first-3"] {
        let key = s.enroll(id, json!({})).await;
        let sas = s.device_sas(id, &key, s.now() + 3600);
        let a = s.register(id, &sas, "{}").await;
        assert_eq!(a.status, 202, "{}", a.body);
        let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
        let first = s.poll(id, &op, &sas).await;
        assert_eq!((first.status, &first.body["status"]), (200, &json!("assigned")), "{}", first.body);
    }
}
