//! `dps credential-policy set|list|show|delete|issued`: the credential policies enrollments name
//! (`credentialPolicyName`) to issue certificates from devices' CSRs, and the log of certificates issued.

use std::path::PathBuf;

use anyhow::{Context, Result};
use dps_proto::credentials::{KeyType, DEFAULT_VALIDITY_DAYS};
use dps_proto::{CredentialPolicy, IssuedCertificate, IssuerKind};
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

/// A key type as the API names it, in any case (`ecP256`, `RSA2048`…).
fn key_type(s: &str) -> Result<KeyType, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("'{s}' is not one of {}", KeyType::ALL.map(KeyType::as_str).join(", ")))
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
        /// Key types a CSR may carry, repeated: ecP256, ecP384, rsa2048, rsa3072, rsa4096, ed25519 (default: all but
        /// ed25519).
        #[arg(long = "key-type", value_parser = key_type)]
        key_types: Vec<KeyType>,
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
fn policy(name: &str, certificate: Option<&PathBuf>, key: Option<&PathBuf>, days: u32, key_types: &[KeyType]) -> Result<CredentialPolicy> {
    let mut p = CredentialPolicy::local(name);
    if let (Some(c), Some(k)) = (certificate, key) {
        p.issuer = IssuerKind::Uploaded;
        p.certificate = Some(read(c)?);
        p.private_key = Some(read(k)?);
    }
    p.validity_days = days;
    if !key_types.is_empty() {
        p.key_types = key_types.to_vec();
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
