//! TPM attestation against a real software TPM (§4.4): each test starts its own swtpm (fresh endorsement seed),
//! so these also prove that blobs built in pure Rust by `dps_crypto::tpm` (§4.4.5) are accepted by a TPM.
//! Needs `swtpm` and `tpm2-tools`; without them the tests fail with a message saying what to install.
#![cfg(feature = "tpm")]

use std::process::Command;

use base64::Engine;
use dps_crypto::tpm::{self as ctpm, RsaPublic};
use dps_crypto::SasToken;
use dps_device::swtpm::Swtpm;
use dps_device::tpm::TpmDevice;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

fn swtpm() -> Swtpm {
    Swtpm::start().expect("start")
}

fn open(tpm: &Swtpm) -> TpmDevice {
    TpmDevice::open(&tpm.tcti()).expect("opens")
}

fn random_key(len: usize) -> Vec<u8> {
    let mut k = vec![0u8; len];
    rand::thread_rng().fill_bytes(&mut k);
    k
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// The blob the service would send this device for key `k` (§4.4.5).
fn blob_for(device: &TpmDevice, k: &[u8]) -> Vec<u8> {
    let ek = RsaPublic::from_tpm2b(device.endorsement_key()).expect("EK public area");
    let srk = RsaPublic::from_tpm2b(device.storage_root_key()).expect("SRK public area");
    ctpm::build_authentication_key(&ek, &srk, k, b"hub.example.net").expect("blob")
}

/// `tpm2_readpublic -c HANDLE -o FILE` through TPM2TOOLS_TCTI: the TPM2B_PUBLIC as tpm2-tools sees it.
fn tpm2_readpublic(tpm: &Swtpm, handle: u32) -> Vec<u8> {
    let out = tpm.state_dir().join(format!("{handle:08x}.pub"));
    let status = Command::new("tpm2_readpublic")
        .args(["-c", &format!("{handle:#010x}"), "-o"])
        .arg(&out)
        .env("TPM2TOOLS_TCTI", tpm.tcti())
        .output()
        .unwrap_or_else(|e| panic!("tpm2_readpublic (Debian package tpm2-tools) could not run: {e}"));
    assert!(status.status.success(), "tpm2_readpublic failed: {}", String::from_utf8_lossy(&status.stderr));
    std::fs::read(&out).expect("tpm2_readpublic output")
}

// §4.4.1 keys, §4.4.2 registration id.
#[test]
fn ek_and_srk_are_created_persisted_and_read_the_same_by_tpm2_tools() {
    let tpm = swtpm();
    let (ek, srk, id) = {
        let device = open(&tpm);
        (device.endorsement_key().to_vec(), device.storage_root_key().to_vec(), device.registration_id())
    };
    let ek_public = RsaPublic::from_tpm2b(&ek).expect("EK is RSA-2048");
    assert_eq!(ek_public.attributes(), 0x0003_00B2, "EK template attributes (§4.4.1)");
    assert_eq!(
        ek_public.auth_policy(),
        &hex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")[..],
        "EK policy = PolicySecret(endorsement)"
    );
    let srk_public = RsaPublic::from_tpm2b(&srk).expect("SRK is RSA-2048");
    assert_eq!(srk_public.attributes(), 0x0003_0472, "SRK template attributes (§4.4.1)");
    assert!(srk_public.auth_policy().is_empty());

    assert_eq!(id.len(), 52);
    assert!(id.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{id}");
    assert_eq!(id, ctpm::registration_id(&ek));

    // Persisted: a second open reads the same keys instead of creating new ones, and tpm2-tools agrees.
    let again = open(&tpm);
    assert_eq!(again.endorsement_key(), &ek[..]);
    assert_eq!(again.storage_root_key(), &srk[..]);
    drop(again); // swtpm serves one connection at a time
    assert_eq!(tpm2_readpublic(&tpm, ctpm::EK_HANDLE), ek, "EK as read by tpm2_readpublic");
    assert_eq!(tpm2_readpublic(&tpm, ctpm::SRK_HANDLE), srk, "SRK as read by tpm2_readpublic");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&ek);
    assert_eq!(ctpm::ek_matches(&tpm2_readpublic(&tpm, ctpm::EK_HANDLE), &b64), Ok(true));
}

// §4.4.3 steps 1–4 and 6, §4.4.5: keys of 16, 32 and 64 bytes, each on a fresh TPM.
#[test]
fn rust_built_blobs_activate_on_fresh_tpms_and_the_tpm_signs_with_k() {
    for len in [16, 32, 64] {
        let tpm = swtpm();
        let mut device = open(&tpm);
        let k = random_key(len);
        device.activate_identity_key(&blob_for(&device, &k)).unwrap_or_else(|e| panic!("{len}-byte key: {e:#}"));

        let data = b"myhub.azure-devices.net/devices/dev1\n1234";
        assert_eq!(device.sign(data).expect("TPM2_HMAC"), hmac_sha256(&k, data), "{len}-byte key");

        let id = device.registration_id();
        let token = device.sas_token("0ne0001A2B3", &id, 1_900_000_000, Some("registration")).expect("SAS token");
        let parsed = SasToken::parse(&token).expect("a SharedAccessSignature");
        assert!(parsed.verify(&k), "the service verifies the TPM's token with K (§4.1): {token}");
        assert_eq!(parsed.resource().as_deref(), Ok(format!("0ne0001A2B3/registrations/{id}").as_str()));
        assert_eq!(parsed.key_name(), Some("registration"));
    }
}

// §4.4.3 step 4: "replaced at every activation" (K1 for the SAS, then K2 for the hub).
#[test]
fn a_second_activation_replaces_the_first_key() {
    let tpm = swtpm();
    let mut device = open(&tpm);
    let (k1, k2) = (random_key(32), random_key(32));
    let data = b"hub/devices/dev1\n1234";
    device.activate_identity_key(&blob_for(&device, &k1)).expect("first activation");
    assert_eq!(device.sign(data).expect("HMAC with K1"), hmac_sha256(&k1, data));
    device.activate_identity_key(&blob_for(&device, &k2)).expect("second activation");
    assert_eq!(device.sign(data).expect("HMAC with K2"), hmac_sha256(&k2, data));
    drop(device);
    // Persistent: a new session on the same TPM still signs with K2.
    assert_eq!(open(&tpm).sign(data).expect("HMAC after reopening"), hmac_sha256(&k2, data));
}

#[test]
fn a_corrupted_or_foreign_blob_is_an_error_and_leaks_no_tpm_slot() {
    let tpm = swtpm();
    let mut device = open(&tpm);
    assert!(device.sign(b"x").is_err(), "no identity key before the first activation");
    let k = random_key(32);
    let good = blob_for(&device, &k);
    // Offsets inside items 1 (credential HMAC), 2 (EK seed), 3 (duplicate), 4 (SRK seed), 5 (public), and cuts.
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0x01;
        b
    };
    let item3 = 2 + 52 + 2 + 256 + 2;
    let item4 = item3 + 142 + 2;
    let item5 = item4 + 256 + 2;
    // Each damage is caught where the TPM (or the parser) checks it: the credential's HMAC or the EK seed at
    // ActivateCredential, the duplicate, the SRK seed or the public area's binding at Import, cuts when parsing.
    let broken = [
        (flip(2 + 10), "ActivateCredential"),
        (flip(2 + 52 + 2 + 100), "ActivateCredential"),
        (flip(item3 + 40), "Import"),
        (flip(item4 + 100), "Import"),
        (flip(item5 + 47), "Import"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        (good[..300].to_vec(), "truncated"),
        ([good.as_slice(), &[0]].concat(), "unexpected bytes"),
        (vec![0xFF; 20], "truncated"),
        (Vec::new(), "truncated"),
    ];
    // More failures than the TPM has object (3) or loaded-session slots: a leak would make the last step fail.
    for round in 0..2 {
        for (i, (blob, stage)) in broken.iter().enumerate() {
            let err = format!("{:#}", device.activate_identity_key(blob).expect_err("a broken blob must be refused"));
            assert!(err.contains(stage), "round {round}, blob {i}: expected a failure at {stage}, got: {err}");
        }
    }
    // A blob made for another TPM (other EK and SRK) is refused at ActivateCredential.
    let other_tpm = swtpm();
    let other = open(&other_tpm);
    let foreign = blob_for(&other, &k);
    let err = device.activate_identity_key(&foreign).expect_err("a blob for another TPM");
    assert!(format!("{err:#}").contains("ActivateCredential"), "{err:#}");

    device.activate_identity_key(&good).expect("the intact blob still activates");
    assert_eq!(device.sign(b"ok").expect("HMAC"), hmac_sha256(&k, b"ok"));
    assert!(device.sign(&vec![0u8; 1025]).is_err(), "inputs above one TPM2_HMAC buffer are refused");
    assert_eq!(device.sign(&vec![7u8; 1024]).expect("1024 bytes"), hmac_sha256(&k, &[7u8; 1024]));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}
