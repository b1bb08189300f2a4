//! Service API over HTTPS (§5): authorisation, etags, paging, bulk, errors.

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn authorisation_is_required_and_checked() {
    let s = TestService::start().await;
    let none = s.send(Method::GET, "/enrollments/x", None, &[], None).await;
    TestService::assert_error(&none, 401, 401002);
    let forged = s.service_sas().replace("sig=", "sig=AAAA");
    TestService::assert_error(&s.send(Method::GET, "/enrollments/x", Some(&forged), &[], None).await, 401, 401002);
    TestService::assert_error(&s.service(Method::GET, "/enrollments/x", None).await, 404, 404202);
}

#[tokio::test]
async fn etags_guard_updates_and_deletes() {
    let s = TestService::start().await;
    let doc = json!({ "registrationId": "e1", "attestation": { "type": "symmetricKey" } });
    let created = s.service(Method::PUT, "/enrollments/e1", Some(doc.clone())).await;
    let etag = created.body["etag"].as_str().unwrap_or_default().to_owned();
    let sas = s.service_sas();
    let put = |m: &'static str| {
        let mut d = created.body.clone();
        d["deviceId"] = json!(m);
        d.to_string().into_bytes()
    };
    let stale = s.send(Method::PUT, "/enrollments/e1", Some(&sas), &[("if-match", "\"stale\"")], Some(put("a"))).await;
    TestService::assert_error(&stale, 412, 412002);
    let ok = s.send(Method::PUT, "/enrollments/e1", Some(&sas), &[("if-match", &etag)], Some(put("b"))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_ne!(ok.body["etag"].as_str(), Some(etag.as_str()));
    assert_eq!(ok.body["createdDateTimeUtc"], created.body["createdDateTimeUtc"]);
    let del = s.send(Method::DELETE, "/enrollments/e1", Some(&sas), &[("if-match", &etag)], None).await;
    TestService::assert_error(&del, 412, 412002);
    let del = s.send(Method::DELETE, "/enrollments/e1", Some(&sas), &[("if-match", "*")], None).await;
    assert_eq!(del.status, 204);
    TestService::assert_error(&s.service(Method::DELETE, "/enrollments/e1", None).await, 404, 404202);
}

#[tokio::test]
async fn bad_service_input_gets_clear_errors() {
    let s = TestService::start().await;
    let sas = s.service_sas();
    let bad = s.send(Method::PUT, "/enrollments/x", Some(&sas), &[], Some(b"{oops".to_vec())).await;
    TestService::assert_error(&bad, 400, 400001);
    let mismatch =
        s.service(Method::PUT, "/enrollments/x", Some(json!({ "registrationId": "y", "attestation": { "type": "symmetricKey" } }))).await;
    TestService::assert_error(&mismatch, 400, 400004);
    let badkey = s
        .service(
            Method::PUT,
            "/enrollments/x",
            Some(json!({ "registrationId": "x", "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "c2hvcnQ=" } } })),
        )
        .await;
    TestService::assert_error(&badkey, 400, 400004);
    let hub = s
        .service(
            Method::PUT,
            "/enrollments/x",
            Some(json!({ "registrationId": "x", "attestation": { "type": "symmetricKey" }, "iotHubs": ["not-linked.example"] })),
        )
        .await;
    TestService::assert_error(&hub, 400, 400004);
    let tpm_group = s
        .service(
            Method::PUT,
            "/enrollmentGroups/g",
            Some(json!({ "enrollmentGroupId": "g", "attestation": { "type": "tpm", "tpm": { "endorsementKey": "AAAA" } } })),
        )
        .await;
    TestService::assert_error(&tpm_group, 400, 400004);
    TestService::assert_error(&s.service(Method::PATCH, "/enrollments/x", None).await, 405, 405001);
    TestService::assert_error(&s.service(Method::GET, "/nowhere", None).await, 404, 404204);
    let weight = s.service(Method::PUT, "/linkedHubs/h.example", Some(json!({ "hostName": "h.example", "allocationWeight": 0 }))).await;
    TestService::assert_error(&weight, 400, 400004);
    assert_eq!(s.service(Method::GET, "/linkedHubs", None).await.status, 200);
}

#[tokio::test]
async fn queries_page_and_bulk_operations_report_per_item() {
    let s = TestService::start().await;
    let items: Vec<_> =
        (0..23).map(|i| json!({ "registrationId": format!("bulk-{i:02}"), "attestation": { "type": "symmetricKey" } })).collect();
    let created = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": items }))).await;
    assert_eq!(created.body, json!({ "isSuccessful": true, "errors": [] }));
    let again = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": [items[0].clone()] }))).await;
    assert_eq!(again.body["isSuccessful"], false);
    assert_eq!(again.body["errors"][0]["errorCode"], 409201);
    assert_eq!(again.body["errors"][0]["registrationId"], "bulk-00");

    let sas = s.service_sas();
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let mut h = vec![("x-ms-max-item-count", "10")];
        let c = continuation.clone().unwrap_or_default();
        if continuation.is_some() {
            h.push(("x-ms-continuation", c.as_str()));
        }
        let page =
            s.send(Method::POST, "/enrollments/query", Some(&sas), &h, Some(br#"{"query":"SELECT * FROM enrollments"}"#.to_vec())).await;
        assert_eq!(page.headers.get("x-ms-item-type").and_then(|v| v.to_str().ok()), Some("Enrollment"));
        let ids: Vec<String> =
            page.body.as_array().into_iter().flatten().filter_map(|e| e["registrationId"].as_str().map(str::to_owned)).collect();
        assert!(ids.len() <= 10);
        seen.extend(ids);
        continuation = page.headers.get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_owned);
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 23);
    let deleted = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "delete", "enrollments": items }))).await;
    assert_eq!(deleted.body["isSuccessful"], true);
}

