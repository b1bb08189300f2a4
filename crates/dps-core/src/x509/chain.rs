//! Path validation of a device's certificate chain up to one trusted certificate (an enrollment group's
//! signing certificate or a verified CA), as X.509 attestation needs it (§4.3): the leaf, the intermediates
//! the device presented (in any order, extra ones ignored), and the anchor. Checked: signatures, validity
//! against the given time, basic constraints (every issuer is a CA), key usage (issuers may sign
//! certificates; the leaf may sign, for the TLS handshake), extended key usage (client authentication when
//! the leaf names any), and path length constraints. Each failure says which certificate and why.
//!
//! Hand-written on x509-parser (with aws-lc-rs signatures) rather than `rustls-webpki`'s path builder, because
//! webpki reports most failures as one `UnknownIssuer`, and a factory engineer needs to know which link broke.

use chrono::{DateTime, Utc};
use x509_parser::prelude::*;

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("certificate {0} cannot be parsed: {1}")]
    Unparsable(&'static str, String),
    #[error("certificate '{subject}' expired at {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("certificate '{subject}' is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("the device certificate '{0}' is a CA certificate (basic constraints CA:TRUE); a device presents a leaf certificate")]
    LeafIsCa(String),
    #[error("the device certificate '{0}' does not allow digital signatures (key usage), so it cannot authenticate a TLS client")]
    LeafKeyUsage(String),
    #[error("the device certificate '{0}' names extended key usages without client authentication")]
    LeafExtendedKeyUsage(String),
    #[error("no certificate issued '{subject}': its issuer '{issuer}' is neither among the certificates the device presented nor the trusted certificate '{anchor}'")]
    UnknownIssuer { subject: String, issuer: String, anchor: String },
    #[error("the signature of '{subject}' does not verify with the key of '{issuer}'")]
    BadSignature { subject: String, issuer: String },
    #[error("'{0}' issued a certificate but is not a CA (basic constraints CA:TRUE missing)")]
    NotACa(String),
    #[error("'{0}' issued a certificate but its key usage does not include keyCertSign")]
    IssuerKeyUsage(String),
    #[error("'{subject}' allows {allowed} intermediate CA certificate(s) below it (pathLenConstraint), the chain has {found}")]
    PathLenExceeded { subject: String, allowed: u32, found: u32 },
    #[error("the chain is longer than {0} certificates")]
    TooLong(usize),
}

/// A chain that verified: DER certificates from the leaf up to, not including, the anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    pub path: Vec<Vec<u8>>,
}

impl VerifiedChain {
    /// How far the anchor is from the leaf (1: the anchor issued the leaf). Nearer anchors take precedence.
    pub fn depth(&self) -> usize {
        self.path.len()
    }
}

const MAX_DEPTH: usize = 8;

fn parse<'a>(what: &'static str, der: &'a [u8]) -> Result<X509Certificate<'a>, ChainError> {
    X509Certificate::from_der(der).map(|(_, c)| c).map_err(|e| ChainError::Unparsable(what, e.to_string()))
}

fn subject(c: &X509Certificate<'_>) -> String {
    c.subject().to_string()
}

fn check_time(c: &X509Certificate<'_>, now: DateTime<Utc>) -> Result<(), ChainError> {
    let t = now.timestamp();
    let v = c.validity();
    if t > v.not_after.timestamp() {
        return Err(ChainError::Expired { subject: subject(c), not_after: v.not_after.to_string() });
    }
    if t < v.not_before.timestamp() {
        return Err(ChainError::NotYetValid { subject: subject(c), not_before: v.not_before.to_string() });
    }
    Ok(())
}

