//! `dps enrollment import` and `dps enrollment-group import` against a `dps serve` of their own (port 0
//! listeners, a temporary data directory): JSON array, NDJSON and standard input; per-item failures reported
//! with their DPS code (§5.3 bulk results) and a non-zero exit; the items are there afterwards.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

mod common;

use common::Serve;

/// The JSON summary of an import and whether it exited with success.
fn import(s: &Serve, what: &str, file: &Path, extra: &[&str]) -> (Value, bool, String) {
    let mut args = vec![what, "import", file.to_str().expect("utf-8 path"), "--output", "json"];
    args.extend(extra);
    let o = s.dps(&args, None);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {}", String::from_utf8_lossy(&o.stderr)));
    (v, o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn enrollment(id: &str) -> Value {
    json!({ "registrationId": id, "attestation": { "type": "symmetricKey" }, "initialTwin": { "tags": { "batch": "import" } } })
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write the input");
    p
}

/// Every enrollment on the service (through `dps enrollment list`).
fn listed(s: &Serve) -> Vec<String> {
    let o = s.dps(&["enrollment", "list", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).expect("JSON list");
    v.as_array().into_iter().flatten().filter_map(|e| e["registrationId"].as_str().map(str::to_owned)).collect()
}

#[test]
fn imports_a_json_array_and_ndjson_and_reports_each_failure_with_its_code() {
    let s = Serve::start();
    let dir = s.dir.path().to_owned();

    // 2,000 as a JSON array, in bulk operations of 300 (the last one shorter), 3 in flight.
    let array: Vec<Value> = (0..2000).map(|i| enrollment(&format!("arr-{i:04}"))).collect();
    let file = write(&dir, "array.json", &serde_json::to_string_pretty(&array).expect("JSON"));
    let (v, ok, err) = import(&s, "enrollment", &file, &["--batch", "300", "--parallel", "3"]);
    assert!(ok, "{v} {err}");
    assert_eq!((v["total"].as_u64(), v["imported"].as_u64(), v["failed"].as_u64()), (Some(2000), Some(2000), Some(0)), "{v}");
    assert!(v["perSecond"].as_f64().is_some_and(|r| r > 0.0), "{v}");

    // 2,000 as NDJSON with keys given; one repeats an id of the array (409201), one has an invalid id
    // (400004 from the service), one is not an enrollment at all (refused here, 400004, with its line).
    let mut lines: Vec<String> = (0..1997)
        .map(|i| {
            let mut e = enrollment(&format!("nd-{i:04}"));
            e["attestation"]["symmetricKey"] =
                json!({ "primaryKey": "cHJpbWFyeS1rZXktMTIzNDU2", "secondaryKey": "c2Vjb25kYXJ5LWtleS0xMjM0" });
            e.to_string()
        })
        .collect();
    lines.insert(10, enrollment("arr-0007").to_string());
    lines.insert(20, enrollment("-starts-with-a-dash").to_string());
    lines.insert(30, json!({ "registrationId": "nd-shape", "attestation": "symmetricKey" }).to_string());
    let file = write(&dir, "items.ndjson", &(lines.join("\n") + "\n"));
    let (v, ok, err) = import(&s, "enrollment", &file, &[]);
    assert!(!ok, "a failed item makes the exit non-zero: {v}");
    assert!(err.contains("3 of 2000 enrollments were not imported"), "{err}");
    assert_eq!((v["total"].as_u64(), v["imported"].as_u64(), v["failed"].as_u64()), (Some(2000), Some(1997), Some(3)), "{v}");
    assert_eq!(v["failedByCode"], json!({ "400004": 2, "409201": 1 }), "{v}");
    let failures = v["failures"].as_array().cloned().unwrap_or_default();
    let code_of = |id: &str| failures.iter().find(|f| f["id"] == id).map(|f| f["errorCode"].clone());
    assert_eq!(code_of("arr-0007"), Some(json!(409201)), "{v}");
    assert_eq!(code_of("-starts-with-a-dash"), Some(json!(400004)), "{v}");
    let shape = failures.iter().find(|f| f["id"] == "nd-shape").cloned().unwrap_or_default();
    assert_eq!((shape["errorCode"].as_u64(), shape["position"].as_u64()), (Some(400004), Some(31)), "{v}");

    let ids = listed(&s);
    assert_eq!(ids.len(), 3997);
    assert!(ids.iter().any(|i| i == "arr-1999") && ids.iter().any(|i| i == "nd-1996") && !ids.iter().any(|i| i == "nd-shape"));
    let o = s.dps(&["enrollment", "show", "--enrollment-id", "nd-0005", "--show-keys", "--output", "json"], None);
    let e: Value = serde_json::from_slice(&o.stdout).expect("JSON");
    assert_eq!(e["attestation"]["symmetricKey"]["primaryKey"], "cHJpbWFyeS1rZXktMTIzNDU2", "the given key is kept");
    assert_eq!(e["initialTwin"]["tags"]["batch"], "import");

    // --mode update replaces, from standard input.
    let input =
        serde_json::to_vec(&[json!({ "registrationId": "arr-0001", "attestation": { "type": "symmetricKey" }, "deviceId": "renamed" })])
            .expect("JSON");
    let o = s.dps(&["enrollment", "import", "-", "--mode", "update", "--output", "table"], Some(&input));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("imported 1 of 1 enrollments"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = s.dps(&["enrollment", "show", "--enrollment-id", "arr-0001", "--output", "json"], None);
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).expect("JSON")["deviceId"], "renamed");
}

#[test]
fn groups_import_the_same_way() {
    let s = Serve::start();
    let dir = s.dir.path().to_owned();
    let groups: Vec<Value> =
        (0..25).map(|i| json!({ "enrollmentGroupId": format!("grp-{i:02}"), "attestation": { "type": "symmetricKey" } })).collect();
    let file = write(&dir, "groups.json", &serde_json::to_string(&groups).expect("JSON"));
    let (v, ok, err) = import(&s, "enrollment-group", &file, &["--batch", "10"]);
    assert!(ok, "{v} {err}");
    assert_eq!(v["imported"].as_u64(), Some(25), "{v}");
    let o = s.dps(&["enrollment-group", "show", "--group-id", "grp-24", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = s.dps(&["enrollment", "import", "-"], Some(b"[]"));
    assert!(o.status.success(), "an empty input imports nothing: {}", String::from_utf8_lossy(&o.stderr));
}

/// Under the Azure limits profile a bulk operation holds at most 10 items: a larger --batch is refused before
/// anything is sent, naming the limit and the flag.
#[test]
fn the_azure_bulk_limit_is_named() {
    let s = Serve::start_with(&[("DPS_LIMITS", "azure")]);
    let items = serde_json::to_vec(&(0..20).map(|i| enrollment(&format!("az-{i}"))).collect::<Vec<_>>()).expect("JSON");
    let o = s.dps(&["enrollment", "import", "-"], Some(&items));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("at most 10 items") && err.contains("--batch 10"), "{err}");
    assert!(listed(&s).is_empty(), "nothing was sent");
    let o = s.dps(&["enrollment", "import", "-", "--batch", "10", "--output", "json"], Some(&items));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).expect("JSON")["imported"].as_u64(), Some(20));
}
