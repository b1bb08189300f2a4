//! `dps hub add|list|remove|devices`: linked hubs.

use anyhow::Result;
use dps_proto::{DeviceIdentity, LinkedHub};
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum HubCommand {
    /// Link a hub (or change a linked hub's settings).
    Add {
        host_name: String,
        /// Allocation weight, 1–1000.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        #[arg(long)]
        region: Option<String>,
        /// Never chosen by evenly weighted / lowest latency allocation unless an enrollment names it.
        #[arg(long)]
        no_apply_allocation_policy: bool,
        /// How identities are created: builtin (default), azureIotHub or mosquitto.
        #[arg(long, default_value = "builtin")]
        connector: String,
        /// The connector's credentials: an IoT Hub connection string, or mqtt[s]://user:pass@host:port.
        #[arg(long, env = "DPS_HUB_CONNECTION_STRING", hide_env_values = true)]
        hub_connection_string: Option<String>,
        /// A CA (PEM file) to trust for the connector's endpoint.
        #[arg(long)]
        hub_ca_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// List linked hubs.
    List {
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Unlink a hub.
    Remove {
        host_name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Device identities the built-in registry holds for a hub.
    Devices {
        host_name: String,
        #[command(flatten)]
        target: Target,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
}

const COLUMNS: &[(&str, &str)] = &[
    ("HOST NAME", "/hostName"),
    ("WEIGHT", "/allocationWeight"),
    ("APPLY POLICY", "/applyAllocationPolicy"),
    ("REGION", "/region"),
    ("CONNECTOR", "/connector"),
];

pub async fn run(cmd: HubCommand) -> Result<()> {
    match cmd {
        HubCommand::Add {
            host_name,
            weight,
            region,
            no_apply_allocation_policy,
            connector,
            hub_connection_string,
            hub_ca_file,
            target,
            output,
        } => {
            let client = Client::new(&target)?;
            let ca_certificate = match hub_ca_file {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?),
                None => None,
            };
            let hub = LinkedHub {
                host_name: host_name.clone(),
                allocation_weight: weight,
                apply_allocation_policy: !no_apply_allocation_policy,
                region,
                connector,
                connection_string: hub_connection_string,
                ca_certificate,
            };
            let saved: LinkedHub = client.call(Method::PUT, &format!("/linkedHubs/{}", seg(&host_name)), Some(&hub), &[]).await?;
            print(output, &saved, COLUMNS);
        }
        HubCommand::List { target, output } => {
            let client = Client::new(&target)?;
            let hubs: Vec<LinkedHub> = client.call::<(), _>(Method::GET, "/linkedHubs", None, &[]).await?;
            print(output, &hubs, COLUMNS);
        }
        HubCommand::Remove { host_name, target } => {
            let client = Client::new(&target)?;
            client.send::<()>(Method::DELETE, &format!("/linkedHubs/{}", seg(&host_name)), None, &[]).await?;
            eprintln!("unlinked hub '{host_name}'");
        }
        HubCommand::Devices { host_name, target, output } => {
            let client = Client::new(&target)?;
            let ids: Vec<DeviceIdentity> =
                client.call::<(), _>(Method::GET, &format!("/linkedHubs/{}/devices", seg(&host_name)), None, &[]).await?;
            print(
                output,
                &ids,
                &[
                    ("DEVICE ID", "/deviceId"),
                    ("REGISTRATION ID", "/registrationId"),
                    ("AUTH", "/authenticationType"),
                    ("EDGE", "/iotEdge"),
                ],
            );
        }
    }
    Ok(())
}
