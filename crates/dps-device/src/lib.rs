//! The device side of the provisioning protocol, for DPS Console's own simulator, load generator and
//! tests (the interop suites use the official SDKs instead): HTTPS (§1.10), MQTT ([`mqtt`], §2.8) and AMQP
//! ([`amqp`], §3) with symmetric keys; with the `tpm` feature, a TPM 2.0 device for TPM attestation ([`tpm`],
//! §4.4) on a thread of its own ([`tpm_worker`]), registering over HTTPS ([`tpm_https`]) or AMQP with the `TPM`
//! SASL mechanism ([`tpm_amqp`], §3.3), and a private software TPM for tests ([`swtpm`]; also alone with the
//! `swtpm-test` feature).

pub mod amqp;
pub mod carrier;
pub mod flow;
pub mod mqtt;
#[cfg(feature = "swtpm-test")]
pub mod swtpm;
#[cfg(feature = "tpm")]
pub mod tpm;
#[cfg(feature = "tpm")]
pub mod tpm_amqp;
#[cfg(feature = "tpm")]
pub mod tpm_https;
#[cfg(feature = "tpm")]
pub mod tpm_worker;
pub mod ws;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use dps_proto::simulation::FlowKind;
use dps_proto::{ProvisioningServiceErrorDetails, RegistrationOperationStatus};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};

/// The service refused a request (an HTTP status ≥ 300, an MQTT `res/{status}` topic): its DPS code and message.
/// Device calls return it inside their `anyhow::Error`; `downcast_ref::<Refused>()` reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct Refused {
    pub code: i64,
    pub message: String,
}

impl Refused {
    /// The refusal of an answer with `status` and the error body `bytes` (a body that is not one: the status).
    pub fn of(status: u16, bytes: &[u8]) -> Self {
        Self::from_body(bytes).unwrap_or_else(|| Self { code: i64::from(status) * 1000, message: format!("HTTP {status}") })
    }

    /// The refusal a DPS error body states (an AMQP rejection's description carries one), if it is one.
    pub fn from_body(bytes: &[u8]) -> Option<Self> {
        let e = serde_json::from_slice::<ProvisioningServiceErrorDetails>(bytes).ok()?;
        Some(Self { code: e.error_code, message: e.message })
    }
}

/// Where the service is and whom to trust.
#[derive(Clone)]
pub struct Endpoint {
    /// `host[:port]`.
    pub host: String,
    pub id_scope: String,
    pub ca_pem: Vec<u8>,
}

/// The device api-version this crate sends (the C SDK's, §1.2); a register with a CSR sends
/// [`dps_proto::credentials::CSR_API_VERSION`], the first that knows `csr`.
const API_VERSION: &str = "2021-06-01";

/// What a register carries besides the registration id: a certificate signing request (base64 DER PKCS#10,
/// CN = the registration id) asks for a certificate (§1.4 `csr`; `issuedCertificateChain` in the answer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    pub csr: Option<String>,
}

impl Registration {
    /// The api-version the request must name.
    pub fn api_version(&self) -> &'static str {
        if self.csr.is_some() {
            dps_proto::credentials::CSR_API_VERSION
        } else {
            API_VERSION
        }
    }

    /// The register body.
    pub fn body(&self, registration_id: &str) -> serde_json::Value {
        let body = dps_proto::DeviceRegistration {
            registration_id: Some(registration_id.to_owned()),
            csr: self.csr.clone(),
            ..Default::default()
        };
        serde_json::to_value(body).unwrap_or_default()
    }
}
/// Polls before giving up on an operation.
const MAX_POLLS: usize = 120;

/// How to poll.
#[derive(Debug, Clone, Copy)]
pub enum Polling {
    /// Wait what the service says (`retry-after`), as the SDKs do.
    RetryAfter,
    /// Poll at a fixed interval (load tests measure the service, not the wait); zero polls again at once.
    Every(Duration),
    /// A misbehaving device (the simulator's `throttled` fault): ignores retry-after and polls back to back
    /// [`STORM_POLLS`] times, even after the answer — more than a limits profile allows one device.
    Storm,
}

/// The polls of [`Polling::Storm`].
pub const STORM_POLLS: usize = 8;

impl Polling {
    /// Waits before the next poll: `retry_after` as the service said, the fixed interval, or not at all.
    pub async fn wait(self, retry_after: Duration) {
        let d = match self {
            Polling::RetryAfter => retry_after,
            Polling::Every(d) => d,
            Polling::Storm => Duration::ZERO,
        };
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }

    /// Whether to poll again after `polls` polls since `started`: [`MAX_POLLS`] polls, or — polling without a
    /// wait — a minute.
    pub fn again(self, polls: usize, started: std::time::Instant) -> bool {
        match self {
            Polling::Every(d) if d.is_zero() => started.elapsed() < Duration::from_secs(60),
            Polling::Storm => polls <= STORM_POLLS,
            _ => polls < MAX_POLLS,
        }
    }