/// §1.4: enrollment creation refuses a registration id that starts with a special character (PUT and bulk),
/// with the rule the device end applies.
#[tokio::test]
async fn enrollment_registration_ids_start_with_a_letter_or_a_digit() {
    let s = TestService::start().await;
    for id in ["-dev", ".dev", "_dev", ":dev"] {
        let doc = json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
        let put = s.service(Method::PUT, &format!("/enrollments/{id}"), Some(doc.clone())).await;
        TestService::assert_error(&put, 400, 400004);
        assert!(put.body["message"].as_str().is_some_and(|m| m.contains("must start with a letter or a digit")), "{id}: {}", put.body);
        let bulk = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": [doc] }))).await;
        assert_eq!(bulk.body["isSuccessful"], false, "{id}: {}", bulk.body);
        assert_eq!(bulk.body["errors"][0]["errorCode"], 400004, "{id}: {}", bulk.body);
    }
    let ok =
        s.service(Method::PUT, "/enrollments/0dev-", Some(json!({ "registrationId": "0dev-", "attestation": { "type": "symmetricKey" } })));
    assert_eq!(ok.await.status, 200);
}

/// §5.2: `WHERE` filters with `=` and `AND` narrow the query (with paging and totals); what is not understood is a
/// 400 naming it, never everything; an absent body, `*` and `SELECT * FROM …` still list everything.
#[tokio::test]
async fn queries_filter_with_where_and_refuse_what_they_do_not_understand() {
    let s = TestService::start().await;
    for i in 0..6 {
        let status = if i % 2 == 0 { "enabled" } else { "disabled" };
        let doc = json!({ "registrationId": format!("q-{i}"), "deviceId": format!("dev-{}", i % 3), "provisioningStatus": status,
                          "attestation": { "type": "symmetricKey" } });
        assert_eq!(s.service(Method::PUT, &format!("/enrollments/q-{i}"), Some(doc)).await.status, 200);
    }
    for (id, kind) in [("gs", json!({ "type": "symmetricKey" })), ("gs2", json!({ "type": "symmetricKey" }))] {
        let doc =
            json!({ "enrollmentGroupId": id, "attestation": kind, "provisioningStatus": if id == "gs" { "enabled" } else { "disabled" } });
        assert_eq!(s.service(Method::PUT, &format!("/enrollmentGroups/{id}"), Some(doc)).await.status, 200);
    }
    let sas = s.service_sas();
    let query = |path: &'static str, q: &str, max: &'static str, continuation: Option<String>| {
        let body = json!({ "query": q }).to_string().into_bytes();
        let sas = sas.clone();
        let s = &s;
        async move {
            let mut h = vec![("x-ms-max-item-count", max)];
            let c = continuation.unwrap_or_default();
            if !c.is_empty() {
                h.push(("x-ms-continuation", c.as_str()));
            }
            s.send(Method::POST, path, Some(&sas), &h, Some(body)).await
        }
    };
    let ids = |a: &common::Answer, member: &str| -> Vec<String> {
        a.body.as_array().into_iter().flatten().filter_map(|e| e[member].as_str().map(str::to_owned)).collect()
    };
    let total = |a: &common::Answer| a.headers.get("x-dps-total-count").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let q = "select * FROM enrollments where provisioningStatus = 'enabled' AND deviceId != 'x'";
    TestService::assert_error(&query("/enrollments/query", q, "10", None).await, 400, 400004);
    let q = "SELECT * FROM enrollments WHERE provisioningStatus = 'enabled'";
    let first = query("/enrollments/query", q, "2", None).await;
    assert_eq!((first.status, ids(&first, "registrationId"), total(&first)), (200, vec!["q-0".into(), "q-2".into()], Some("3".into())));
    let cont = first.headers.get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert!(cont.is_some(), "a second page remains");
    let second = query("/enrollments/query", q, "2", cont).await;
    assert_eq!(ids(&second, "registrationId"), ["q-4"]);
    assert!(second.headers.get("x-ms-continuation").is_none());
    let both =
        query("/enrollments/query", "SELECT * FROM enrollments WHERE deviceId = \"dev-1\" AND provisioningStatus = 'disabled'", "10", None)
            .await;
    assert_eq!(ids(&both, "registrationId"), ["q-1"]);
    let groups = query("/enrollmentGroups/query", "SELECT * FROM enrollmentGroups WHERE provisioningStatus = 'disabled'", "10", None).await;
    assert_eq!((ids(&groups, "enrollmentGroupId"), total(&groups)), (vec!["gs2".into()], Some("1".into())));
    assert_eq!(groups.headers.get("x-ms-item-type").and_then(|v| v.to_str().ok()), Some("EnrollmentGroup"));

    for (path, q, says) in [
        ("/enrollments/query", "SELECT * FROM enrollments WHERE deviceId = 'dev-1' OR deviceId = 'dev-2'", "OR is not supported"),
        ("/enrollments/query", "SELECT * FROM enrollments WHERE deviceId LIKE 'dev%'", "LIKE"),
        ("/enrollments/query", "SELECT * FROM enrollments WHERE deviceId < 'dev-2'", "'<'"),
        ("/enrollments/query", "SELECT * FROM enrollments WHERE STARTSWITH(deviceId, 'dev')", "functions"),
        ("/enrollments/query", "SELECT * FROM devices", "'devices' is not a collection"),
        ("/enrollments/query", "SELECT * FROM enrollments WHERE colour = 'red'", "'colour' cannot be filtered"),
        ("/enrollments/query", "garbage", "a query is"),
        ("/enrollmentGroups/query", "SELECT * FROM enrollments", "is not a collection"),
        ("/enrollmentGroups/query", "SELECT * FROM enrollmentGroups WHERE registrationId = 'q-1'", "cannot be filtered"),
    ] {
        let a = query(path, q, "10", None).await;
        TestService::assert_error(&a, 400, 400004);
        assert!(a.body["message"].as_str().is_some_and(|m| m.contains(says)), "{q}: {}", a.body);
    }

    for q in ["", "*", "SELECT * FROM enrollments", "select * from ENROLLMENTS"] {
        assert_eq!(total(&query("/enrollments/query", q, "10", None).await), Some("6".into()), "{q}");
    }
    let no_body = s.send(Method::POST, "/enrollments/query", Some(&sas), &[], None).await;
    assert_eq!((no_body.status, total(&no_body)), (200, Some("6".into())));
}

