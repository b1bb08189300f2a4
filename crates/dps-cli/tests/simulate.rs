//! `dps simulate` against a `dps serve` of its own (#16 item 7): the built-in scenarios are listed; one runs to
//! its expected outcome (devices over the service's listeners) and exits 0 with a summary per step; its reset
//! leaves nothing behind; a scenario file whose expectation does not hold exits non-zero and says which device
//! ended where.

mod common;

use common::Serve;
use serde_json::Value;

fn json(o: &std::process::Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {}", String::from_utf8_lossy(&o.stderr)))
}

#[test]
fn list_names_every_built_in_scenario() {
    let s = Serve::start();
    let o = s.dps(&["simulate", "list", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let names: Vec<String> = json(&o).as_array().into_iter().flatten().filter_map(|r| r["name"].as_str().map(str::to_owned)).collect();
    for want in ["evenly-weighted", "static", "reprovisioning", "key-rolling", "disabled"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
}

#[test]
fn a_scenario_runs_to_its_outcome_and_its_reset_leaves_nothing() {
    let s = Serve::start();
    let o = s.dps(&["simulate", "scenario", "reprovisioning", "--output", "json"], None);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{err}");
    let steps = json(&o);
    let rows = steps.as_array().unwrap_or_else(|| panic!("{steps}"));
    assert_eq!(rows.len(), 7, "{steps}");
    assert!(rows.iter().all(|r| r["result"] == "ok"), "{steps}");
    assert_eq!(rows[2]["perHub"]["reprov-b.demo.local"], 3, "{steps}");
    assert!(err.contains("re-provisioning with migration"), "each step's explanation is printed: {err}");
    // What the run made is there to look at, until the reset.
    let kept = s.dps(&["enrollment-group", "show", "--group-id", "demo-reprov", "--output", "json"], None);
    assert!(kept.status.success(), "{}", String::from_utf8_lossy(&kept.stderr));
    let r = s.dps(&["simulate", "reset", "reprovisioning"], None);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(String::from_utf8_lossy(&r.stderr).contains("nothing of it is left"));
    let gone = s.dps(&["enrollment-group", "show", "--group-id", "demo-reprov"], None);
    assert!(!gone.status.success(), "the group is still there after the reset");
    let hubs = s.dps(&["hub", "list", "--output", "json"], None);
    assert!(!String::from_utf8_lossy(&hubs.stdout).contains("reprov-"), "{}", String::from_utf8_lossy(&hubs.stdout));
}

#[test]
fn a_scenario_file_that_does_not_hold_exits_non_zero_and_says_why() {
    let s = Serve::start();
    let file = s.data().join("wrong.toml");
    let text = r#"
        name = "wrong"
        title = "A wrong expectation"
        summary = "The devices go to hub b; the file expects hub a."
        [[hubs]]
        hostName = "wrong-a.demo.local"
        [[hubs]]
        hostName = "wrong-b.demo.local"
        [[groups]]
        enrollmentGroupId = "demo-wrong"
        attestation = { type = "symmetricKey" }
        allocationPolicy = "static"
        iotHubs = ["wrong-b.demo.local"]
        [[steps]]
        register = { group = "demo-wrong", count = 2, transport = "amqp" }
        expect = { hub = "wrong-a.demo.local" }
    "#;
    std::fs::write(&file, text).expect("writes");
    let o = s.dps(&["simulate", "scenario", file.to_str().unwrap_or_default(), "--reset-after"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("demo-wrong-dev-1: expected hub wrong-a.demo.local, got wrong-b.demo.local"), "{err}");
    assert!(err.contains("did not end as expected"), "{err}");
    let bad = s.dps(&["simulate", "scenario", "no-such-scenario"], None);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("neither a built-in scenario"));
}

/// `dps simulate devices`: the Simulate page's devices from a terminal — they run in the service, the CLI follows
/// them and prints one row per device; a fault's devices end with their DPS code, and the exit status says
/// whether a run without a fault placed every device.
#[test]
fn devices_start_in_the_service_and_the_summary_names_each_outcome() {
    let s = Serve::start();
    let o = s.dps(&["simulate", "devices", "--transport", "amqpWs", "--count", "3", "--prefix", "cli-dev-", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json(&o);
    let rows = rows.as_array().unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r["state"] == "assigned" && r["assignedHub"].is_string()), "{rows:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 assigned"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.dps(&["registration", "show", "--registration-id", "cli-dev-1", "--output", "json"], None);
    assert!(o.status.success(), "the run left its record: {}", String::from_utf8_lossy(&o.stderr));

    let o = s.dps(&["simulate", "devices", "--count", "2", "--prefix", "cli-tidy-", "--clean-up", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stderr);
    assert!(said.contains("cleaned up: 2 registration records, 2 hub identities and 0 enrollments removed"), "{said}");
    let o = s.dps(&["registration", "show", "--registration-id", "cli-tidy-1"], None);
    assert!(!o.status.success(), "the clean-up removed the record");

    let o = s.dps(&["simulate", "devices", "--count", "2", "--fault", "wrongKey", "--output", "json"], None);
    assert!(o.status.success(), "a fault's refusals are the expected outcome: {}", String::from_utf8_lossy(&o.stderr));
    assert!(json(&o).as_array().into_iter().flatten().all(|r| r["errorCode"] == 401002), "{}", String::from_utf8_lossy(&o.stdout));

    let o = s.dps(&["simulate", "devices", "--count", "3", "--fault", "wrongKey", "--faulty", "1", "--output", "json"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let states: Vec<Value> = json(&o).as_array().into_iter().flatten().map(|r| r["state"].clone()).collect();
    assert_eq!(states, ["refused", "assigned", "assigned"], "the first device only is faulty");

    let o = s.dps(&["simulate", "devices", "--count", "1", "--group", "no-such-group"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no-such-group"), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.dps(&["simulate", "devices", "--fault", "carrierPigeon"], None);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("carrierPigeon"), "{}", String::from_utf8_lossy(&o.stderr));
}
