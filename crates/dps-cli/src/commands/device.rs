//! `dps device register`: be a device — register with the provisioning service as the device SDKs do and poll
//! to the end — with a TPM (§4.4: HTTPS §1.10, or AMQP with the `TPM` SASL mechanism §3.3) or a symmetric key
//! (§4.2: HTTPS, MQTT or AMQP). Prints the final operation status; anything but `assigned` exits non-zero.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use dps_device::amqp::AmqpSession;
use dps_device::carrier::Carrier;
use dps_device::mqtt::MqttSession;
use dps_device::{Endpoint, HttpsDevice, Polling, Registration};
use dps_proto::{RegistrationOperationStatus, RegistrationStatus};

use crate::client::read_endpoint;
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Register a device and poll until the service decides; print the final operation status.
    Register(RegisterArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attestation {
    /// The device's TPM (--tcti); the registration id defaults to the one derived from its EK.
    Tpm,
    /// A symmetric key (--key), individual or derived from a group's key (`dps compute-device-key`).
    #[value(name = "symmetrickey", alias = "symmetric-key")]
    SymmetricKey,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Https,
    Amqp,
    /// Symmetric keys only: DPS has no TPM attestation over MQTT.
    Mqtt,
    /// MQTT over a WebSocket on the HTTPS port (symmetric keys only).
    MqttWs,
    /// AMQP over a WebSocket on the HTTPS port (symmetric keys only).
    AmqpWs,
}

#[derive(Debug, clap::Args)]
pub struct RegisterArgs {
    #[arg(long, value_enum)]
    attestation: Attestation,
    #[arg(long, value_enum, default_value_t = Transport::Https)]
    transport: Transport,
    /// Registration id (TPM: default the id derived from the endorsement key, §4.4.2).
    #[arg(long)]
    registration_id: Option<String>,
    /// The device's symmetric key (base64), for --attestation symmetrickey.
    #[arg(long, env = "DPS_DEVICE_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Ask for a certificate: a CSR file (PEM or DER PKCS#10, CN = the registration id; the enrollment must
    /// name a credential policy). Symmetric keys; sent with api-version 2025-07-01-preview.
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Where to write the issued certificate chain (PEM, the device's first); default: standard output.
    #[arg(long, requires = "csr")]
    certificate_out: Option<PathBuf>,
    #[cfg(feature = "tpm")]
    #[command(flatten)]
    tpm: super::tpm::TctiArgs,
    #[command(flatten)]
    endpoint: DeviceEndpoint,
    #[arg(long, value_enum, default_value_t)]
    output: Output,
}

/// Where the device endpoint is: a local service's endpoint.json, or given in full.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceEndpoint {
    /// Data directory of a local service: its endpoint.json gives the host, ports, ID scope and CA.
    #[arg(long, env = "DPS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The device endpoint's host[:HTTPS port] (default: endpoint.json's).
    #[arg(long)]
    provisioning_host: Option<String>,
    /// ID scope (default: endpoint.json's).
    #[arg(long)]
    id_scope: Option<String>,
    /// CA certificate (PEM) to trust for the service's TLS certificate (default: endpoint.json's).
    #[arg(long, env = "DPS_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// AMQP port (default: endpoint.json's, else 5671).
    #[arg(long)]
    amqp_port: Option<u16>,
    /// MQTT port (default: endpoint.json's, else 8883).
    #[arg(long)]
    mqtt_port: Option<u16>,
}

/// The resolved endpoint and the AMQP and MQTT ports.
struct Resolved {
    endpoint: Endpoint,
    amqp_port: u16,
    mqtt_port: u16,
}

impl DeviceEndpoint {
    /// The flags, completed from endpoint.json unless host, ID scope and CA are all given.
    fn resolve(&self) -> Result<Resolved> {
        let info = match (&self.provisioning_host, &self.id_scope, &self.ca_file) {
            (Some(_), Some(_), Some(_)) => None,
            _ => Some(read_endpoint(&self.data_dir.clone().unwrap_or_else(dps_service::config::default_data_dir))?),
        };
        // Without endpoint.json all three flags are given.
        let missing = || anyhow!("give --provisioning-host, --id-scope and --ca-file, or --data-dir of a local service");
        let host = (self.provisioning_host.clone())
            .or_else(|| info.as_ref().map(|i| dps_service::host_with_port(&i.host, i.ports.https.unwrap_or(443))))
            .ok_or_else(missing)?;
        let id_scope = self.id_scope.clone().or_else(|| info.as_ref().map(|i| i.id_scope.clone())).ok_or_else(missing)?;
        let ca = self.ca_file.clone().or_else(|| info.as_ref().map(|i| PathBuf::from(&i.ca_certificate))).ok_or_else(missing)?;
        let ca_pem = std::fs::read(&ca).with_context(|| format!("cannot read the CA file {}", ca.display()))?;
        let port = |flag: Option<u16>, from_info: Option<u16>, default: u16| flag.or(from_info).unwrap_or(default);
        Ok(Resolved {
            endpoint: Endpoint { host, id_scope, ca_pem },
            amqp_port: port(self.amqp_port, info.as_ref().and_then(|i| i.ports.amqp), 5671),
            mqtt_port: port(self.mqtt_port, info.as_ref().and_then(|i| i.ports.mqtt), 8883),
        })
    }
}

pub async fn run(cmd: DeviceCommand) -> Result<()> {
    match cmd {
        DeviceCommand::Register(a) => {
            let status = register(&a).await?;
            print(
                a.output,
                &status,
                &[
                    ("STATUS", "/status"),
                    ("REGISTRATION ID", "/registrationState/registrationId"),
                    ("ASSIGNED HUB", "/registrationState/assignedHub"),
                    ("DEVICE ID", "/registrationState/deviceId"),
                    ("SUBSTATUS", "/registrationState/substatus"),
                ],
            );
            write_issued(&a, &status)?;
            if status.status != RegistrationStatus::Assigned {
                let state = status.registration_state.unwrap_or_default();
                bail!(
                    "the registration ended {}: {} ({})",
                    status.status.as_str(),
                    state.error_message.unwrap_or_default(),
                    state.error_code.map(|c| c.to_string()).unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

/// The CSR of `--csr` as the register body carries it: base64 DER.
fn read_csr(path: &PathBuf) -> Result<String> {
    use base64::Engine;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("-----BEGIN") {
        let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        return Ok(body.split_whitespace().collect());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// Writes the chain issued from `--csr` (PEM) to `--certificate-out`, or prints it.
fn write_issued(a: &RegisterArgs, status: &RegistrationOperationStatus) -> Result<()> {
    let Some(chain) = status.registration_state.as_ref().and_then(|s| s.issued_certificate_chain.as_ref()) else { return Ok(()) };
    let pem: String = chain.iter().map(|c| format!("-----BEGIN CERTIFICATE-----\n{c}\n-----END CERTIFICATE-----\n")).collect();
    match &a.certificate_out {
        Some(path) => {
            std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("issued certificate chain written to {}", path.display());
        }
        None if a.output == Output::Table => print!("{pem}"),
        None => {}
    }
    Ok(())
}

async fn register(a: &RegisterArgs) -> Result<RegistrationOperationStatus> {
    let Resolved { endpoint, amqp_port, mqtt_port } = a.endpoint.resolve()?;
    let polling = Polling::RetryAfter;
    match a.attestation {
        Attestation::Tpm => register_tpm(a, endpoint, amqp_port, polling).await,
        Attestation::SymmetricKey => {
            let Some(id) = a.registration_id.as_deref() else { bail!("--attestation symmetrickey needs --registration-id") };
            let Some(key) = a.key.as_deref() else { bail!("--attestation symmetrickey needs --key") };
            let registration = Registration { csr: a.csr.as_ref().map(read_csr).transpose()? };
            let sas = || dps_device::device_sas(&endpoint.id_scope, id, key, std::time::Duration::from_secs(3600));
            let tls = || dps_device::tls_config(&endpoint.ca_pem).map(std::sync::Arc::new);
            let flow = dps_device::flow::Flow::default();
            match a.transport {
                Transport::Https => {
                    HttpsDevice::new(endpoint.clone(), polling)?.registering(registration).provision_symmetric_key(id, key).await
                }
                Transport::Mqtt | Transport::MqttWs => {
                    let carrier = if a.transport == Transport::Mqtt { Carrier::Port(mqtt_port) } else { Carrier::WebSocket };
                    let mut session =
                        MqttSession::connect_registering(&endpoint, carrier, id, tls()?, Some(sas()?), flow, registration).await?;
                    session.provision(id, polling).await
                }
                Transport::Amqp | Transport::AmqpWs => {
                    let carrier = if a.transport == Transport::Amqp { Carrier::Port(amqp_port) } else { Carrier::WebSocket };
                    let mut session =
                        AmqpSession::connect_registering(&endpoint, carrier, id, tls()?, Some(sas()?), flow, registration).await?;
                    let status = session.provision(id, polling).await;
                    let _ = session.close().await;
                    status
                }
            }
        }
    }
}

#[cfg(feature = "tpm")]
async fn register_tpm(a: &RegisterArgs, endpoint: Endpoint, amqp_port: u16, polling: Polling) -> Result<RegistrationOperationStatus> {
    use dps_device::flow::Flow;
    use dps_device::tpm_worker::TpmWorker;
    if matches!(a.transport, Transport::Mqtt | Transport::MqttWs) {
        bail!("TPM attestation runs over HTTPS or AMQP: DPS has none over MQTT");
    }
    let tpm = TpmWorker::open(a.tpm.tcti.clone()).await.context("pass --tcti (e.g. device:/dev/tpmrm0)")?;
    let id = a.registration_id.as_deref();
    match a.transport {
        Transport::Amqp => dps_device::tpm_amqp::provision(&endpoint, Carrier::Port(amqp_port), &tpm, id, polling, Flow::default()).await,
        Transport::AmqpWs => dps_device::tpm_amqp::provision(&endpoint, Carrier::WebSocket, &tpm, id, polling, Flow::default()).await,
        _ => HttpsDevice::new(endpoint, polling)?.provision_tpm(&tpm, id).await,
    }
}

#[cfg(not(feature = "tpm"))]
async fn register_tpm(_: &RegisterArgs, _: Endpoint, _: u16, _: Polling) -> Result<RegistrationOperationStatus> {
    bail!("this dps was built without the `tpm` feature (it needs libtss2-dev)")
}