/// §5.3 bulk modes, each item on its own: validation against linked hubs and CAs (read once per operation),
/// preconditions per item (`create` 409201, `updateIfMatchETag` 412002), the valid items written, the errors
/// in the items' order.
#[tokio::test]
async fn bulk_items_fail_alone_in_every_mode() {
    let s = TestService::start().await;
    let item = |id: &str| json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
    let mut unlinked = item("m-hub");
    unlinked["iotHubs"] = json!(["nowhere.example"]);
    let ca =
        json!({ "registrationId": "m-ca", "attestation": { "type": "x509", "x509": { "caReferences": { "primary": "no-such-ca" } } } });
    let items = [item("m-1"), unlinked, item("m-2"), ca, item("m-1")];
    let created = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "create", "enrollments": items }))).await;
    let failed = |body: &Value| -> Vec<(String, i64)> {
        body["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["registrationId"].as_str().unwrap_or_default().to_owned(), e["errorCode"].as_i64().unwrap_or_default()))
            .collect()
    };
    assert_eq!(
        failed(&created.body),
        [("m-hub".to_owned(), 400004), ("m-ca".to_owned(), 400004), ("m-1".to_owned(), 409201)],
        "{}",
        created.body
    );
    assert_eq!(created.body["isSuccessful"], false);
    let m1 = s.service(Method::GET, "/enrollments/m-1", None).await.body;
    let mut stale = m1.clone();
    stale["etag"] = json!("\"stale\"");
    stale["deviceId"] = json!("never");
    let mut fresh = s.service(Method::GET, "/enrollments/m-2", None).await.body;
    fresh["deviceId"] = json!("renamed");
    let updated =
        s.service(Method::POST, "/enrollments", Some(json!({ "mode": "updateIfMatchETag", "enrollments": [stale, fresh] }))).await;
    assert_eq!(failed(&updated.body), [("m-1".to_owned(), 412002)], "{}", updated.body);
    assert_eq!(s.service(Method::GET, "/enrollments/m-2", None).await.body["deviceId"], "renamed");
    let again = s.service(Method::GET, "/enrollments/m-1", None).await.body;
    assert_eq!(
        (again["etag"].clone(), again["deviceId"].clone()),
        (m1["etag"].clone(), m1["deviceId"].clone()),
        "a refused item writes nothing"
    );
    assert_eq!(again["createdDateTimeUtc"], m1["createdDateTimeUtc"]);
    let replaced = s.service(Method::POST, "/enrollments", Some(json!({ "mode": "update", "enrollments": [item("m-1")] }))).await;
    assert_eq!(replaced.body["isSuccessful"], true);
    let now = s.service(Method::GET, "/enrollments/m-1", None).await.body;
    assert_eq!(now["createdDateTimeUtc"], m1["createdDateTimeUtc"], "a replacement keeps the created time");
    assert_ne!(now["etag"], m1["etag"]);
}
