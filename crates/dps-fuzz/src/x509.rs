//! X.509 input (§4.3, §5.3): the input is a certificate bundle as the service API and the CLI take it (PEM
//! blocks, base64 PEM, base64 DER or DER). Decoding refuses with a 400 code or yields certificates; each one
//! is read as the service reads an enrollment's certificate (`certificate_info`), inspected as a chain
//! (the chain inspector), checked as a device leaf and verified up to the bundle's last certificate. Then
//! the chain is presented by a device registering over HTTPS (the TLS client chain), which runs
//! attestation's chain decoding and CA matching in dps-core against the harness's service: the answer is a
//! DPS error (or an assignment), never a 500.

use std::sync::Arc;

use base64::Engine;
use dps_core::x509::{certificate_info, chain, common_name, decode_bundle, inspect};
use dps_core::DpsError;
use dps_service::https::Surface;

use crate::harness::{epoch, harness};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
/// Chains longer than this are not presented to the service (its own limit is smaller; see chain.rs).
const MAX_PRESENTED: usize = 16;

fn check_refusal(e: &DpsError) {
    assert_eq!(e.status(), 400, "a bad certificate answers {} ({})", e.code(), e.message);
}

fn check_certificates(certs: &[Vec<u8>]) {
    let now = epoch();
    for der in certs {
        if let Err(e) = certificate_info(&B64.encode(der)) {
            check_refusal(&e);
        }
        let _ = common_name(der);
        let _ = chain::check_leaf(der, now);
    }
    if let Err(e) = inspect::inspect(certs, now) {
        check_refusal(&e);
    }
    let _ = chain::earliest_expiry(certs);
    if let (Some(leaf), Some(anchor)) = (certs.first(), certs.last()) {
        let _ = chain::verify_chain(leaf, certs, anchor, now);
    }
}

/// Registers a device presenting `certs` as its TLS client chain.
fn present(certs: Vec<Vec<u8>>) {
    let h = harness();
    let id = certs.first().and_then(|c| common_name(c)).unwrap_or_else(|| "x509-device".to_owned());
    let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric() || "-._:".contains(*c)).collect();
    let body = format!(r#"{{"registrationId":"{id}"}}"#);
    let head = format!(
        "PUT /{}/registrations/{id}/register?api-version=2021-06-01 HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        h.scope,
        body.len()
    );
    let request = [head.as_bytes(), body.as_bytes()].concat();
    let answer = h.runtime.block_on(crate::http::exchange_as(h, Surface::Device, request, Some(Arc::new(certs))));
    crate::http::check_answer(&answer);
}

/// A certificate bundle through decoding, inspection, path validation and X.509 attestation.
pub fn x509_chain(data: &[u8]) {
    match decode_bundle(data) {
        Ok(certs) => {
            check_certificates(&certs);
            if !certs.is_empty() && certs.len() <= MAX_PRESENTED {
                present(certs);
            }
        }
        Err(e) => check_refusal(&e),
    }
}
