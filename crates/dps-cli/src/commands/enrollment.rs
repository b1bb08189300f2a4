//! `dps enrollment create|show|list|update|delete|import` (like `az iot dps enrollment`).

use anyhow::{bail, Result};
use dps_proto::*;

use super::{documents, json_arg};
use crate::client::Target;
use crate::output::Output;

/// Options shared by individual enrollments and groups.
#[derive(Debug, Clone, clap::Args, Default)]
pub struct CommonArgs {
    /// Primary symmetric key (base64; generated when omitted).
    #[arg(long)]
    pub primary_key: Option<String>,
    /// Secondary symmetric key (base64; generated when omitted).
    #[arg(long)]
    pub secondary_key: Option<String>,
    #[arg(long, value_enum, ignore_case = true)]
    pub provisioning_status: Option<ProvisioningStatusArg>,
    /// Hubs the devices may be assigned to (repeatable or space-separated).
    #[arg(long, num_args = 1..)]
    pub iot_hubs: Vec<String>,
    #[arg(long, value_enum, ignore_case = true)]
    pub allocation_policy: Option<AllocationPolicyArg>,
    /// Initial twin tags, a JSON object.
    #[arg(long)]
    pub initial_twin_tags: Option<String>,
    /// Initial twin desired properties, a JSON object.
    #[arg(long)]
    pub initial_twin_properties: Option<String>,
    /// The devices are IoT Edge devices.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub edge_enabled: Option<bool>,
    #[arg(long, value_enum, ignore_case = true)]
    pub reprovision_policy: Option<ReprovisionPolicyArg>,
    /// Custom allocation webhook URL.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Custom allocation API version.
    #[arg(long)]
    pub api_version: Option<String>,
    /// The credential policy that issues certificates to devices sending a CSR (`dps credential-policy`); an
    /// empty value removes it.
    #[arg(long)]
    pub credential_policy: Option<String>,
}

/// `--provisioning-status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProvisioningStatusArg {
    Enabled,
    Disabled,
}

/// `--allocation-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocationPolicyArg {
    Hashed,
    #[value(name = "geolatency")]
    GeoLatency,
    Static,
    Custom,
}

/// `--reprovision-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReprovisionPolicyArg {
    /// Assign the device again, carrying its twin to the new hub.
    #[value(name = "reprovisionandmigratedata")]
    MigrateData,
    /// Assign the device again with the enrollment's initial twin.
    #[value(name = "reprovisionandresetdata")]
    ResetData,
    /// Keep the device on its hub.
    Never,
}

/// `--attestation-type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttestationArg {
    #[value(name = "symmetrickey")]
    SymmetricKey,
    Tpm,
    X509,
}

/// `renew-key --key-type`: which keys are generated again (`swap` exchanges them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyType {
    Primary,
    Secondary,
    Both,
    Swap,
}

impl KeyType {
    /// The body's `keyType`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Primary => "primary",
            KeyType::Secondary => "secondary",
            KeyType::Both => "both",
            KeyType::Swap => "swap",
        }
    }
}

/// `list`'s options, for enrollments and groups alike.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// At most this many.
    #[arg(long)]
    pub top: Option<usize>,
}

