//! The master key in the OS keyring (#15 item 4, the desktop's source), against a real Secret Service: GNOME
//! Keyring on a private D-Bus session. Run under `scripts/with-keyring.sh` (`make test-rust` does); the entries
//! are read back with `secret-tool` (libsecret), an implementation independent of the `keyring` crate.
//!
//! Covered: a new data directory's key goes to the keyring (no key file, a marker instead) and later starts find
//! it there without being told; a rotation while devices register replaces the entry and leaves nothing the old
//! key opens; an interrupted rotation's `.next` entry is taken up; a lost entry beside a database stops the start
//! (no second key); `dps keys reset` writes the new key to the keyring and the service works on; the desktop's preference picks the
//! keyring for a new data directory only.

mod common;

use std::process::Command;

use common::TestService;
use dps_crypto::MasterKey;
use dps_service::config::{MasterKeySource, Overrides};
use dps_service::keys::{choose_source, KeySource};
use dps_service::os_keyring::{KeyringHome, MARKER_FILE};
use reqwest::Method;
use serde_json::json;

fn session_bus() {
    assert!(
        std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
        "no D-Bus session: run this test under scripts/with-keyring.sh (make test-rust does)"
    );
}

fn secret_tool(args: &[&str]) -> (bool, String) {
    let out = Command::new("secret-tool").args(args).output().unwrap_or_else(|e| panic!("secret-tool: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The key stored in the entry `account`, read with libsecret; `None` when there is none.
fn lookup(account: &str) -> Option<MasterKey> {
    let (found, text) = secret_tool(&["lookup", "service", dps_service::os_keyring::SERVICE, "username", account]);
    found.then(|| MasterKey::from_base64(&text).unwrap_or_else(|e| panic!("{account}: {e}")))
}

fn home(s: &TestService) -> KeyringHome {
    KeyringHome::from_marker(s.dir.path()).expect("from marker").unwrap_or_else(|| panic!("no {MARKER_FILE}"))
}

fn keyring_flags() -> Overrides {
    Overrides { master_key_source: Some(MasterKeySource::Keyring), ..Default::default() }
}

async fn start_in_keyring() -> TestService {
    session_bus();
    let s = TestService::start_with(keyring_flags()).await;
    assert!(!s.dir.path().join("master.key").exists(), "no key file when the key is in the keyring");
    s
}

#[tokio::test]
async fn a_new_data_directory_keeps_its_key_in_the_keyring_and_finds_it_again() {
    let mut s = start_in_keyring().await;
    let home = home(&s);
    let key = lookup(&home.account).unwrap_or_else(|| panic!("secret-tool finds no entry for {}", home.account));
    assert_eq!(key.id(), current_key_id(&s));
    let device_key = s.enroll("kr-dev", json!({})).await;
    // Told nothing (auto), the next start finds the key where the marker says.
    s.extra = Overrides::default();
    s.restart().await;
    let a = s.provision("kr-dev", &device_key).await;
    assert_eq!(a.body["status"], "assigned", "{}", a.body);
    assert!(!s.dir.path().join("master.key").exists());
}

#[tokio::test]
async fn a_rotation_replaces_the_keyring_entry_and_the_old_key_opens_nothing() {
    let mut s = start_in_keyring().await;
    let home = home(&s);
    let old = lookup(&home.account).unwrap_or_else(|| panic!("no entry"));
    let device_key = s.enroll("kr-rot", json!({})).await;
    let (rotation, registered) = tokio::join!(s.service(Method::POST, "/service/keys/rotate", None), s.provision("kr-rot", &device_key));
    assert_eq!(rotation.status, 200, "{}", rotation.body);
    assert_eq!(registered.body["status"], "assigned", "{}", registered.body);
    let new = lookup(&home.account).unwrap_or_else(|| panic!("no entry after the rotation"));
    assert_eq!(
        (rotation.body["previousKeyId"].as_str(), rotation.body["keyId"].as_str()),
        (Some(old.id().as_str()), Some(new.id().as_str()))
    );
    assert_ne!(old.id(), new.id());
    assert!(lookup(home.next().account_name()).is_none(), "the .next entry is gone after the commit");
    assert_no_value_opens_with(&s, &old).await;
    s.restart().await;
    let a = s.provision("kr-rot", &device_key).await;
    assert_eq!(a.body["status"], "assigned", "{}", a.body);
}

fn current_key_id(s: &TestService) -> String {
    s.running.as_ref().map(|r| r.store.master_key().id()).unwrap_or_else(|| panic!("not running"))
}

/// No stored value opens with the old key; each opens with the current one.
async fn assert_no_value_opens_with(s: &TestService, old: &MasterKey) {
    let store = s.running.as_ref().map(|r| r.store.clone()).unwrap_or_else(|| panic!("not running"));
    let sealed = store.sealed_values().await.expect("sealed values");
    assert!(sealed.len() >= 3, "{} sealed values", sealed.len());
    for (table, aad, v) in &sealed {
        assert!(old.open(v, aad).is_err(), "{table} {aad} still opens with the old key");
    }
}

#[tokio::test]
async fn an_interrupted_rotation_is_finished_with_the_waiting_key() {
    let mut s = start_in_keyring().await;
    let home = home(&s);
    let device_key = s.enroll("kr-pending", json!({})).await;
    s.stop().await;
    let (waiting, text) = MasterKey::generate();
    let label = "dps test: the waiting key of a rotation";
    let stored = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf %s '{text}' | secret-tool store --label='{label}' service {} username '{}'",
            dps_service::os_keyring::SERVICE,
            home.next().account_name()
        ))
        .status()
        .expect("status");
    assert!(stored.success());
    s.restart().await;
    let r = s.service(Method::POST, "/service/keys/rotate", None).await;
    assert_eq!((r.status, r.body["keyId"].as_str()), (200, Some(waiting.id().as_str())), "{}", r.body);
    assert_eq!(lookup(&home.account).map(|k| k.id()), Some(waiting.id()));
    let a = s.provision("kr-pending", &device_key).await;
    assert_eq!(a.body["status"], "assigned", "{}", a.body);
}

#[tokio::test]
async fn a_lost_entry_beside_a_database_stops_the_start_and_reset_writes_a_new_key_there() {
    let mut s = start_in_keyring().await;
    let home = home(&s);
    s.enroll("kr-lost", json!({})).await;
    s.stop().await;
    let (cleared, _) = secret_tool(&["clear", "service", dps_service::os_keyring::SERVICE, "username", &home.account]);
    assert!(cleared && lookup(&home.account).is_none());
    let config = dps_service::Config::load(s.dir.path().to_path_buf(), None, &Default::default(), keyring_flags()).expect("loads");
    let listeners = dps_service::bind(&config).expect("binds");
    let e = dps_service::start(&config, listeners, s.clock.clone()).await.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(e.contains("holds no master key") && e.contains("dps keys reset"), "{e}");
    assert!(lookup(&home.account).is_none(), "no second key was made");
    let changed = dps_service::reset_master_key(&config).await.expect("reset master key");
    assert!(changed >= 1, "the enrollment's keys were dropped");
    let new = lookup(&home.account).unwrap_or_else(|| panic!("reset wrote no key to the keyring"));
    s.restart().await;
    assert_eq!(current_key_id(&s), new.id());
    let enrollment = s.service(Method::GET, "/enrollments/kr-lost", None).await;
    assert_eq!(enrollment.status, 404, "a symmetric-key enrollment goes with its keys (README): {}", enrollment.body);
    let device_key = s.enroll("kr-after-reset", json!({})).await;
    let a = s.provision("kr-after-reset", &device_key).await;
    assert_eq!(a.body["status"], "assigned", "{}", a.body);
}

#[tokio::test]
async fn the_desktop_preference_picks_the_keyring_for_a_new_data_directory_only() {
    session_bus();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = dps_service::Config::load(dir.path().to_path_buf(), None, &Default::default(), Overrides::default()).expect("loads");
    assert_eq!(choose_source(&config).ok(), Some(KeySource::File(dir.path().join("master.key"))), "dps serve: a file");
    config.keyring_preferred = true;
    assert_eq!(choose_source(&config).ok(), Some(KeySource::Keyring(KeyringHome::for_data_dir(dir.path()))), "desktop: the keyring");
    std::fs::write(dir.path().join("master.key"), "x").expect("writes");
    assert_eq!(
        choose_source(&config).ok(),
        Some(KeySource::File(dir.path().join("master.key"))),
        "a data directory with a key file keeps it"
    );
    config.master_key_source = MasterKeySource::File;
    std::fs::remove_file(dir.path().join("master.key")).expect("removes the file");
    assert!(matches!(choose_source(&config), Ok(KeySource::File(_))), "an explicit source wins");
}
