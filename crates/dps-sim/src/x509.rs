//! X.509 material for simulated devices, made on the fly (#16 item 1): a CA for a run and a leaf per device
//! (CN = the registration id, client authentication), with rcgen. Faults make the leaf wrong on purpose: issued
//! by another CA, expired, or with a CN that is not the registration id.

use anyhow::Result;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A CA that issues simulated devices' certificates.
pub struct SimCa {
    params: CertificateParams,
    key: KeyPair,
    /// Its certificate (what an enrollment group's signing certificate is).
    pub pem: String,
}

/// A device's certificate chain (leaf first, DER) and its PKCS#8 key (DER).
pub struct Leaf {
    pub chain: Vec<Vec<u8>>,
    pub key: Vec<u8>,
}

/// A device's certificate signing request (base64 DER, CN = its id) and the PKCS#8 key (DER) it was signed with.
pub struct CertificateRequest {
    pub csr: String,
    pub key: Vec<u8>,
}

/// A new P-256 key and a CSR for `cn` signed with it.
pub fn certificate_request(cn: &str) -> Result<CertificateRequest> {
    use base64::Engine;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    let csr = params.serialize_request(&key)?;
    Ok(CertificateRequest { csr: base64::engine::general_purpose::STANDARD.encode(csr.der()), key: key.serialize_der() })
}

impl SimCa {
    pub fn new(cn: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let pem = params.self_signed(&key)?.pem();
        Ok(Self { params, key, pem })
    }

    /// A device certificate with subject CN `cn`, issued by this CA; `expired`: valid in 2020 only.
    pub fn leaf(&self, cn: &str, expired: bool) -> Result<Leaf> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 12, 31);
        }
        let cert = params.signed_by(&key, &Issuer::from_params(&self.params, &self.key))?;
        Ok(Leaf { chain: vec![cert.der().to_vec()], key: key.serialize_der() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leaf_names_its_device_and_chains_to_the_ca() {
        let ca = SimCa::new("test CA").expect("CA");
        let leaf = ca.leaf("dev-1", false).expect("leaf");
        assert!(ca.pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(leaf.chain.len(), 1);
        assert!(!leaf.key.is_empty());
    }
}