#[derive(Debug, clap::Subcommand)]
pub enum EnrollmentCommand {
    /// Create an individual enrollment.
    Create {
        /// The enrollment's registration id.
        #[arg(long, alias = "registration-id")]
        enrollment_id: String,
        #[arg(long, value_enum, ignore_case = true, default_value_t = AttestationArg::SymmetricKey)]
        attestation_type: AttestationArg,
        /// Device id in the hub (default: the registration id).
        #[arg(long)]
        device_id: Option<String>,
        /// TPM endorsement key (base64).
        #[arg(long)]
        endorsement_key: Option<String>,
        /// Device certificate (PEM file) for X.509.
        #[arg(long)]
        certificate_path: Option<std::path::PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Show an enrollment (keys included with --show-keys).
    Show {
        /// The enrollment's registration id.
        #[arg(long, alias = "registration-id")]
        enrollment_id: String,
        /// Print the symmetric keys too.
        #[arg(long)]
        show_keys: bool,
    },
    /// List enrollments.
    List(ListArgs),
    /// Change an enrollment (only the given options; guarded by its etag).
    Update {
        /// The enrollment's registration id.
        #[arg(long, alias = "registration-id")]
        enrollment_id: String,
        #[arg(long)]
        device_id: Option<String>,
        /// A TPM enrollment's new endorsement key (base64 TPM2B_PUBLIC, as `dps tpm show` prints it).
        #[arg(long)]
        endorsement_key: Option<String>,
        /// Expected etag (default: the current one).
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Regenerate symmetric keys (key rolling): the old key stops working at once.
    RenewKey {
        /// The enrollment's registration id.
        #[arg(long, alias = "registration-id")]
        enrollment_id: String,
        #[arg(long, value_enum, ignore_case = true, default_value_t = KeyType::Both)]
        key_type: KeyType,
    },
    /// Import many enrollments (a JSON array or NDJSON file, `-` for standard input) through bulk operations.
    Import(super::import::ImportArgs),
    /// Delete an enrollment.
    Delete {
        /// The enrollment's registration id.
        #[arg(long, alias = "registration-id")]
        enrollment_id: String,
        /// Delete only at this etag (default: unconditionally).
        #[arg(long)]
        etag: Option<String>,
    },
}

pub const COLUMNS: &[(&str, &str)] = &[
    ("REGISTRATION ID", "/registrationId"),
    ("DEVICE ID", "/deviceId"),
    ("ATTESTATION", "/attestation/type"),
    ("STATUS", "/provisioningStatus"),
    ("POLICY", "/allocationPolicy"),
    ("HUBS", "/iotHubs"),
];

pub fn apply_common(a: &CommonArgs, c: Shared<'_>) -> Result<()> {
    if a.primary_key.is_some() || a.secondary_key.is_some() {
        if c.attestation.kind != AttestationType::SymmetricKey {
            bail!("--primary-key/--secondary-key apply to symmetric-key attestation only");
        }
        let sk = c.attestation.symmetric_key.get_or_insert_with(Default::default);
        if let Some(k) = &a.primary_key {
            sk.primary_key = Some(k.clone());
        }
        if let Some(k) = &a.secondary_key {
            sk.secondary_key = Some(k.clone());
        }
    }
    if let Some(s) = a.provisioning_status {
        *c.provisioning_status = Some(match s {
            ProvisioningStatusArg::Enabled => ProvisioningStatus::Enabled,
            ProvisioningStatusArg::Disabled => ProvisioningStatus::Disabled,
        });
    }
    if !a.iot_hubs.is_empty() {
        let hubs: Vec<String> = a.iot_hubs.iter().flat_map(|h| h.split([' ', ','])).filter(|h| !h.is_empty()).map(str::to_owned).collect();
        *c.iot_hubs = Some(hubs);
    }
    if let Some(p) = a.allocation_policy {
        *c.allocation_policy = Some(match p {
            AllocationPolicyArg::Hashed => AllocationPolicy::Hashed,
            AllocationPolicyArg::GeoLatency => AllocationPolicy::GeoLatency,
            AllocationPolicyArg::Static => AllocationPolicy::Static,
            AllocationPolicyArg::Custom => AllocationPolicy::Custom,
        });
    }
    if a.initial_twin_tags.is_some() || a.initial_twin_properties.is_some() {
        let twin = c.initial_twin.get_or_insert_with(Default::default);
        if let Some(t) = &a.initial_twin_tags {
            twin.tags = Some(json_arg("--initial-twin-tags", t)?);
        }
        if let Some(p) = &a.initial_twin_properties {
            twin.properties = Some(InitialTwinProperties { desired: Some(json_arg("--initial-twin-properties", p)?) });
        }
    }
    if let Some(p) = &a.credential_policy {
        *c.credential_policy_name = Some(p.clone()).filter(|p| !p.is_empty());
    }
    if let Some(e) = a.edge_enabled {
        *c.capabilities = Some(DeviceCapabilities { iot_edge: e });
    }
    if let Some(r) = a.reprovision_policy {
        *c.reprovision_policy = Some(match r {
            ReprovisionPolicyArg::MigrateData => ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: true },
            ReprovisionPolicyArg::ResetData => ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false },
            ReprovisionPolicyArg::Never => ReprovisionPolicy { update_hub_assignment: false, migrate_device_data: true },
        });
    }
    if a.webhook_url.is_some() || a.api_version.is_some() {
        let url = a.webhook_url.clone().or_else(|| c.custom_allocation_definition.as_ref().map(|d| d.webhook_url.clone()));
        let Some(webhook_url) = url else { bail!("--api-version needs --webhook-url") };
        *c.custom_allocation_definition =
            Some(CustomAllocationDefinition { webhook_url, api_version: a.api_version.clone().unwrap_or_else(|| "2021-10-01".into()) });
    }
    Ok(())
}

