//! SAS tokens (§4.1, §5.1): the input is an `Authorization` value. Parsing, the audience, the expiry and
//! verification must not panic on any text; the service API's `authorize` refuses what it does not accept
//! with a 401 code; and a token built for the input's text as audience parses back with that audience and
//! verifies with its key only.

use dps_core::clock::ManualClock;
use dps_core::model::{AccessPolicy, Right};
use dps_crypto::{build_token, SasToken, Secret};

use crate::harness::epoch;

const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn check_parsed(text: &str) {
    if let Ok(t) = SasToken::parse(text) {
        let _ = (t.resource(), t.expiry(), t.key_name());
        assert!(!t.verify(b"not the key"), "a token verified with a key nobody signed with");
    }
}

fn check_authorize(text: &str) {
    let policy = AccessPolicy {
        name: "provisioningserviceowner".into(),
        primary_key: Secret::new(KEY),
        secondary_key: Secret::new(KEY),
        rights: Right::ALL.to_vec(),
    };
    let clock = ManualClock::new(epoch());
    let hosts = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    if let Err(e) = dps_core::access::authorize(Some(text), &[policy], &hosts, Right::EnrollmentRead, &clock) {
        assert_eq!(e.status(), 401, "a refused token answers {} ({})", e.code(), e.message);
    }
}

fn check_round_trip(resource: &str) {
    let key = dps_crypto::decode_key(KEY).unwrap_or_default();
    let token = build_token(&key, resource, 1_900_000_000, None);
    let parsed = SasToken::parse(&token).unwrap_or_else(|e| panic!("a built token does not parse ({e}): {token}"));
    assert_eq!(parsed.resource().ok().as_deref(), Some(resource), "the audience does not read back: {token}");
    assert_eq!(parsed.expiry(), 1_900_000_000);
    assert!(parsed.verify(&key), "a built token does not verify: {token}");
}

/// SAS parsing and verification on arbitrary text.
pub fn sas_token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_parsed(&text);
    check_authorize(&text);
    check_round_trip(&text);
}
