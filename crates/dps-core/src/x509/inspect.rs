//! The structured view of a certificate bundle (`dps cert inspect`, the console's chain inspector): every
//! certificate's details, and a verdict on the chain. The first certificate is the leaf (what a device
//! presents first); the others may come in any order. The chain is verified with [`super::chain`] up to the
//! bundle's self-signed root, or, without one, up to its last certificate (as an enrollment group's
//! intermediate signing certificate would be).

use std::net::{Ipv4Addr, Ipv6Addr};

use chrono::{DateTime, Utc};
use dps_proto::{BasicConstraints, CertificateDetails, ChainReport, ChainVerdict};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid2sn, oid_registry};
use x509_parser::oid_registry::{Oid, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519, OID_SIG_ED448};
use x509_parser::prelude::*;

use super::chain::{check_leaf, verify_chain};
use super::{decode_bundle, hex_upper, time};
use crate::error::DpsError;

/// Inspects a bundle as [`decode_bundle`] reads it (PEM with any number of certificates, base64 DER, DER).
pub fn inspect_bytes(bytes: &[u8], now: DateTime<Utc>) -> Result<ChainReport, DpsError> {
    inspect(&decode_bundle(bytes)?, now)
}

/// Details of every certificate (DER) and the chain verdict at `now`.
pub fn inspect(certs: &[Vec<u8>], now: DateTime<Utc>) -> Result<ChainReport, DpsError> {
    if certs.is_empty() {
        return Err(DpsError::invalid("no certificate to inspect"));
    }
    let mut parsed = Vec::with_capacity(certs.len());
    for (i, der) in certs.iter().enumerate() {
        let (_, c) = X509Certificate::from_der(der)
            .map_err(|e| DpsError::invalid(format!("certificate {} of {} does not parse: {e}", i + 1, certs.len())))?;
        parsed.push(c);
    }
    let certificates = certs.iter().zip(&parsed).map(|(der, c)| details(der, c)).collect();
    Ok(ChainReport { certificates, verdict: verdict(certs, &parsed, now) })
}

fn verdict(certs: &[Vec<u8>], parsed: &[X509Certificate<'_>], now: DateTime<Utc>) -> ChainVerdict {
    let mut v = ChainVerdict::default();
    let (leaf_der, leaf) = (&certs[0], &parsed[0]);
    let self_signed = |c: &X509Certificate<'_>| c.subject() == c.issuer();

    if certs.len() == 1 {
        if self_signed(leaf) {
            v.anchor = Some(leaf.subject().to_string());
            if let Err(e) = check_leaf(leaf_der, now) {
                v.problems.push(e.to_string());
            }
            check_self_signature(leaf, &mut v);
            v.notes.push(
                "a single self-signed certificate: a device may present it for an individual enrollment (which trusts its \
                 thumbprint), not for an enrollment group"
                    .into(),
            );
        } else {
            if let Err(e) = check_leaf(leaf_der, now) {
                v.problems.push(e.to_string());
            }
            v.problems.push(format!(
                "the bundle holds only '{}', issued by '{}': add the issuer's certificate (and any intermediates) to check the chain",
                leaf.subject(),
                leaf.issuer()
            ));
        }
        v.valid = v.problems.is_empty();
        return v;
    }

    let anchor_index = (1..certs.len()).find(|&i| self_signed(&parsed[i])).unwrap_or(certs.len() - 1);
    let anchor = &parsed[anchor_index];
    v.anchor = Some(anchor.subject().to_string());
    if self_signed(anchor) {
        check_self_signature(anchor, &mut v);
    } else {
        v.notes.push(format!(
            "no self-signed root in the bundle: the chain is verified up to its last certificate '{}', as an enrollment \
             group's signing certificate would be",
            anchor.subject()
        ));
    }
    let others: Vec<Vec<u8>> = certs[1..].iter().enumerate().filter(|(i, _)| i + 1 != anchor_index).map(|(_, d)| d.clone()).collect();
    match verify_chain(leaf_der, &others, &certs[anchor_index], now) {
        Ok(chain) => {
            for (i, der) in certs.iter().enumerate().filter(|(i, _)| *i > 0) {
                if i != anchor_index && !chain.path.contains(der) {
                    v.notes.push(format!("'{}' is not part of the chain", parsed[i].subject()));
                }
            }
        }
        Err(e) => v.problems.push(e.to_string()),
    }
    if leaf.is_ca() && !self_signed(leaf) {
        v.notes.push("the first certificate is read as the device (leaf) certificate: put the device's certificate first".into());
    }
    v.valid = v.problems.is_empty();
    v
}

fn check_self_signature(c: &X509Certificate<'_>, v: &mut ChainVerdict) {
    if c.verify_signature(None).is_err() {
        v.problems.push(format!("the self-signature of '{}' does not verify with its own key", c.subject()));
    }
}

fn details(der: &[u8], c: &X509Certificate<'_>) -> CertificateDetails {
    CertificateDetails {
        subject: c.subject().to_string(),
        issuer: c.issuer().to_string(),
        serial_number: hex_upper(c.raw_serial()),
        version: i32::try_from(c.version().0).unwrap_or(2) + 1,
        not_before_utc: time(c.validity().not_before),
        not_after_utc: time(c.validity().not_after),
        subject_alternative_names: sans(c),
        key_usage: key_usage(c),
        extended_key_usage: extended_key_usage(c),
        basic_constraints: match c.basic_constraints() {
            Ok(Some(bc)) => Some(BasicConstraints { ca: bc.value.ca, path_len_constraint: bc.value.path_len_constraint }),
            _ => None,
        },
        sha1_thumbprint: hex_upper(&Sha1::digest(der)),
        sha256_thumbprint: hex_upper(&Sha256::digest(der)),
        public_key_algorithm: public_key_algorithm(c.public_key()),
        signature_algorithm: oid_name(&c.signature_algorithm.algorithm),
        self_signed: c.subject() == c.issuer(),
        common_name: c.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned),
    }
}

fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry()).map(str::to_owned).unwrap_or_else(|_| oid.to_id_string())
}

fn public_key_algorithm(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| oid_name(&o));
        return match curve.as_deref() {
            Some("prime256v1") => "ECDSA P-256".into(),
            Some("secp384r1") => "ECDSA P-384".into(),
            Some("secp521r1") => "ECDSA P-521".into(),
            Some(other) => format!("EC {other}"),
            None => "EC".into(),
        };
    }
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(k) => format!("RSA {}", k.key_size()),
            Err(_) => "RSA".into(),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return "Ed25519".into();
    }
    if *alg == OID_SIG_ED448 {
        return "Ed448".into();
    }
    oid_name(alg)
}

fn sans(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = c.subject_alternative_name() else { return Vec::new() };
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(s) => format!("DNS:{s}"),
            GeneralName::RFC822Name(s) => format!("email:{s}"),
            GeneralName::URI(s) => format!("URI:{s}"),
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!("IP:{}", Ipv4Addr::new(b[0], b[1], b[2], b[3])),
                16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(b);
                    format!("IP:{}", Ipv6Addr::from(a))
                }
                _ => format!("IP:{}", hex_upper(b)),
            },
            GeneralName::DirectoryName(dn) => format!("DirName:{dn}"),
            GeneralName::RegisteredID(oid) => format!("RID:{}", oid_name(oid)),
            GeneralName::OtherName(oid, _) => format!("othername:{}", oid_name(oid)),
            GeneralName::X400Address(_) => "X400Name".into(),
            GeneralName::EDIPartyName(_) => "EdiPartyName".into(),
            GeneralName::Invalid(..) => "invalid".into(),
        })
        .collect()
}

