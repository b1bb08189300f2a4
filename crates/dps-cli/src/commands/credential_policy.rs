//! `dps credential-policy set|list|show|delete|issued`: the credential policies enrollments name
//! (`credentialPolicyName`) to issue certificates from devices' CSRs, and the log of certificates issued.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dps_proto::credentials::{KeyType, DEFAULT_VALIDITY_DAYS};
use dps_proto::{CredentialPolicy, IssuedCertificate, IssuerKind};
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyTypeArg {
    EcP256,
    EcP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
    Ed25519,
}

impl From<KeyTypeArg> for KeyType {
    fn from(k: KeyTypeArg) -> Self {
        match k {
            KeyTypeArg::EcP256 => KeyType::EcP256,
            KeyTypeArg::EcP384 => KeyType::EcP384,
            KeyTypeArg::Rsa2048 => KeyType::Rsa2048,
            KeyTypeArg::Rsa3072 => KeyType::Rsa3072,
            KeyTypeArg::Rsa4096 => KeyType::Rsa4096,
            KeyTypeArg::Ed25519 => KeyType::Ed25519,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum CredentialPolicyCommand {
    /// Create or replace a policy: the local CA signs unless --certificate-path and --private-key-path upload one.
    Set {
        name: String,
        /// The issuing CA's certificate (PEM), then its chain up to the root.
        #[arg(long, requires = "private_key_path")]
        certificate_path: Option<PathBuf>,
        /// The issuing CA's private key (PEM); sealed at rest, never shown again.
        #[arg(long, requires = "certificate_path")]
        private_key_path: Option<PathBuf>,
        /// Days an issued certificate is valid (1–3650; never past the CA's own expiry).
        #[arg(long, default_value_t = DEFAULT_VALIDITY_DAYS)]
        validity_days: u32,
        /// Key types a CSR may carry (repeat; default: ec-p256, ec-p384, rsa2048, rsa3072, rsa4096).
        #[arg(long = "key-type", value_enum)]
        key_types: Vec<KeyTypeArg>,
    },
    /// List policies.
    List,
    /// Show a policy (never its private key).
    Show { name: String },
    /// Delete a policy.
    Delete { name: String },
    /// Certificates issued from devices' CSRs, newest first.
    Issued {
        /// Only this device's.
        #[arg(long)]
        registration_id: Option<String>,
        /// How many at most (1–1000).
        #[arg(long, default_value_t = 100)]
        top: usize,
    },
}

const COLUMNS: &[(&str, &str)] =
    &[("NAME", "/name"), ("ISSUER", "/issuer"), ("CA", "/issuerInfo/subjectName"), ("DAYS", "/validityDays"), ("KEY TYPES", "/keyTypes")];

const ISSUED: &[(&str, &str)] = &[
    ("REGISTRATION ID", "/registrationId"),
    ("POLICY", "/credentialPolicyName"),
    ("SERIAL", "/info/serialNumber"),
    ("KEY", "/keyType"),
    ("EXPIRES", "/info/notAfterUtc"),
    ("ISSUED", "/issuedDateTimeUtc"),
];

fn read(p: &PathBuf) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

/// The policy `set` sends.
fn policy(
    name: &str,
    certificate: Option<&PathBuf>,
    key: Option<&PathBuf>,
    days: u32,
    key_types: &[KeyTypeArg],
) -> Result<CredentialPolicy> {
    let mut p = CredentialPolicy::local(name);
    if let (Some(c), Some(k)) = (certificate, key) {
        p.issuer = IssuerKind::Uploaded;
        p.certificate = Some(read(c)?);
        p.private_key = Some(read(k)?);
    }
    p.validity_days = days;
    if !key_types.is_empty() {
        p.key_types = key_types.iter().map(|k| KeyType::from(*k)).collect();
    }
    Ok(p)
}

pub async fn run(cmd: CredentialPolicyCommand, target: &Target, output: Output) -> Result<()> {
    let client = Client::new(target)?;
    match cmd {
        CredentialPolicyCommand::Set { name, certificate_path, private_key_path, validity_days, key_types } => {
            let body = policy(&name, certificate_path.as_ref(), private_key_path.as_ref(), validity_days, &key_types)?;
            let p: CredentialPolicy = client.call(Method::PUT, &format!("/credentialPolicies/{}", seg(&name)), Some(&body), &[]).await?;
            print(output, &p, COLUMNS);
        }
        CredentialPolicyCommand::List => {
            let list: Vec<CredentialPolicy> = client.call::<(), _>(Method::GET, "/credentialPolicies", None, &[]).await?;
            print(output, &list, COLUMNS);
        }
        CredentialPolicyCommand::Show { name } => {
            let p: CredentialPolicy = client.call::<(), _>(Method::GET, &format!("/credentialPolicies/{}", seg(&name)), None, &[]).await?;
            print(output, &p, COLUMNS);
        }
        CredentialPolicyCommand::Delete { name } => {
            client.send::<()>(Method::DELETE, &format!("/credentialPolicies/{}", seg(&name)), None, &[]).await?;
            eprintln!("deleted credential policy '{name}'");
        }
        CredentialPolicyCommand::Issued { registration_id, top } => {
            let mut path = format!("/issuedCertificates?top={top}");
            if let Some(id) = registration_id {
                path.push_str(&format!("&registrationId={}", seg(&id)));
            }
            let list: Vec<IssuedCertificate> = client.call::<(), _>(Method::GET, &path, None, &[]).await?;
            print(output, &list, ISSUED);
        }
    }
    Ok(())
}
