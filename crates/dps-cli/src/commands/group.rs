//! `dps enrollment-group create|show|list|update|delete|import` (like `az iot dps enrollment-group`).

use anyhow::Result;
use dps_proto::*;

use super::documents;
use super::enrollment::{apply_common, attestation_of, AttestationArg, CommonArgs, KeyType, ListArgs};
use crate::client::Target;
use crate::output::Output;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create an enrollment group.
    Create {
        /// The enrollment group's id.
        #[arg(long, alias = "enrollment-id")]
        group_id: String,
        /// symmetrickey (default) or x509 (a TPM group has no key of its own).
        #[arg(long, value_enum, ignore_case = true, default_value_t = AttestationArg::SymmetricKey)]
        attestation_type: AttestationArg,
        /// Signing (root or intermediate) certificate, PEM file, for X.509 groups.
        #[arg(long)]
        certificate_path: Option<std::path::PathBuf>,
        /// Name of a verified CA certificate, for X.509 groups.
        #[arg(long)]
        ca_name: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Show an enrollment group (keys included with --show-keys).
    Show {
        /// The enrollment group's id.
        #[arg(long, alias = "enrollment-id")]
        group_id: String,
        /// Print the symmetric keys too.
        #[arg(long)]
        show_keys: bool,
    },
    /// List enrollment groups.
    List(ListArgs),
    /// Change an enrollment group (only the given options; guarded by its etag).
    Update {
        /// The enrollment group's id.
        #[arg(long, alias = "enrollment-id")]
        group_id: String,
        /// Expected etag (default: the current one).
        #[arg(long)]
        etag: Option<String>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Regenerate symmetric keys (key rolling): the old key stops working at once.
    RenewKey {
        /// The enrollment group's id.
        #[arg(long, alias = "enrollment-id")]
        group_id: String,
        #[arg(long, value_enum, ignore_case = true, default_value_t = KeyType::Both)]
        key_type: KeyType,
    },
    /// Import many groups (a JSON array or NDJSON file, `-` for standard input) through bulk operations.
    Import(super::import::ImportArgs),
    /// Delete an enrollment group.
    Delete {
        /// The enrollment group's id.
        #[arg(long, alias = "enrollment-id")]
        group_id: String,
        /// Delete only at this etag (default: unconditionally).
        #[arg(long)]
        etag: Option<String>,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("GROUP ID", "/enrollmentGroupId"),
    ("ATTESTATION", "/attestation/type"),
    ("STATUS", "/provisioningStatus"),
    ("POLICY", "/allocationPolicy"),
    ("HUBS", "/iotHubs"),
];

pub async fn run(cmd: GroupCommand, target: &Target, output: Output) -> Result<()> {
    type G = EnrollmentGroup;
    match cmd {
        GroupCommand::Import(a) => super::import::run::<super::import::Groups>(a, target, output).await,
        GroupCommand::RenewKey { group_id, key_type } => documents::renew_key::<G>(target, &group_id, key_type, output).await,
        GroupCommand::Create { group_id, attestation_type, certificate_path, ca_name, common } => {
            let attestation = match ca_name {
                Some(ca) => AttestationMechanism {
                    kind: AttestationType::X509,
                    tpm: None,
                    x509: Some(X509Attestation {
                        ca_references: Some(X509CaReferences { primary: Some(ca), secondary: None }),
                        ..Default::default()
                    }),
                    symmetric_key: None,
                },
                None => attestation_of(attestation_type, None, certificate_path.as_deref(), true)?,
            };
            documents::create(target, G::new(group_id, attestation), &common, COLUMNS, output).await
        }
        GroupCommand::Show { group_id, show_keys } => documents::show::<G>(target, &group_id, show_keys, COLUMNS, output).await,
        GroupCommand::List(ListArgs { top }) => documents::list::<G>(target, top, COLUMNS, output).await,
        GroupCommand::Update { group_id, etag, common } => {
            let change = |g: &mut G| apply_common(&common, g.shared());
            documents::update(target, &group_id, etag, change, COLUMNS, output).await
        }
        GroupCommand::Delete { group_id, etag } => documents::delete::<G>(target, &group_id, etag).await,
    }
}