fn is_ca(c: &X509Certificate<'_>) -> bool {
    matches!(c.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

fn path_len(c: &X509Certificate<'_>) -> Option<u32> {
    match c.basic_constraints() {
        Ok(Some(bc)) => bc.value.path_len_constraint,
        _ => None,
    }
}

/// Checks that `issuer` may have issued `child` and did: name, CA, key usage, signature.
fn check_issued(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Result<(), ChainError> {
    if child.verify_signature(Some(issuer.public_key())).is_err() {
        return Err(ChainError::BadSignature { subject: subject(child), issuer: subject(issuer) });
    }
    if !is_ca(issuer) {
        return Err(ChainError::NotACa(subject(issuer)));
    }
    if let Ok(Some(ku)) = issuer.key_usage() {
        if !ku.value.key_cert_sign() {
            return Err(ChainError::IssuerKeyUsage(subject(issuer)));
        }
    }
    Ok(())
}

fn check_path_len(issuer: &X509Certificate<'_>, intermediates_below: u32) -> Result<(), ChainError> {
    match path_len(issuer) {
        Some(allowed) if intermediates_below > allowed => {
            Err(ChainError::PathLenExceeded { subject: subject(issuer), allowed, found: intermediates_below })
        }
        _ => Ok(()),
    }
}

/// Checks what a device certificate itself must satisfy (also for individual enrollments).
/// When the first of these certificates expires (`None` when one does not parse).
pub fn earliest_expiry(certs: &[Vec<u8>]) -> Option<DateTime<Utc>> {
    certs
        .iter()
        .map(|der| parse("presented by the device", der).ok().and_then(|c| DateTime::from_timestamp(c.validity().not_after.timestamp(), 0)))
        .try_fold(DateTime::<Utc>::MAX_UTC, |min, t| t.map(|t| min.min(t)))
}

pub fn check_leaf(leaf_der: &[u8], now: DateTime<Utc>) -> Result<(), ChainError> {
    let leaf = parse("presented by the device", leaf_der)?;
    check_time(&leaf, now)?;
    if is_ca(&leaf) && leaf.subject() != leaf.issuer() {
        return Err(ChainError::LeafIsCa(subject(&leaf)));
    }
    if let Ok(Some(ku)) = leaf.key_usage() {
        if !ku.value.digital_signature() {
            return Err(ChainError::LeafKeyUsage(subject(&leaf)));
        }
    }
    if let Ok(Some(eku)) = leaf.extended_key_usage() {
        if !(eku.value.client_auth || eku.value.any) {
            return Err(ChainError::LeafExtendedKeyUsage(subject(&leaf)));
        }
    }
    Ok(())
}

/// How many intermediates lie below the certificate being checked (the path holds the leaf first).
fn below(path: &[Vec<u8>]) -> u32 {
    u32::try_from(path.len().saturating_sub(1)).unwrap_or(u32::MAX)
}

/// Verifies `leaf` up to `anchor` through any of `presented` (the device's other certificates).
pub fn verify_chain(leaf_der: &[u8], presented: &[Vec<u8>], anchor_der: &[u8], now: DateTime<Utc>) -> Result<VerifiedChain, ChainError> {
    check_leaf(leaf_der, now)?;
    let anchor = parse("trusted by the enrollment", anchor_der)?;
    let mut path: Vec<Vec<u8>> = vec![leaf_der.to_vec()];
    let mut current_der = leaf_der.to_vec();
    loop {
        let current = parse("presented by the device", &current_der)?;
        // Reached the anchor: it issued the current certificate.
        if current.issuer() == anchor.subject() && current_der.as_slice() != anchor_der {
            check_issued(&current, &anchor)?;
            check_time(&anchor, now)?;
            check_path_len(&anchor, below(&path))?;
            return Ok(VerifiedChain { path });
        }
        if path.len() > MAX_DEPTH {
            return Err(ChainError::TooLong(MAX_DEPTH));
        }
        let issuer_der = presented
            .iter()
            .filter(|d| !path.contains(d))
            .find(|d| X509Certificate::from_der(d).map(|(_, c)| c.subject() == current.issuer()).unwrap_or(false))
            .cloned()
            .ok_or_else(|| ChainError::UnknownIssuer {
                subject: subject(&current),
                issuer: current.issuer().to_string(),
                anchor: subject(&anchor),
            })?;
        let issuer = parse("presented by the device", &issuer_der)?;
        if issuer.subject() == issuer.issuer() && issuer_der.as_slice() != anchor_der {
            // A self-signed root that is not the anchor: the chain leads elsewhere.
            return Err(ChainError::UnknownIssuer {
                subject: subject(&current),
                issuer: current.issuer().to_string(),
                anchor: subject(&anchor),
            });
        }
        check_issued(&current, &issuer)?;
        check_time(&issuer, now)?;
        check_path_len(&issuer, below(&path))?;
        path.push(issuer_der.clone());
        current_der = issuer_der;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn ca(cn: &str, parent: Option<&Ca>, path_len: Option<u8>, usages: Vec<KeyUsagePurpose>) -> Ca {
        let key = KeyPair::generate().expect("generates a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
        params.key_usages = usages;
        let cert = match parent {
            None => params.self_signed(&key),
            Some(p) => params.signed_by(&key, &Issuer::from_params(&p.params, &p.key)),
        }
        .expect("set-up");
        Ca { params, key, der: cert.der().to_vec() }
    }

    fn leaf(cn: &str, parent: &Ca, f: impl FnOnce(&mut CertificateParams)) -> Vec<u8> {
        let key = KeyPair::generate().expect("generates a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        f(&mut params);
        params.signed_by(&key, &Issuer::from_params(&parent.params, &parent.key)).expect("signs").der().to_vec()
    }

    fn sign_usages() -> Vec<KeyUsagePurpose> {
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature]
    }

    fn today() -> DateTime<Utc> {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    #[test]
    fn a_chain_through_an_intermediate_verifies_to_the_root_and_to_the_intermediate() {
        let root = ca("root", None, None, sign_usages());
        let int = ca("intermediate", Some(&root), Some(0), sign_usages());
        let dev = leaf("device-1", &int, |_| {});
        let to_root = verify_chain(&dev, std::slice::from_ref(&int.der), &root.der, today()).expect("verify chain");
        assert_eq!(to_root.depth(), 2);
        let to_int = verify_chain(&dev, &[int.der.clone(), root.der.clone()], &int.der, today()).expect("verify chain");
        assert_eq!(to_int.depth(), 1);
        // Extra and out-of-order certificates are fine.
        let other = ca("other", None, None, sign_usages());
        assert!(verify_chain(&dev, &[other.der.clone(), root.der.clone(), int.der.clone()], &root.der, today()).is_ok());
    }

    #[test]
    fn a_missing_intermediate_or_a_foreign_root_is_an_unknown_issuer() {
        let root = ca("root", None, None, sign_usages());
        let int = ca("intermediate", Some(&root), None, sign_usages());
        let dev = leaf("device-1", &int, |_| {});
        assert!(matches!(verify_chain(&dev, &[], &root.der, today()), Err(ChainError::UnknownIssuer { .. })));
        let other = ca("other", None, None, sign_usages());
        assert!(matches!(verify_chain(&dev, std::slice::from_ref(&int.der), &other.der, today()), Err(ChainError::UnknownIssuer { .. })));
    }

    #[test]
    fn a_wrong_signature_is_named() {
        let root = ca("root", None, None, sign_usages());
        // Same name, different key: the leaf's signature does not verify with the impostor.
        let impostor = ca("root", None, None, sign_usages());
        let dev = leaf("device-1", &root, |_| {});
        assert_eq!(
            verify_chain(&dev, &[], &impostor.der, today()),
            Err(ChainError::BadSignature { subject: "CN=device-1".into(), issuer: "CN=root".into() })
        );
    }

    #[test]
    fn a_non_ca_intermediate_is_refused() {
        let root = ca("root", None, None, sign_usages());
        let key = KeyPair::generate().expect("generates a key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        p.distinguished_name.push(DnType::CommonName, "not-a-ca");
        p.is_ca = IsCa::ExplicitNoCa;
        let not_ca_der = p.signed_by(&key, &Issuer::from_params(&root.params, &root.key)).expect("signs").der().to_vec();
        let not_ca = Ca { params: p, key, der: not_ca_der };
        let dev = leaf("device-1", &not_ca, |_| {});
        assert_eq!(
            verify_chain(&dev, std::slice::from_ref(&not_ca.der), &root.der, today()),
            Err(ChainError::NotACa("CN=not-a-ca".into()))
        );
    }

    #[test]
    fn path_length_and_key_usage_are_enforced() {
        let root = ca("root", None, Some(0), sign_usages());
        let int = ca("intermediate", Some(&root), None, sign_usages());
        let dev = leaf("device-1", &int, |_| {});
        assert_eq!(
            verify_chain(&dev, std::slice::from_ref(&int.der), &root.der, today()),
            Err(ChainError::PathLenExceeded { subject: "CN=root".into(), allowed: 0, found: 1 })
        );
        let no_sign = ca("no-sign", None, None, vec![KeyUsagePurpose::DigitalSignature]);
        let dev = leaf("device-2", &no_sign, |_| {});
        assert_eq!(verify_chain(&dev, &[], &no_sign.der, today()), Err(ChainError::IssuerKeyUsage("CN=no-sign".into())));
    }

    #[test]
    fn validity_and_leaf_usages_are_enforced() {
        let root = ca("root", None, None, sign_usages());
        let expired = leaf("old", &root, |p| {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        assert!(matches!(verify_chain(&expired, &[], &root.der, today()), Err(ChainError::Expired { .. })));
        let future = leaf("new", &root, |p| {
            p.not_before = rcgen::date_time_ymd(2090, 1, 1);
            p.not_after = rcgen::date_time_ymd(2091, 1, 1);
        });
        assert!(matches!(verify_chain(&future, &[], &root.der, today()), Err(ChainError::NotYetValid { .. })));
        let server_only = leaf("srv", &root, |p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
        assert_eq!(verify_chain(&server_only, &[], &root.der, today()), Err(ChainError::LeafExtendedKeyUsage("CN=srv".into())));
        let no_eku = leaf("plain", &root, |p| p.extended_key_usages = vec![]);
        assert!(verify_chain(&no_eku, &[], &root.der, today()).is_ok());
        assert!(matches!(verify_chain(b"garbage", &[], &root.der, today()), Err(ChainError::Unparsable(..))));
    }
}
