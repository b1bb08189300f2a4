//! X.509 material for simulated devices, made on the fly (#16 item 1): the CA that issues a run's devices — a
//! root made for the run, a root and an intermediate under it, or the trainer's own CA (its certificate chain
//! and key, kept in memory only) — and a leaf per device (CN = the registration id, client authentication), with
//! rcgen. A device presents its leaf and every CA certificate below the one its group trusts. Faults make the
//! leaf wrong on purpose: issued by another CA, expired, or with a CN that is not the registration id.

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData};

/// A CA that issues simulated devices' certificates.
pub struct SimCa {
    issuer: Issuer<'static, KeyPair>,
    /// Its own certificate (DER).
    certificate: Vec<u8>,
    /// The certificates a device sends after its own (DER): this CA and its issuers up to, not including, the
    /// root [`Self::pem`] (empty for a root).
    below_trusted: Vec<Vec<u8>>,
    /// The certificate an enrollment group trusts (its signing certificate): the root.
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
    /// A root CA that issues devices itself.
    pub fn new(cn: &str) -> Result<Self> {
        let (params, key) = ca_params(cn)?;
        let root = params.self_signed(&key)?;
        Ok(Self { issuer: Issuer::new(params, key), certificate: root.der().to_vec(), below_trusted: Vec::new(), pem: root.pem() })
    }

    /// An intermediate CA (`cn`) issued by this one: groups still trust the root, devices also send this CA.
    pub fn under(&self, cn: &str) -> Result<Self> {
        let (params, key) = ca_params(cn)?;
        let der = params.signed_by(&key, &self.issuer)?.der().to_vec();
        let below_trusted = std::iter::once(der.clone()).chain(self.below_trusted.iter().cloned()).collect();
        Ok(Self { issuer: Issuer::new(params, key), certificate: der, below_trusted, pem: self.pem.clone() })
    }

    /// A root CA (`cn`) and an intermediate CA under it that issues devices: groups trust the root, devices send
    /// the intermediate with their certificate.
    pub fn with_intermediate(cn: &str) -> Result<Self> {
        Self::new(cn)?.under(&format!("{cn} — intermediate"))
    }

    /// Its own certificate (PEM).
    pub fn certificate_pem(&self) -> String {
        pem_of(&self.certificate)
    }

    /// The trainer's CA: `chain_pem` (PEM, the issuing CA first, then its issuers, if any, up to the root) and its
    /// private key (PEM). Groups trust the chain's last certificate; devices send the others with theirs.
    pub fn uploaded(chain_pem: &str, key_pem: &str) -> Result<Self> {
        let chain: Vec<Vec<u8>> = rustls_pemfile::certs(&mut chain_pem.as_bytes())
            .map(|c| c.map(|c| c.to_vec()))
            .collect::<std::io::Result<_>>()
            .context("the CA certificate chain (PEM)")?;
        let (Some(first), Some(last)) = (chain.first(), chain.last()) else { anyhow::bail!("the CA certificate chain has no certificate") };
        let key = KeyPair::from_pem(key_pem).context("the CA's private key (PEM)")?;
        let (_, cert) = x509_parser::parse_x509_certificate(first).context("the issuing CA certificate")?;
        anyhow::ensure!(cert.is_ca(), "the first certificate is not a CA (its basic constraints do not say CA:TRUE)");
        anyhow::ensure!(key.subject_public_key_info() == cert.public_key().raw, "the private key is not the first certificate's key");
        let issuer = Issuer::from_ca_cert_der(&first.clone().into(), key).context("the issuing CA certificate")?;
        let pem = pem_of(last);
        let below_trusted = chain.get(..chain.len() - 1).unwrap_or_default().to_vec();
        Ok(Self { issuer, certificate: first.clone(), below_trusted, pem })
    }

    /// A device certificate with subject CN `cn`, issued by this CA; `expired`: valid in 2020 only. The chain is
    /// the leaf and the certificates below the trusted one.
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
        let cert = params.signed_by(&key, &self.issuer)?;
        let chain = std::iter::once(cert.der().to_vec()).chain(self.below_trusted.iter().cloned()).collect();
        Ok(Leaf { chain, key: key.serialize_der() })
    }

    /// A certificate with subject CN `cn` signed by the issuing CA (the proof of possession of a verification
    /// code).
    pub fn sign_cn(&self, cn: &str) -> Result<String> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, cn);
        Ok(params.signed_by(&key, &self.issuer)?.pem())
    }
}

/// A CA's parameters (CN, CA:TRUE, certificate and CRL signing) and a new key.
fn ca_params(cn: &str) -> Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok((params, key))
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
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

    #[test]
    fn an_intermediate_is_sent_with_the_leaf_and_an_uploaded_chain_is_trusted_at_its_root() {
        let ca = SimCa::with_intermediate("root").expect("CA");
        let leaf = ca.leaf("dev-1", false).expect("leaf");
        assert_eq!(leaf.chain.len(), 2, "leaf and intermediate");
        let intermediate_pem = pem_of(&leaf.chain[1]);
        // The trainer uploads the intermediate with the root, and the intermediate's key.
        let (params, key) = ca_params("trainer CA").expect("params");
        let own = params.self_signed(&key).expect("self-signed");
        let uploaded = SimCa::uploaded(&own.pem(), &key.serialize_pem()).expect("uploaded");
        assert_eq!(uploaded.pem, pem_of(own.der()));
        assert_eq!(uploaded.leaf("dev-2", false).expect("leaf").chain.len(), 1);
        let mismatched = SimCa::uploaded(&format!("{intermediate_pem}{}", ca.pem), &key.serialize_pem()).err().map(|e| e.to_string());
        assert!(mismatched.is_some_and(|e| e.contains("not the first certificate's key")));
        assert!(SimCa::uploaded("no PEM here", &key.serialize_pem()).is_err());
        assert!(SimCa::uploaded(&own.pem(), "not a key").is_err());
    }
}
