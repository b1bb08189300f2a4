//! `dps hub add|list|remove|devices`: linked hubs.

use anyhow::Result;
use dps_proto::{DeviceIdentity, LinkedHub};
use reqwest::Method;

use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

/// `hub add --connector`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Connector {
    /// The service's own device registry.
    Builtin,
    /// Azure IoT Hub's service REST API (--hub-connection-string: the hub's connection string).
    #[value(name = "azureIotHub")]
    AzureIotHub,
    /// A Mosquitto broker's dynamic-security plugin (--hub-connection-string: mqtt[s]://user:pass@host:port).
    Mosquitto,
}

impl Connector {
    /// `LinkedHub::connector`.
    fn as_str(self) -> &'static str {
        match self {
            Connector::Builtin => "builtin",
            Connector::AzureIotHub => "azureIotHub",
            Connector::Mosquitto => "mosquitto",
        }
    }
}

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
        /// How identities are created.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Connector::Builtin)]
        connector: Connector,
        /// The connector's credentials: an IoT Hub connection string, or mqtt[s]://user:pass@host:port.
        #[arg(long, env = "DPS_HUB_CONNECTION_STRING", hide_env_values = true)]
        hub_connection_string: Option<String>,
        /// A CA (PEM file) to trust for the connector's endpoint.
        #[arg(long)]
        hub_ca_file: Option<std::path::PathBuf>,
    },
    /// List linked hubs.
    List,
    /// Unlink a hub.
    Remove { host_name: String },
    /// Device identities the built-in registry holds for a hub.
    Devices { host_name: String },
}

const COLUMNS: &[(&str, &str)] = &[
    ("HOST NAME", "/hostName"),
    ("WEIGHT", "/allocationWeight"),
    ("APPLY POLICY", "/applyAllocationPolicy"),
    ("REGION", "/region"),
    ("CONNECTOR", "/connector"),
];

pub async fn run(cmd: HubCommand, target: &Target, output: Output) -> Result<()> {
    match cmd {
        HubCommand::Add { host_name, weight, region, no_apply_allocation_policy, connector, hub_connection_string, hub_ca_file } => {
            let client = Client::new(target)?;
            let ca_certificate = match hub_ca_file {
                Some(p) => Some(std::fs::read_to_string(&p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?),
                None => None,
            };
            let hub = LinkedHub {
                host_name: host_name.clone(),
                allocation_weight: weight,
                apply_allocation_policy: !no_apply_allocation_policy,
                region,
                connector: connector.as_str().to_owned(),
                connection_string: hub_connection_string,
                ca_certificate,
            };
            let saved: LinkedHub = client.call(Method::PUT, &format!("/linkedHubs/{}", seg(&host_name)), Some(&hub), &[]).await?;
            print(output, &saved, COLUMNS);
        }
        HubCommand::List => {
            let client = Client::new(target)?;
            let hubs: Vec<LinkedHub> = client.call::<(), _>(Method::GET, "/linkedHubs", None, &[]).await?;
            print(output, &hubs, COLUMNS);
        }
        HubCommand::Remove { host_name } => {
            let client = Client::new(target)?;
            client.send::<()>(Method::DELETE, &format!("/linkedHubs/{}", seg(&host_name)), None, &[]).await?;
            eprintln!("unlinked hub '{host_name}'");
        }
        HubCommand::Devices { host_name } => {
            let client = Client::new(target)?;
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