/// Hides the symmetric keys unless asked for.
pub fn redact(a: &mut AttestationMechanism, show: bool) {
    if !show {
        if let Some(sk) = a.symmetric_key.as_mut() {
            sk.primary_key = sk.primary_key.as_ref().map(|_| "<hidden: --show-keys>".into());
            sk.secondary_key = sk.secondary_key.as_ref().map(|_| "<hidden: --show-keys>".into());
        }
    }
}

pub fn attestation_of(
    kind: AttestationArg,
    endorsement_key: Option<String>,
    certificate: Option<&std::path::Path>,
    group: bool,
) -> Result<AttestationMechanism> {
    Ok(match kind {
        AttestationArg::SymmetricKey => AttestationMechanism::symmetric_key(None, None),
        AttestationArg::Tpm => {
            let Some(ek) = endorsement_key else { bail!("--attestation-type tpm needs --endorsement-key") };
            AttestationMechanism {
                kind: AttestationType::Tpm,
                tpm: Some(TpmAttestation { endorsement_key: Some(ek), storage_root_key: None }),
                x509: None,
                symmetric_key: None,
            }
        }
        AttestationArg::X509 => {
            let Some(p) = certificate else { bail!("--attestation-type x509 needs --certificate-path") };
            let pem = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
            let certs = X509Certificates { primary: Some(X509CertificateWithInfo { certificate: Some(pem), info: None }), secondary: None };
            let x509 = if group {
                X509Attestation { signing_certificates: Some(certs), ..Default::default() }
            } else {
                X509Attestation { client_certificates: Some(certs), ..Default::default() }
            };
            AttestationMechanism { kind: AttestationType::X509, tpm: None, x509: Some(x509), symmetric_key: None }
        }
    })
}

pub async fn run(cmd: EnrollmentCommand, target: &Target, output: Output) -> Result<()> {
    type E = IndividualEnrollment;
    match cmd {
        EnrollmentCommand::Import(a) => super::import::run::<super::import::Enrollments>(a, target, output).await,
        EnrollmentCommand::RenewKey { enrollment_id, key_type } => {
            documents::renew_key::<E>(target, &enrollment_id, key_type, output).await
        }
        EnrollmentCommand::Create { enrollment_id, attestation_type, device_id, endorsement_key, certificate_path, common } => {
            let mut e = E::new(enrollment_id, attestation_of(attestation_type, endorsement_key, certificate_path.as_deref(), false)?);
            e.device_id = device_id;
            documents::create(target, e, &common, COLUMNS, output).await
        }
        EnrollmentCommand::Show { enrollment_id, show_keys } => {
            documents::show::<E>(target, &enrollment_id, show_keys, COLUMNS, output).await
        }
        EnrollmentCommand::List(ListArgs { top }) => documents::list::<E>(target, top, COLUMNS, output).await,
        EnrollmentCommand::Update { enrollment_id, device_id, endorsement_key, etag, common } => {
            let change = |e: &mut E| update(e, device_id, endorsement_key, &common);
            documents::update(target, &enrollment_id, etag, change, COLUMNS, output).await
        }
        EnrollmentCommand::Delete { enrollment_id, etag } => documents::delete::<E>(target, &enrollment_id, etag).await,
    }
}

/// `update`'s changes to an individual enrollment.
fn update(e: &mut IndividualEnrollment, device_id: Option<String>, endorsement_key: Option<String>, common: &CommonArgs) -> Result<()> {
    if let Some(d) = device_id {
        e.device_id = Some(d);
    }
    if let Some(ek) = endorsement_key {
        let Some(tpm) = e.attestation.tpm.as_mut().filter(|_| e.attestation.kind == AttestationType::Tpm) else {
            bail!("--endorsement-key: '{}' is not a TPM enrollment", e.registration_id);
        };
        tpm.endorsement_key = Some(ek.split_whitespace().collect());
    }
    apply_common(common, e.shared())?;
    e.registration_state = None;
    Ok(())
}