    /// Whether the device stops at `status`: a terminal one, except in a storm, which ends by its count
    /// ([`Self::after_polls`]).
    pub fn ends_at(self, status: &RegistrationOperationStatus) -> bool {
        status.status.is_terminal() && !matches!(self, Polling::Storm)
    }

    /// What the device ends with when its polls ran out: a storm's last answer; else the operation did not
    /// finish.
    pub fn after_polls(self, registration_id: &str, last: RegistrationOperationStatus) -> Result<RegistrationOperationStatus> {
        match self {
            Polling::Storm => Ok(last),
            _ => bail!("{registration_id}: the operation did not finish"),
        }
    }
}

/// One HTTPS connection pool (keep-alive), or a new connection per client when built per device.
#[derive(Clone)]
pub struct HttpsDevice {
    http: reqwest::Client,
    endpoint: Endpoint,
    polling: Polling,
    flow: flow::Flow,
    /// The flow's TLS step: whether the TLS configuration presents a client certificate.
    tls_title: String,
    registration: Registration,
}

pub fn tls_config(ca_pem: &[u8]) -> Result<rustls::ClientConfig> {
    Ok(tls_builder(Arc::new(roots(ca_pem)?))?.with_no_client_auth())
}

/// The trust anchors of `ca_pem` (parsed once, shared by many client configurations).
pub fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(c.context("CA PEM")?)?;
    }
    Ok(roots)
}

/// A client configuration trusting `roots`, still to be given its client authentication (none, or an X.509
/// device's certificate chain and key).
pub fn tls_builder(
    roots: Arc<rustls::RootCertStore>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots))
}

/// A device SAS token, signed as the Node SDK does (§4.1).
pub fn device_sas(id_scope: &str, registration_id: &str, key_b64: &str, lifetime: Duration) -> Result<String> {
    #[allow(clippy::disallowed_methods)] // a device signs with its own wall clock
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    device_sas_expiring(id_scope, registration_id, key_b64, (now + lifetime).as_secs())
}

