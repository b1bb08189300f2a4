//! `dps ca upload|list|show|delete|verification-code|verify`: the CA certificate store and its
//! proof-of-possession flow (like `az iot dps certificate …`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use dps_proto::{CaCertificate, CertificateVerification};
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum CaCommand {
    /// Upload (or replace) a CA certificate (root or intermediate).
    Upload {
        name: String,
        /// PEM or DER file.
        #[arg(long)]
        certificate_path: PathBuf,
        /// Trust it at once, without proof of possession (Azure's "verified on upload").
        #[arg(long)]
        verified: bool,
    },
    /// List CA certificates.
    List,
    /// Show a CA certificate.
    Show { name: String },
    /// Delete a CA certificate.
    Delete { name: String },
    /// Generate the code the proof-of-possession certificate's CN must carry.
    VerificationCode { name: String },
    /// Verify a CA with a certificate signed by its key whose CN is the verification code
    /// (make one with `dps cert create-verification`).
    Verify {
        name: String,
        #[arg(long)]
        certificate_path: PathBuf,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("NAME", "/name"),
    ("SUBJECT", "/info/subjectName"),
    ("VERIFIED", "/isVerified"),
    ("EXPIRES", "/info/notAfterUtc"),
    ("SHA-1", "/info/sha1Thumbprint"),
];

/// A certificate file as text: PEM as is, DER as base64.
fn read_certificate(p: &PathBuf) -> Result<String> {
    let bytes = std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?;
    Ok(match String::from_utf8(bytes.clone()) {
        Ok(text) if text.contains("-----BEGIN") => text,
        _ => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(bytes)
        }
    })
}

pub async fn run(cmd: CaCommand, target: &Target, output: Output) -> Result<()> {
    match cmd {
        CaCommand::Upload { name, certificate_path, verified } => {
            let client = Client::new(target)?;
            let body = serde_json::json!({ "name": name, "certificate": read_certificate(&certificate_path)?, "isVerified": verified });
            let ca: CaCertificate = client.call(Method::PUT, &format!("/certificates/{}", seg(&name)), Some(&body), &[]).await?;
            print(output, &ca, COLUMNS);
        }
        CaCommand::List => {
            let list: Vec<CaCertificate> = Client::new(target)?.call::<(), _>(Method::GET, "/certificates", None, &[]).await?;
            print(output, &list, COLUMNS);
        }
        CaCommand::Show { name } => {
            let ca: CaCertificate =
                Client::new(target)?.call::<(), _>(Method::GET, &format!("/certificates/{}", seg(&name)), None, &[]).await?;
            print(output, &ca, COLUMNS);
        }
        CaCommand::Delete { name } => {
            Client::new(target)?.send::<()>(Method::DELETE, &format!("/certificates/{}", seg(&name)), None, &[]).await?;
            eprintln!("deleted CA certificate '{name}'");
        }
        CaCommand::VerificationCode { name } => {
            let v: serde_json::Value = Client::new(target)?
                .call::<(), _>(Method::POST, &format!("/certificates/{}/generateVerificationCode", seg(&name)), None, &[])
                .await?;
            match output {
                Output::Json => print(output, &serde_json::json!({ "verificationCode": v["verificationCode"] }), &[]),
                Output::Table => println!("{}", v["verificationCode"].as_str().unwrap_or_default()),
            }
        }
        CaCommand::Verify { name, certificate_path } => {
            let body = CertificateVerification { certificate: read_certificate(&certificate_path)? };
            let ca: CaCertificate =
                Client::new(target)?.call(Method::POST, &format!("/certificates/{}/verify", seg(&name)), Some(&body), &[]).await?;
            print(output, &ca, COLUMNS);
        }
    }
    Ok(())
}