fn key_usage(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ku)) = c.key_usage() else { return Vec::new() };
    let k = ku.value;
    [
        (k.digital_signature(), "digitalSignature"),
        (k.non_repudiation(), "nonRepudiation"),
        (k.key_encipherment(), "keyEncipherment"),
        (k.data_encipherment(), "dataEncipherment"),
        (k.key_agreement(), "keyAgreement"),
        (k.key_cert_sign(), "keyCertSign"),
        (k.crl_sign(), "cRLSign"),
        (k.encipher_only(), "encipherOnly"),
        (k.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect()
}

fn extended_key_usage(c: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(eku)) = c.extended_key_usage() else { return Vec::new() };
    let e = eku.value;
    let mut out: Vec<String> = [
        (e.server_auth, "serverAuth"),
        (e.client_auth, "clientAuth"),
        (e.code_signing, "codeSigning"),
        (e.email_protection, "emailProtection"),
        (e.time_stamping, "timeStamping"),
        (e.ocsp_signing, "OCSPSigning"),
        (e.any, "anyExtendedKeyUsage"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect();
    out.extend(e.other.iter().map(oid_name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x509::certificate_info;
    use rcgen::{
        BasicConstraints as Bc, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
    };

    struct Made {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
        pem: String,
    }

    fn make(cn: &str, parent: Option<&Made>, f: impl FnOnce(&mut CertificateParams)) -> Made {
        let key = KeyPair::generate().expect("generates a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        params.distinguished_name.push(DnType::CommonName, cn);
        f(&mut params);
        let cert = match parent {
            None => params.self_signed(&key),
            Some(p) => params.signed_by(&key, &Issuer::from_params(&p.params, &p.key)),
        }
        .expect("set-up");
        Made { params, key, der: cert.der().to_vec(), pem: cert.pem() }
    }

    fn ca(path_len: Option<u8>) -> impl FnOnce(&mut CertificateParams) {
        move |p| {
            p.is_ca = IsCa::Ca(path_len.map_or(Bc::Unconstrained, Bc::Constrained));
            p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        }
    }

    fn device(p: &mut CertificateParams) {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.is_ca = IsCa::ExplicitNoCa;
    }

    fn now() -> DateTime<Utc> {
        crate::clock::Clock::now(&crate::clock::SystemClock)
    }

    fn report(certs: &[&Made]) -> ChainReport {
        inspect(&certs.iter().map(|m| m.der.clone()).collect::<Vec<_>>(), now()).expect("inspect")
    }

    #[test]
    fn every_field_is_read() {
        let root = make("root", None, ca(Some(1)));
        let dev = make("device-1", Some(&root), |p| {
            device(p);
            p.subject_alt_names = vec![
                SanType::DnsName("device-1.local".try_into().expect("try into")),
                SanType::IpAddress("10.0.0.7".parse().expect("parses")),
                SanType::URI("urn:dev:1".try_into().expect("try into")),
            ];
        });
        let r = report(&[&dev, &root]);
        let [d, c] = &r.certificates[..] else { panic!("two certificates expected") };
        assert_eq!(d.subject, "CN=device-1");
        assert_eq!(d.issuer, "CN=root");
        assert_eq!(d.common_name.as_deref(), Some("device-1"));
        assert_eq!(d.subject_alternative_names, ["DNS:device-1.local", "IP:10.0.0.7", "URI:urn:dev:1"]);
        assert_eq!(d.key_usage, ["digitalSignature"]);
        assert_eq!(d.extended_key_usage, ["clientAuth"]);
        assert_eq!(d.basic_constraints, Some(BasicConstraints { ca: false, path_len_constraint: None }));
        assert!(!d.self_signed);
        assert_eq!(d.public_key_algorithm, "ECDSA P-256");
        assert_eq!(d.signature_algorithm, "ecdsa-with-SHA256");
        let info = certificate_info(&dev.pem).expect("certificate info");
        assert_eq!(
            (&d.sha1_thumbprint, &d.sha256_thumbprint, &d.serial_number, d.version, d.not_before_utc, d.not_after_utc),
            (&info.sha1_thumbprint, &info.sha256_thumbprint, &info.serial_number, info.version, info.not_before_utc, info.not_after_utc)
        );
        assert_eq!(c.key_usage, ["digitalSignature", "keyCertSign", "cRLSign"]);
        assert_eq!(c.basic_constraints, Some(BasicConstraints { ca: true, path_len_constraint: Some(1) }));
        assert!(c.self_signed);
        assert!(c.extended_key_usage.is_empty() && c.subject_alternative_names.is_empty());
        assert_eq!(r.verdict, ChainVerdict { valid: true, anchor: Some("CN=root".into()), problems: vec![], notes: vec![] });
    }

    #[test]
    fn a_good_chain_is_valid_in_any_order_and_from_pem() {
        let root = make("root", None, ca(None));
        let int = make("intermediate", Some(&root), ca(Some(0)));
        let dev = make("device-1", Some(&int), device);
        for order in [[&dev, &int, &root], [&dev, &root, &int]] {
            let r = report(&order);
            assert!(r.verdict.valid, "{:?}", r.verdict);
            assert_eq!(r.verdict.anchor.as_deref(), Some("CN=root"));
        }
        let bundle = format!("{}\n{}\n{}", dev.pem, int.pem, root.pem);
        let r = inspect_bytes(bundle.as_bytes(), now()).expect("inspect bytes");
        assert_eq!(r.certificates.len(), 3);
        assert!(r.verdict.valid);
        // Without the root, the intermediate is the anchor (a group's signing certificate), with a note.
        let r = report(&[&dev, &int]);
        assert!(r.verdict.valid);
        assert_eq!(r.verdict.anchor.as_deref(), Some("CN=intermediate"));
        assert_eq!(r.verdict.notes.len(), 1);
        // A certificate that is not on the path is named.
        let stranger = make("stranger", Some(&root), ca(None));
        let r = report(&[&dev, &stranger, &int, &root]);
        assert!(r.verdict.valid);
        assert!(r.verdict.notes.iter().any(|n| n.contains("CN=stranger")), "{:?}", r.verdict.notes);
    }

    #[test]
    fn an_expired_leaf_is_a_problem() {
        let root = make("root", None, ca(None));
        let dev = make("old", Some(&root), |p| {
            device(p);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        let r = report(&[&dev, &root]);
        assert!(!r.verdict.valid);
        assert_eq!(r.verdict.problems.len(), 1);
        assert!(r.verdict.problems[0].contains("'CN=old' expired"), "{:?}", r.verdict.problems);
    }

    #[test]
    fn a_wrong_issuer_is_a_problem() {
        let root = make("root", None, ca(None));
        let other = make("other-root", None, ca(None));
        let dev = make("device-1", Some(&other), device);
        let r = report(&[&dev, &root]);
        assert!(!r.verdict.valid);
        assert!(r.verdict.problems[0].contains("'CN=other-root'"), "{:?}", r.verdict.problems);
        // Same name, different key.
        let impostor = make("root", None, ca(None));
        let dev = make("device-2", Some(&impostor), device);
        let r = report(&[&dev, &root]);
        assert!(r.verdict.problems[0].contains("signature"), "{:?}", r.verdict.problems);
    }

    #[test]
    fn a_non_ca_intermediate_is_a_problem() {
        let root = make("root", None, ca(None));
        let not_ca = make("not-a-ca", Some(&root), |p| p.is_ca = IsCa::ExplicitNoCa);
        let dev = make("device-1", Some(&not_ca), device);
        let r = report(&[&dev, &not_ca, &root]);
        assert!(!r.verdict.valid);
        assert!(r.verdict.problems[0].contains("'CN=not-a-ca' issued a certificate but is not a CA"), "{:?}", r.verdict.problems);
    }

    #[test]
    fn a_single_certificate() {
        let selfie = make("device-1", None, device);
        let r = report(&[&selfie]);
        assert!(r.verdict.valid, "{:?}", r.verdict);
        assert_eq!(r.verdict.anchor.as_deref(), Some("CN=device-1"));
        assert!(r.verdict.notes[0].contains("individual enrollment"));
        let expired = make("device-2", None, |p| {
            device(p);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        });
        assert!(!report(&[&expired]).verdict.valid);
        let root = make("root", None, ca(None));
        let dev = make("device-3", Some(&root), device);
        let r = report(&[&dev]);
        assert!(!r.verdict.valid);
        assert!(r.verdict.problems[0].contains("issued by 'CN=root'"), "{:?}", r.verdict.problems);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(inspect(&[], now()).is_err());
        assert!(inspect(&[b"garbage".to_vec()], now()).is_err());
        assert!(inspect_bytes(b"hello", now()).is_err());
    }
}