/// A device SAS token that expires at `se` (seconds since the epoch; a past one makes an expired token).
pub fn device_sas_expiring(id_scope: &str, registration_id: &str, key_b64: &str, se: u64) -> Result<String> {
    let key = dps_crypto::decode_key(key_b64).map_err(|e| anyhow!("device key: {e}"))?;
    let sr = utf8_percent_encode(&format!("{id_scope}/registrations/{registration_id}"), NON_ALPHANUMERIC).to_string();
    let sig = utf8_percent_encode(&dps_crypto::sign(&key, &sr, se), NON_ALPHANUMERIC).to_string();
    Ok(format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=registration"))
}

impl HttpsDevice {
    pub fn new(endpoint: Endpoint, polling: Polling) -> Result<Self> {
        let tls = tls_config(&endpoint.ca_pem)?;
        Self::with_tls(endpoint, polling, tls)
    }

    /// With a TLS configuration of the caller's (an X.509 device's certificate, resumption off).
    pub fn with_tls(endpoint: Endpoint, polling: Polling, tls: rustls::ClientConfig) -> Result<Self> {
        Self::with_tls_from(endpoint, polling, tls, None)
    }

    /// [`Self::with_tls`] with the connections' source address chosen (a load generator spreading its
    /// connections over several loopback addresses, as many devices would come from many).
    pub fn with_tls_from(
        endpoint: Endpoint,
        polling: Polling,
        tls: rustls::ClientConfig,
        source: Option<std::net::IpAddr>,
    ) -> Result<Self> {
        let tls_title = flow::tls_title(&tls);
        let http = reqwest::Client::builder().use_preconfigured_tls(tls).local_address(source).timeout(Duration::from_secs(30)).build()?;
        Ok(Self { http, endpoint, polling, flow: flow::Flow::default(), tls_title, registration: Registration::default() })
    }

    /// This device, registering with `registration` (a CSR).
    pub fn registering(mut self, registration: Registration) -> Self {
        self.registration = registration;
        self
    }

    /// This device, telling `flow` each step it takes.
    pub fn observed(mut self, flow: flow::Flow) -> Self {
        self.flow = flow;
        self
    }

    /// Registers with a symmetric key and polls to the end (§1.10).
    pub async fn provision_symmetric_key(&self, registration_id: &str, key_b64: &str) -> Result<RegistrationOperationStatus> {
        let sas = device_sas(&self.endpoint.id_scope, registration_id, key_b64, Duration::from_secs(3600))?;
        self.provision(registration_id, Some(&sas)).await
    }

    /// Registers with the SAS token `sas` (the caller's: an expired one, say) and polls to the end.
    pub async fn provision_with_sas(&self, registration_id: &str, sas: &str) -> Result<RegistrationOperationStatus> {
        self.provision(registration_id, Some(sas)).await
    }

    /// Registers with the client certificate of the TLS configuration (X.509, no Authorization) and polls to the
    /// end (§1.10, §4.3).
    pub async fn provision_x509(&self, registration_id: &str) -> Result<RegistrationOperationStatus> {
        self.provision(registration_id, None).await
    }

    async fn provision(&self, registration_id: &str, authorization: Option<&str>) -> Result<RegistrationOperationStatus> {
        let answer = self.provision_flow(registration_id, authorization).await;
        if let Err(e) = &answer {
            self.flow.failed(e);
        }
        answer
    }

    async fn provision_flow(&self, registration_id: &str, authorization: Option<&str>) -> Result<RegistrationOperationStatus> {
        let base = self.registration_url(registration_id);
        let body = self.registration.body(registration_id);
        self.connect_steps().await;
        let url = format!("{base}/register?api-version={}", self.registration.api_version());
        self.flow.send(FlowKind::Register, format!("PUT {}", path_of(&url)), Some(request_shown(authorization, &body.to_string()))).await;
        let mut rb = self.http.put(url).json(&body);
        if let Some(a) = authorization {
            rb = rb.header("authorization", a);
        }
        let r = rb.send().await?;
        self.poll(registration_id, &base, authorization, self.read(r).await?).await
    }

    /// The connection and TLS steps (reqwest makes both within the first request).
    pub(crate) async fn connect_steps(&self) {
        if !self.flow.watched() {
            return;
        }
        self.flow.local(FlowKind::Connect, format!("TCP to {} (HTTPS)", self.endpoint.host)).await;
        self.flow.local(FlowKind::Tls, self.tls_title.clone()).await;
    }

    /// `https://{host}/{idScope}/registrations/{registrationId}` (the id percent-encoded).
    pub(crate) fn registration_url(&self, registration_id: &str) -> String {
        format!(
            "https://{}/{}/registrations/{}",
            self.endpoint.host,
            self.endpoint.id_scope,
            utf8_percent_encode(registration_id, NON_ALPHANUMERIC)
        )
    }

    /// Polls `{base}/operations/{operationId}` with `authorization` from the register answer until the operation
    /// is terminal.
    async fn poll(
        &self,
        registration_id: &str,
        base: &str,
        authorization: Option<&str>,
        (mut status, mut wait): (RegistrationOperationStatus, Duration),
    ) -> Result<RegistrationOperationStatus> {
        let (started, mut polls) = (std::time::Instant::now(), 0);
        while self.polling.again(polls, started) {
            polls += 1;
            if self.polling.ends_at(&status) {
                return Ok(status);
            }
            self.flow.local(FlowKind::Wait, format!("wait {} s", wait.as_secs())).await;
            self.polling.wait(wait).await;
            let url = format!("{base}/operations/{}?api-version={}", status.operation_id, self.registration.api_version());
            self.flow.send(FlowKind::Poll, format!("GET {}", path_of(&url)), authorization.map(|a| format!("Authorization: {a}"))).await;
            let mut rb = self.http.get(url);
            if let Some(a) = authorization {
                rb = rb.header("authorization", a);
            }
            (status, wait) = self.read(rb.send().await?).await?;
        }
        self.polling.after_polls(registration_id, status)
    }

    async fn read(&self, r: reqwest::Response) -> Result<(RegistrationOperationStatus, Duration)> {
        let code = r.status();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let bytes = r.bytes().await?;
        if !code.is_success() {
            let refused = Refused::of(code.as_u16(), &bytes);
            self.flow.received(FlowKind::Refused, format!("{} — {}", code.as_u16(), refused), Some(flow::shown(&bytes)));
            return Err(refused.into());
        }
        let status: RegistrationOperationStatus = serde_json::from_slice(&bytes).context("operation status")?;
        let (kind, title) = flow::answer_title(code.as_u16(), &status, retry_after);
        self.flow.received(kind, title, Some(flow::shown(&bytes)));
        Ok((status, retry_after.map_or(Duration::from_secs(2), Duration::from_secs)))
    }
}

/// The path and query of a URL (what a sequence diagram shows).
pub(crate) fn path_of(url: &str) -> &str {
    url.find("://").and_then(|at| url.get(at + 3..)).and_then(|rest| rest.find('/').and_then(|p| rest.get(p..))).unwrap_or(url)
}

/// A request as shown: its Authorization header (if any) and body.
pub(crate) fn request_shown(authorization: Option<&str>, body: &str) -> String {
    match authorization {
        Some(a) => format!("Authorization: {a}\n\n{}", flow::shown(body.as_bytes())),
        None => flow::shown(body.as_bytes()),
    }
}
