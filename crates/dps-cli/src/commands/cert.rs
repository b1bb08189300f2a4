//! `dps cert create-root|create-intermediate|create-device|create-verification|inspect`: the X.509 material
//! people otherwise script by hand with openssl, as PEM files a device or the service API takes directly
//! (certificates `NAME.pem`, PKCS#8 private keys `NAME.key.pem` readable by their owner only, and the chains
//! a device presents `NAME.chain.pem`), and the chain inspector.
//!
//! Keys are ECDSA P-256. Validity starts an hour ago (devices' clocks drift). Existing files are not
//! overwritten without `--force`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use dps_core::x509::decode_bundle;
use dps_core::x509::inspect::inspect;
use dps_core::{Clock, SystemClock};
use dps_proto::{CertificateDetails, ChainReport, RegistrationId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::output::{print, Output};

/// The longest common name X.509 allows (`ub-common-name`, RFC 5280), so the longest registration id a
/// device certificate can carry.
const MAX_CN: usize = 64;

#[derive(Debug, clap::Subcommand)]
pub enum CertCommand {
    /// A self-signed root CA: NAME.pem and NAME.key.pem.
    CreateRoot {
        /// Common name, and the files' base name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: OutArgs,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// How many intermediate CAs may follow below this one (basic constraints pathLenConstraint).
        #[arg(long)]
        path_len: Option<u8>,
    },
    /// An intermediate CA signed by --ca: NAME.pem, NAME.key.pem and NAME.chain.pem (NAME, then CA.pem's certificates).
    CreateIntermediate {
        /// Common name, and the files' base name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        issuer: IssuerArgs,
        #[command(flatten)]
        out: OutArgs,
        #[arg(long, default_value_t = 1825)]
        days: u32,
        #[arg(long)]
        path_len: Option<u8>,
    },
    /// A device (client authentication) certificate with CN = the registration id: ID.pem, ID.key.pem and
    /// ID.chain.pem (the certificate, then CA.pem's certificates: what the device presents). Self-signed without --ca.
    CreateDevice {
        #[arg(long)]
        registration_id: String,
        #[arg(long, requires = "ca_key")]
        ca: Option<PathBuf>,
        #[arg(long, requires = "ca")]
        ca_key: Option<PathBuf>,
        #[command(flatten)]
        out: OutArgs,
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Make a certificate whose validity ended yesterday (to see the service refuse it).
        #[arg(long)]
        expired: bool,
    },
    /// The proof-of-possession certificate for `dps ca verify`: CN = the verification code, signed by the CA's key.
    CreateVerification {
        #[command(flatten)]
        issuer: IssuerArgs,
        /// The code `dps ca verification-code` printed.
        #[arg(long)]
        code: String,
        /// Where to write the certificate.
        #[arg(long, default_value = "verification.pem")]
        out: PathBuf,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the certificates of PEM bundles / DER files (the first one is the leaf) and whether they form a
    /// valid chain; exits 1 when they do not.
    Inspect {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// json prints the report as JSON; without it, text.
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
}

#[derive(Debug, clap::Args)]
pub struct OutArgs {
    /// Directory to write the files in (created if missing).
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, clap::Args)]
pub struct IssuerArgs {
    /// The issuing CA's certificate (PEM; the first certificate is the CA, any others its own chain).
    #[arg(long)]
    ca: PathBuf,
    /// The issuing CA's private key (PEM: PKCS#8, SEC1 or PKCS#1).
    #[arg(long)]
    ca_key: PathBuf,
}

pub fn run(cmd: CertCommand) -> Result<()> {
    let now = SystemClock.now();
    match cmd {
        CertCommand::CreateRoot { name, out, days, path_len } => {
            check_name("--name", &name)?;
            let key = KeyPair::generate()?;
            let mut params = ca_params(&name, path_len)?;
            validity(&mut params, now, days, false)?;
            let cert = params.self_signed(&key)?;
            let files = Files::new(&out, &name)?;
            files.write_cert(&cert.pem())?;
            files.write_key(&key)?;
            Ok(())
        }
        CertCommand::CreateIntermediate { name, issuer, out, days, path_len } => {
            check_name("--name", &name)?;
            let ca = Ca::load(&issuer, now)?;
            if ca.path_len == Some(0) {
                bail!("'{}' allows no intermediate CA below it (pathLenConstraint 0)", ca.subject);
            }
            let key = KeyPair::generate()?;
            let mut params = ca_params(&name, path_len)?;
            params.use_authority_key_identifier_extension = true;
            validity(&mut params, now, days, false)?;
            let cert = params.signed_by(&key, &ca.issuer)?;
            let files = Files::new(&out, &name)?;
            files.write_cert(&cert.pem())?;
            files.write_key(&key)?;
            files.write_chain(&cert.pem(), &ca.chain)?;
            Ok(())
        }
        CertCommand::CreateDevice { registration_id, ca, ca_key, out, days, expired } => {
            let id = RegistrationId::try_from(registration_id.as_str()).map_err(|e| anyhow!("--registration-id: {e}"))?;
            if id.as_str().chars().count() > MAX_CN {
                bail!("--registration-id: a certificate's common name holds at most {MAX_CN} characters, so an X.509 device's registration id too");
            }
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = cn(id.as_str());
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            validity(&mut params, now, days, expired)?;
            let (cert, chain) = match (ca, ca_key) {
                (Some(ca), Some(ca_key)) => {
                    let ca = Ca::load(&IssuerArgs { ca, ca_key }, now)?;
                    params.use_authority_key_identifier_extension = true;
                    (params.signed_by(&key, &ca.issuer)?, ca.chain)
                }
                _ => (params.self_signed(&key)?, Vec::new()),
            };
            let files = Files::new(&out, id.as_str())?;
            files.write_cert(&cert.pem())?;
            files.write_key(&key)?;
            files.write_chain(&cert.pem(), &chain)?;
            Ok(())
        }
        CertCommand::CreateVerification { issuer, code, out, days, force } => {
            let code = code.trim();
            if code.is_empty() || code.chars().count() > MAX_CN {
                bail!("--code: the verification code must be 1–{MAX_CN} characters");
            }
            let ca = Ca::load(&issuer, now)?;
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = cn(code);
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params.use_authority_key_identifier_extension = true;
            validity(&mut params, now, days, false)?;
            let cert = params.signed_by(&key, &ca.issuer)?;
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_new(&out, cert.pem().as_bytes(), force, false)?;
            say(format_args!("wrote {} (certificate CN={code}, signed by {})", out.display(), ca.subject));
            Ok(())
        }
        CertCommand::Inspect { files, output } => {
            let mut certs = Vec::new();
            for f in &files {
                let bytes = fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
                certs.extend(decode_bundle(&bytes).map_err(|e| anyhow!("{}: {}", f.display(), e.message))?);
            }
            let report = inspect(&certs, now).map_err(|e| anyhow!("{}", e.message))?;
            match output {
                Some(Output::Json) => print(Output::Json, &report, &[]),
                _ => print_report(&report, now),
            }
            if !report.verdict.valid {
                bail!("the chain does not verify: {}", report.verdict.problems.join("; "));
            }
            Ok(())
        }
    }
}

/// Names become file names and common names: no path separators, at most 64 characters.
fn check_name(flag: &str, name: &str) -> Result<()> {
    if name.trim().is_empty() || name.starts_with('.') || name.contains(['/', '\\', '\0']) {
        bail!("{flag} must be a plain file name (no path separators, not starting with '.')");
    }
    if name.chars().count() > MAX_CN {
        bail!("{flag} is a common name: at most {MAX_CN} characters");
    }
    Ok(())
}

fn cn(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn ca_params(name: &str, path_len: Option<u8>) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = cn(name);
    params.is_ca = IsCa::Ca(path_len.map_or(BasicConstraints::Unconstrained, BasicConstraints::Constrained));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// From an hour ago for `days` days; or, `expired`, `days` days ending yesterday.
fn validity(params: &mut CertificateParams, now: DateTime<Utc>, days: u32, expired: bool) -> Result<()> {
    if days == 0 || days > 36_500 {
        bail!("--days must be 1–36500");
    }
    let now = time::OffsetDateTime::from_unix_timestamp(now.timestamp())?;
    let days = time::Duration::days(i64::from(days));
    if expired {
        params.not_after = now - time::Duration::days(1);
        params.not_before = params.not_after - days;
    } else {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + days;
    }
    Ok(())
}

/// An issuing CA read from --ca / --ca-key.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    subject: String,
    path_len: Option<u32>,
    /// Every certificate of the --ca file, the CA first: what goes after the new certificate in a chain file.
    chain: Vec<Vec<u8>>,
}

impl Ca {
    fn load(args: &IssuerArgs, now: DateTime<Utc>) -> Result<Self> {
        let bytes = fs::read(&args.ca).with_context(|| format!("cannot read --ca {}", args.ca.display()))?;
        let chain = decode_bundle(&bytes).map_err(|e| anyhow!("--ca {}: {}", args.ca.display(), e.message))?;
        let key_pem = fs::read_to_string(&args.ca_key).with_context(|| format!("cannot read --ca-key {}", args.ca_key.display()))?;
        let key =
            KeyPair::from_pem(&key_pem).map_err(|e| anyhow!("--ca-key {} is not a usable private key: {e}", args.ca_key.display()))?;
        let ca_der = chain.first().ok_or_else(|| anyhow!("--ca {} holds no certificate", args.ca.display()))?;
        let (_, cert) =
            X509Certificate::from_der(ca_der).map_err(|e| anyhow!("--ca {}: the certificate does not parse: {e}", args.ca.display()))?;
        let subject = cert.subject().to_string();
        if !cert.is_ca() {
            bail!("--ca {}: '{subject}' is not a CA certificate (basic constraints CA:TRUE missing)", args.ca.display());
        }
        if let Ok(Some(ku)) = cert.key_usage() {
            if !ku.value.key_cert_sign() {
                bail!("--ca {}: '{subject}' may not sign certificates (key usage without keyCertSign)", args.ca.display());
            }
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!("--ca-key {} is not the private key of '{subject}' ({})", args.ca_key.display(), args.ca.display());
        }
        if cert.validity().not_after.timestamp() < now.timestamp() {
            eprintln!("warning: the CA certificate '{subject}' has expired: what it signs will not verify");
        }
        let path_len = match cert.basic_constraints() {
            Ok(Some(bc)) => bc.value.path_len_constraint,
            _ => None,
        };
        let issuer = Issuer::from_ca_cert_der(&rustls::pki_types::CertificateDer::from(ca_der.as_slice()), key)
            .map_err(|e| anyhow!("--ca {}: {e}", args.ca.display()))?;
        Ok(Self { issuer, subject, path_len, chain })
    }
}

/// Prints a progress line; a closed stdout (`| head`) does not stop the files being written.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

fn pem_of(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(line));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The files of one new certificate: DIR/BASE.pem, DIR/BASE.key.pem, DIR/BASE.chain.pem.
struct Files {
    dir: PathBuf,
    base: String,
    force: bool,
}

impl Files {
    fn new(out: &OutArgs, base: &str) -> Result<Self> {
        fs::create_dir_all(&out.out_dir).with_context(|| format!("cannot create {}", out.out_dir.display()))?;
        let files = Self { dir: out.out_dir.clone(), base: base.to_owned(), force: out.force };
        if !out.force {
            for suffix in ["pem", "key.pem", "chain.pem"] {
                let p = files.path(suffix);
                if p.exists() {
                    bail!("{} exists (--force overwrites it)", p.display());
                }
            }
        }
        Ok(files)
    }

    fn path(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", self.base))
    }

    fn write_cert(&self, pem: &str) -> Result<()> {
        let p = self.path("pem");
        write_new(&p, pem.as_bytes(), self.force, false)?;
        let (subject, sha1) = match dps_core::x509::certificate_info(pem) {
            Ok(i) => (i.subject_name, i.sha1_thumbprint),
            Err(_) => (String::new(), String::new()),
        };
        say(format_args!("wrote {} (certificate {subject}, SHA-1 thumbprint {sha1})", p.display()));
        Ok(())
    }

    fn write_key(&self, key: &KeyPair) -> Result<()> {
        let p = self.path("key.pem");
        write_new(&p, key.serialize_pem().as_bytes(), self.force, true)?;
        say(format_args!("wrote {} (private key, PKCS#8, owner-only)", p.display()));
        Ok(())
    }

    fn write_chain(&self, pem: &str, issuers: &[Vec<u8>]) -> Result<()> {
        let p = self.path("chain.pem");
        let mut chain = pem.to_owned();
        for der in issuers {
            chain.push_str(&pem_of(der));
        }
        write_new(&p, chain.as_bytes(), self.force, false)?;
        say(format_args!("wrote {} ({} certificate(s): this one, then its issuers)", p.display(), issuers.len() + 1));
        Ok(())
    }
}

/// Writes a file, refusing to replace one unless `force`; `private` files are readable by their owner only.
fn write_new(path: &Path, contents: &[u8], force: bool, private: bool) -> Result<()> {
    if !force && path.exists() {
        bail!("{} exists (--force overwrites it)", path.display());
    }
    if private {
        // The service's one way to write a secret: atomic, 0600 from creation.
        return dps_service::material::write_private(path, contents);
    }
    let mut o = fs::OpenOptions::new();
    o.write(true);
    if force {
        o.create(true).truncate(true);
    } else {
        o.create_new(true);
    }
    let mut f = o.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn role(i: usize, c: &CertificateDetails) -> &'static str {
    let ca = c.basic_constraints.is_some_and(|b| b.ca);
    match (i, c.self_signed, ca) {
        (0, true, _) => "leaf, self-signed",
        (0, false, _) => "leaf",
        (_, true, _) => "root",
        (_, false, true) => "intermediate",
        _ => "not a CA",
    }
}

fn print_report(r: &ChainReport, now: DateTime<Utc>) {
    let list = |v: &[String]| if v.is_empty() { "-".to_owned() } else { v.join(", ") };
    let t = |t: Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "?".into());
    for (i, c) in r.certificates.iter().enumerate() {
        let state = match (c.not_before_utc, c.not_after_utc) {
            (_, Some(a)) if a < now => "  (expired)",
            (Some(b), _) if b > now => "  (not yet valid)",
            _ => "",
        };
        let bc = match c.basic_constraints {
            None => "-".to_owned(),
            Some(b) => match (b.ca, b.path_len_constraint) {
                (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
                (true, None) => "CA:TRUE".to_owned(),
                (false, _) => "CA:FALSE".to_owned(),
            },
        };
        println!("Certificate {} of {} ({})", i + 1, r.certificates.len(), role(i, c));
        for (label, value) in [
            ("Subject", c.subject.clone()),
            ("Issuer", c.issuer.clone()),
            ("Serial number", c.serial_number.clone()),
            ("Valid", format!("{} to {}{state}", t(c.not_before_utc), t(c.not_after_utc))),
            ("Subject alt names", list(&c.subject_alternative_names)),
            ("Key usage", list(&c.key_usage)),
            ("Extended key usage", list(&c.extended_key_usage)),
            ("Basic constraints", bc),
            ("Public key", c.public_key_algorithm.clone()),
            ("Signature", c.signature_algorithm.clone()),
            ("SHA-1 thumbprint", c.sha1_thumbprint.clone()),
            ("SHA-256 thumbprint", c.sha256_thumbprint.clone()),
        ] {
            println!("  {label:<19} {value}");
        }
        println!();
    }
    let v = &r.verdict;
    match (v.valid, v.anchor.as_deref()) {
        (true, Some(a)) => println!("Chain: valid, up to '{a}'"),
        (true, None) => println!("Chain: valid"),
        (false, _) => println!("Chain: INVALID"),
    }
    for p in &v.problems {
        println!("  problem: {p}");
    }
    for n in &v.notes {
        println!("  note: {n}");
    }
}
