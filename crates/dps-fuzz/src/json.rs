//! JSON documents of the service and device APIs (§1.4–1.5, §5.3): the first byte chooses the document's
//! type, the rest is its JSON. What deserialises must serialise and read back to the same document
//! (compared as the JSON that crosses the wire, floats within a few ulps: see [`same`]); enrollments and groups then go through the
//! service's validation (`Management::prepare_*`, as a `PUT` does) — refused with a 4xx DPS code, or
//! accepted as a document that round-trips too. A `query` body's text goes through the query parser.

use dps_core::api_version::Schema;
use dps_core::query::Collection;
use dps_core::DpsError;
use dps_proto::trace::DecisionTrace;
use dps_proto::{
    BulkEnrollmentGroupOperation, BulkEnrollmentOperation, CaCertificate, DeviceRegistration, DeviceRegistrationState, EnrollmentGroup,
    IndividualEnrollment, LinkedHub, QuerySpecification, RegistrationOperationStatus,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::harness::harness;

/// Deserialises `json` as `T`; when it does, the round trip must hold. Returns the document.
fn round_trip<T: DeserializeOwned + Serialize>(json: &[u8]) -> Option<T> {
    let doc: T = serde_json::from_slice(json).ok()?;
    let text = serde_json::to_string(&doc).unwrap_or_else(|e| panic!("a document read but does not write: {e}"));
    let again: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("a written document does not read back ({e}): {text}"));
    let text_again = serde_json::to_string(&again).unwrap_or_default();
    let (first, second) = (serde_json::from_str(&text).unwrap_or_default(), serde_json::from_str(&text_again).unwrap_or_default());
    assert!(same(&first, &second), "the round trip changed the document:\n{text}\n{text_again}");
    Some(doc)
}

/// Equal JSON, numbers within a few ulps: serde_json reads decimal text without correct rounding (its
/// `float_roundtrip` feature is off), so a float in a free-form member (`payload`, `initialTwin`, a trace's
/// unknown members) may come back one ulp off — corpus/json_documents/crash-float-last-digit.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy)),
        _ => a == b,
    }
}

fn check_refusal(e: &DpsError) {
    assert!((400..500).contains(&e.status()), "validation answered {} ({}): {}", e.status(), e.code(), e.message);
    assert_eq!(e.code() / 1000, i64::from(e.status()), "code and status disagree: {}", e.code());
}

fn validated<T: Serialize + DeserializeOwned>(result: Result<T, DpsError>) {
    match result {
        Ok(doc) => {
            let text = serde_json::to_vec(&doc).unwrap_or_default();
            assert!(round_trip::<T>(&text).is_some(), "a validated document does not read back");
        }
        Err(e) => check_refusal(&e),
    }
}

fn enrollment(json: &[u8]) {
    let Some(e) = round_trip::<IndividualEnrollment>(json) else { return };
    let h = harness();
    validated(h.runtime.block_on(h.app.management.prepare(None, e, Schema::Current)));
}

fn group(json: &[u8]) {
    let Some(g) = round_trip::<EnrollmentGroup>(json) else { return };
    let h = harness();
    validated(h.runtime.block_on(h.app.management.prepare(None, g, Schema::Current)));
}

fn query(json: &[u8]) {
    if let Some(q) = round_trip::<QuerySpecification>(json) {
        for c in [Collection::Enrollments, Collection::EnrollmentGroups] {
            if let Err(e) = dps_core::query::parse(&q.query, c) {
                check_refusal(&e);
            }
        }
    }
}

/// One service- or device-API document; see the module doc.
pub fn json_documents(data: &[u8]) {
    let (kind, json) = data.split_first().map_or((0, &[][..]), |(k, r)| (*k, r));
    match kind % 11 {
        0 => enrollment(json),
        1 => group(json),
        2 => drop(round_trip::<BulkEnrollmentOperation>(json)),
        3 => drop(round_trip::<BulkEnrollmentGroupOperation>(json)),
        4 => drop(round_trip::<DeviceRegistration>(json)),
        5 => query(json),
        6 => drop(round_trip::<LinkedHub>(json)),
        7 => drop(round_trip::<CaCertificate>(json)),
        8 => drop(round_trip::<DeviceRegistrationState>(json)),
        9 => drop(round_trip::<RegistrationOperationStatus>(json)),
        _ => drop(round_trip::<DecisionTrace>(json)),
    }
}
