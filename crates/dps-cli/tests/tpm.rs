//! `dps tpm show|activate|sign` against a private software TPM (swtpm): the EK and registration id an
//! enrollment needs (§4.4.1, §4.4.2), and the two operations of an SDK's TPM security client (§4.4.3) — what
//! the Node interop suite's security client (tests/node/lib/tpm-security.js) runs.
#![cfg(feature = "tpm")]

use std::process::{Command, Output};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dps_crypto::tpm::{self as ctpm, RsaPublic};
use dps_device::swtpm::Swtpm;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde_json::Value;
use sha2::Sha256;

fn dps(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps")).args(args).env_remove("DPS_TPM_TCTI").output().unwrap_or_else(|e| panic!("dps: {e}"))
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn swtpm() -> Swtpm {
    Swtpm::start().expect("start")
}

/// `dps tpm show --output json` → (EK, SRK, registration id).
fn show(tpm: &Swtpm) -> (Vec<u8>, Vec<u8>, String) {
    let out = ok(dps(&["tpm", "show", "--tcti", &tpm.tcti(), "--output", "json"]), "tpm show");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("no {k} in {out}")).to_owned();
    let b64 = |k: &str| B64.decode(field(k)).unwrap_or_else(|e| panic!("{k}: {e}"));
    (b64("endorsementKey"), b64("storageRootKey"), field("registrationId"))
}

fn random_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    rand::thread_rng().fill_bytes(&mut k);
    k
}

fn blob_b64(ek: &[u8], srk: &[u8], key: &[u8]) -> String {
    let ek = RsaPublic::from_tpm2b(ek).expect("EK");
    let srk = RsaPublic::from_tpm2b(srk).expect("SRK");
    B64.encode(ctpm::build_authentication_key(&ek, &srk, key, b"hub.example.net").expect("blob"))
}

fn sign(tpm: &Swtpm, data: &[u8]) -> Output {
    dps(&["tpm", "sign", "--tcti", &tpm.tcti(), "--data-b64", &B64.encode(data)])
}

fn hmac_b64(key: &[u8], data: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    B64.encode(mac.finalize().into_bytes())
}

// §4.4.1–§4.4.2: the EK as an enrollment takes it, the registration id derived from it; stable across calls.
#[test]
fn show_prints_the_ek_and_its_registration_id() {
    let tpm = swtpm();
    let (ek, srk, id) = show(&tpm);
    let ek_public = RsaPublic::from_tpm2b(&ek).expect("the EK is an RSA-2048 TPM2B_PUBLIC");
    assert_eq!(ek_public.attributes(), 0x0003_00B2, "EK template (§4.4.1)");
    assert_eq!(RsaPublic::from_tpm2b(&srk).expect("SRK").attributes(), 0x0003_0472, "SRK template (§4.4.1)");
    assert_eq!(id, ctpm::registration_id(&ek));
    assert_eq!(show(&tpm), (ek.clone(), srk, id.clone()), "the keys are persisted, not re-created");

    // The text form is tpm_device_provision's.
    let out = ok(dps(&["tpm", "show", "--tcti", &tpm.tcti(), "--output", "table"]), "tpm show --output table");
    assert_eq!(out, format!("Registration Id:\n{id}\n\nEndorsement Key:\n{}\n", B64.encode(&ek)));
}

// §4.4.3: activate imports the blob's key, sign is HMAC-SHA256 with it; a blob made for another TPM is refused
// and leaves the previous key in place; the next blob replaces it.
#[test]
fn activate_then_sign_with_the_imported_key() {
    let tpm = swtpm();
    let (ek, srk, _) = show(&tpm);
    let data = b"0ne0001A2B3%2fregistrations%2fdev1\n1735689600";

    let no_key = sign(&tpm, data);
    assert!(!no_key.status.success() && text(&no_key).contains("activate a blob first"), "{}", text(&no_key));

    let k1 = random_key();
    ok(dps(&["tpm", "activate", "--tcti", &tpm.tcti(), "--blob", &blob_b64(&ek, &srk, &k1)]), "tpm activate");
    assert_eq!(ok(sign(&tpm, data), "tpm sign").trim(), hmac_b64(&k1, data));

    let other = swtpm();
    let (other_ek, other_srk, _) = show(&other);
    let foreign = dps(&["tpm", "activate", "--tcti", &tpm.tcti(), "--blob", &blob_b64(&other_ek, &other_srk, &random_key())]);
    assert!(!foreign.status.success(), "a blob for another TPM was accepted");
    assert!(text(&foreign).contains("ActivateCredential"), "{}", text(&foreign));
    assert_eq!(ok(sign(&tpm, data), "tpm sign").trim(), hmac_b64(&k1, data), "the previous key stays");

    let k2 = random_key();
    ok(dps(&["tpm", "activate", "--tcti", &tpm.tcti(), "--blob", &blob_b64(&ek, &srk, &k2)]), "tpm activate");
    assert_eq!(ok(sign(&tpm, data), "tpm sign").trim(), hmac_b64(&k2, data));
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let tpm = swtpm();
    let cases: [(&[&str], &str); 4] = [
        (&["tpm", "sign", "--tcti", &tpm.tcti(), "--data-b64", "not base64!"], "--data-b64 is not base64"),
        (&["tpm", "activate", "--tcti", &tpm.tcti(), "--blob", "AAAA"], "authenticationKey"),
        (&["tpm", "show", "--tcti", "nonsense:"], "TCTI"),
        (
            &[
                "device",
                "register",
                "--attestation",
                "tpm",
                "--transport",
                "mqtt",
                "--tcti",
                &tpm.tcti(),
                "--provisioning-host",
                "127.0.0.1:1",
                "--id-scope",
                "0ne0001A2B3",
                "--ca-file",
                "/dev/null",
            ],
            "DPS has none over MQTT",
        ),
    ];
    for (args, want) in cases {
        let o = dps(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
}
