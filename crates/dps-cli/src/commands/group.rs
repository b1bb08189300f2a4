//! `dps enrollment-group create|show|list|update|delete|import` (like `az iot dps enrollment-group`).

use anyhow::{bail, Result};
use dps_proto::*;
use reqwest::Method;

use super::enrollment::{apply_common, attestation_of, redact, AttestationArg, Common, CommonArgs, KeyType};
use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

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
    List {
        /// At most this many.
        #[arg(long)]
        top: Option<usize>,
    },
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

fn common_of(g: &mut EnrollmentGroup) -> Common<'_> {
    Common {
        attestation: &mut g.attestation,
        provisioning_status: &mut g.provisioning_status,
        iot_hubs: &mut g.iot_hubs,
        allocation_policy: &mut g.allocation_policy,
        initial_twin: &mut g.initial_twin,
        capabilities: &mut g.capabilities,
        reprovision_policy: &mut g.reprovision_policy,
        custom: &mut g.custom_allocation_definition,
    }
}

pub async fn run(cmd: GroupCommand, target: &Target, output: Output) -> Result<()> {
    match cmd {
        GroupCommand::Import(a) => return super::import::run::<super::import::Groups>(a, target, output).await,
        GroupCommand::RenewKey { group_id, key_type } => {
            let client = Client::new(target)?;
            let a: AttestationMechanism = client
                .call(
                    Method::POST,
                    &format!("/enrollmentGroups/{}/renewKey", seg(&group_id)),
                    Some(&serde_json::json!({ "keyType": key_type.as_str() })),
                    &[],
                )
                .await?;
            print(
                output,
                &a,
                &[("TYPE", "/type"), ("PRIMARY KEY", "/symmetricKey/primaryKey"), ("SECONDARY KEY", "/symmetricKey/secondaryKey")],
            );
        }
        GroupCommand::Create { group_id, attestation_type, certificate_path, ca_name, common } => {
            let client = Client::new(target)?;
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
            let mut g = EnrollmentGroup {
                enrollment_group_id: group_id.clone(),
                attestation,
                capabilities: None,
                iot_hub_host_name: None,
                initial_twin: None,
                etag: None,
                provisioning_status: None,
                reprovision_policy: None,
                created_date_time_utc: None,
                last_updated_date_time_utc: None,
                allocation_policy: None,
                iot_hubs: None,
                custom_allocation_definition: None,
                extra: Default::default(),
            };
            apply_common(&common, common_of(&mut g))?;
            let path = format!("/enrollmentGroups/{}", seg(&group_id));
            if client.call::<(), EnrollmentGroup>(Method::GET, &path, None, &[]).await.is_ok() {
                bail!("enrollment group '{group_id}' already exists; change it with `dps enrollment-group update`");
            }
            let created: EnrollmentGroup = client.call(Method::PUT, &path, Some(&g), &[]).await?;
            print(output, &created, COLUMNS);
        }
        GroupCommand::Show { group_id, show_keys } => {
            let client = Client::new(target)?;
            let mut g: EnrollmentGroup =
                client.call::<(), _>(Method::GET, &format!("/enrollmentGroups/{}", seg(&group_id)), None, &[]).await?;
            redact(&mut g.attestation, show_keys);
            print(output, &g, COLUMNS);
        }
        GroupCommand::List { top } => {
            let client = Client::new(target)?;
            let mut list: Vec<EnrollmentGroup> = client.query_all("/enrollmentGroups/query", top).await?;
            list.iter_mut().for_each(|g| redact(&mut g.attestation, false));
            print(output, &list, COLUMNS);
        }
        GroupCommand::Update { group_id, etag, common } => {
            let client = Client::new(target)?;
            let path = format!("/enrollmentGroups/{}", seg(&group_id));
            let mut g: EnrollmentGroup = client.call::<(), _>(Method::GET, &path, None, &[]).await?;
            let if_match = etag.or_else(|| g.etag.clone()).unwrap_or_else(|| "*".into());
            apply_common(&common, common_of(&mut g))?;
            let mut updated: EnrollmentGroup = client.call(Method::PUT, &path, Some(&g), &[("if-match", if_match)]).await?;
            redact(&mut updated.attestation, false);
            print(output, &updated, COLUMNS);
        }
        GroupCommand::Delete { group_id, etag } => {
            let client = Client::new(target)?;
            let h: Vec<(&str, String)> = etag.map(|e| ("if-match", e)).into_iter().collect();
            client.send::<()>(Method::DELETE, &format!("/enrollmentGroups/{}", seg(&group_id)), None, &h).await?;
            eprintln!("deleted enrollment group '{group_id}'");
        }
    }
    Ok(())
}
