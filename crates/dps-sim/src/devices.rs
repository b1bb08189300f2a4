//! Simulated devices are real clients (#16 item 1): `dps-device` drives them through the service's own
//! listeners — HTTPS, MQTT, AMQP, MQTT and AMQP over WebSockets; TPM devices through [`crate::tpm`] — never through an in-process shortcut, so what a scenario shows is what a device
//! sees on the wire.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_device::amqp::AmqpSession;
use dps_device::carrier::Carrier;
use dps_device::flow::Flow;
use dps_device::mqtt::MqttSession;
use dps_device::{Endpoint, HttpsDevice, Polling, Refused, Registration};
use dps_proto::{RegistrationOperationStatus, RegistrationStatus, Substatus};
use serde::Serialize;

use crate::scenario::Transport;

/// Where simulated devices connect: the device endpoint and the MQTT and AMQP ports.
#[derive(Clone)]
pub struct DeviceTarget {
    pub endpoint: Endpoint,
    pub mqtt_port: u16,
    pub amqp_port: u16,
}

/// How one device's registration ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub registration_id: String,
    pub transport: String,
    /// The operation's final status; `None` when the service refused the request.
    pub status: Option<RegistrationStatus>,
    pub assigned_hub: Option<String>,
    /// The device's id in its hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub substatus: Option<Substatus>,
    /// The DPS code of a refusal or a failed operation.
    pub error_code: Option<i64>,
    pub message: Option<String>,
    pub millis: u64,
    /// The certificate chain issued from the device's CSR (base64 DER, its certificate first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_chain: Option<Vec<String>>,
}

/// How a simulated device proves who it is.
pub enum Credential {
    /// A SAS token (symmetric key).
    Sas(String),
    /// A client certificate chain (leaf first, DER) and its PKCS#8 key.
    X509 { chain: Vec<Vec<u8>>, key: Vec<u8> },
    /// A TPM of its own ([`crate::tpm`]), enrolled by `enroll` once it exists (none: never enrolled).
    Tpm { enroll: Option<crate::tpm::Enroll> },
}

impl Credential {
    /// The TLS configuration: the service's CA trusted, and the device's certificate for X.509.
    fn tls(&self, ca_pem: &[u8]) -> anyhow::Result<rustls::ClientConfig> {
        match self {
            Credential::Sas(_) | Credential::Tpm { .. } => dps_device::tls_config(ca_pem),
            Credential::X509 { chain, key } => {
                let chain = chain.iter().map(|c| rustls::pki_types::CertificateDer::from(c.clone())).collect();
                let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.clone().into());
                Ok(dps_device::tls_builder(Arc::new(dps_device::roots(ca_pem)?))?.with_client_auth_cert(chain, key)?)
            }
        }
    }

    fn sas(&self) -> Option<String> {
        match self {
            Credential::Sas(s) => Some(s.clone()),
            Credential::X509 { .. } | Credential::Tpm { .. } => None,
        }
    }
}

/// Registers one device with a symmetric key over `transport` and polls to the end (retry-after, as the SDKs).
pub async fn register(target: &DeviceTarget, transport: Transport, id: &str, key: &str) -> Outcome {
    match dps_device::device_sas(&target.endpoint.id_scope, id, key, Duration::from_secs(3600)) {
        Ok(sas) => register_with(target, transport, id, &Credential::Sas(sas), Flow::default()).await,
        Err(e) => outcome(id, transport, Err(e), Duration::ZERO),
    }
}

/// How one registration is made: what attests the device, what the register carries (a CSR), how it polls.
pub struct Attempt<'a> {
    pub credential: &'a Credential,
    pub registration: Registration,
    pub polling: Polling,
}

impl<'a> Attempt<'a> {
    /// A plain register with `credential`, polling as the service says.
    pub fn with(credential: &'a Credential) -> Self {
        Self { credential, registration: Registration::default(), polling: Polling::RetryAfter }
    }
}

/// Registers one device with `credential` over `transport`, telling `flow` each step.
pub async fn register_with(target: &DeviceTarget, transport: Transport, id: &str, credential: &Credential, flow: Flow) -> Outcome {
    register_requesting(target, transport, id, Attempt::with(credential), flow).await
}

/// [`register_with`] as `attempt` says.
pub async fn register_requesting(target: &DeviceTarget, transport: Transport, id: &str, attempt: Attempt<'_>, flow: Flow) -> Outcome {
    let started = Instant::now();
    let answer = dial(target, transport, id, attempt, flow).await;
    outcome(id, transport, answer, started.elapsed())
}

/// Connects over `transport` with the credential's TLS, registers and polls to the end.
async fn dial(
    target: &DeviceTarget,
    transport: Transport,
    id: &str,
    attempt: Attempt<'_>,
    flow: Flow,
) -> anyhow::Result<RegistrationOperationStatus> {
    let Attempt { credential, registration, polling } = attempt;
    if let Credential::Tpm { enroll } = credential {
        return crate::tpm::provision(target, transport, id, enroll.as_ref().map(|e| |id, tpm| e(id, tpm)), flow).await;
    }
    let (tls, sas) = (credential.tls(&target.endpoint.ca_pem)?, credential.sas());
    let ep = &target.endpoint;
    match transport {
        Transport::Https => {
            let device = HttpsDevice::with_tls(ep.clone(), polling, tls)?.observed(flow).registering(registration);
            match sas {
                Some(sas) => device.provision_with_sas(id, &sas).await,
                None => device.provision_x509(id).await,
            }
        }
        Transport::Mqtt | Transport::MqttWs => {
            let carrier = carrier(transport, target.mqtt_port);
            let mut session = MqttSession::connect_registering(ep, carrier, id, Arc::new(tls), sas, flow, registration).await?;
            session.provision(id, polling).await
        }
        Transport::Amqp | Transport::AmqpWs => {
            let carrier = carrier(transport, target.amqp_port);
            let mut session = AmqpSession::connect_registering(ep, carrier, id, Arc::new(tls), sas, flow, registration).await?;
            let status = session.provision(id, polling).await;
            let _ = session.close().await;
            status
        }
    }
}

/// A WebSocket on the HTTPS port for the `…Ws` transports, else the protocol's `port`.
fn carrier(transport: Transport, port: u16) -> Carrier {
    match transport {
        Transport::MqttWs | Transport::AmqpWs => Carrier::WebSocket,
        _ => Carrier::Port(port),
    }
}

/// How a registration ended, from the device's answer.
pub(crate) fn outcome(id: &str, transport: Transport, answer: anyhow::Result<RegistrationOperationStatus>, took: Duration) -> Outcome {
    let mut o = Outcome {
        registration_id: id.to_owned(),
        transport: format!("{transport:?}").to_ascii_lowercase(),
        status: None,
        assigned_hub: None,
        device_id: None,
        substatus: None,
        error_code: None,
        message: None,
        millis: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
        issued_chain: None,
    };
    match answer {
        Ok(s) => {
            o.status = Some(s.status);
            if let Some(r) = s.registration_state {
                (o.assigned_hub, o.device_id, o.substatus) = (r.assigned_hub, r.device_id, r.substatus);
                (o.error_code, o.message) = (r.error_code, r.error_message);
                o.issued_chain = r.issued_certificate_chain;
            }
        }
        Err(e) => {
            let refused = e.chain().find_map(|c| c.downcast_ref::<Refused>()).cloned();
            o.error_code = refused.as_ref().map(|r| r.code);
            o.message = Some(refused.map_or_else(|| format!("{e:#}"), |r| r.message));
        }
    }
    o
}
