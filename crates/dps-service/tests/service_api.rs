//! Service API over HTTPS (§5): authorisation, etags, paging, bulk, errors.

mod common;

use common::TestService;
use reqwest::Method;
use serde_json::json;

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
