//! What the devices are (attestation: a symmetric-key group, individual symmetric-key enrollments, an X.509 CA
//! group) and how one of them registers (transport), against the service or the ceiling.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use dps_device::{Endpoint, HttpsDevice, Polling};
use dps_proto::{BulkEnrollmentOperationResult, EnrollmentGroup, RegistrationOperationStatus, RegistrationStatus};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::client::{seg, Client};
use crate::commands::import;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// HTTPS, one pool of kept-alive connections shared by all devices.
    HttpsKeepAlive,
    /// HTTPS, a new TLS connection per device (no session resumption).
    HttpsNewConnection,
    /// MQTT, one TLS connection per device.
    Mqtt,
    /// AMQP, one TLS connection per device (SASL PLAIN, or none for X.509).
    Amqp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attestation {
    /// One symmetric-key enrollment group; device keys derived from its key (§4.2).
    Group,
    /// One individual symmetric-key enrollment per device, imported with the service API's bulk operation.
    Individual,
    /// One X.509 enrollment group on a CA made for the run; a leaf certificate (CN = registration id) per device.
    X509,
}

/// Enrollments imported before the load: how many, how long, how fast.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Import {
    pub enrollments: usize,
    pub batch: usize,
    /// Bulk operations in flight.
    pub parallel: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub groups: usize,
}

/// The credentials of the devices of one run.
enum Credentials {
    Group { key: String },
    Individual { master: String, pool: u64, stride: u64 },
    X509 { leaves: Vec<Arc<rustls::ClientConfig>> },
}

/// The devices of one run: names, credentials, what they set up in the service and how they connect.
pub struct Workload {
    pub transport: Transport,
    polling: Polling,
    prefix: String,
    credentials: Credentials,
    /// TLS for symmetric-key devices: no session resumption, so each new connection is a full handshake.
    plain_tls: Arc<rustls::ClientConfig>,
    cleanup: Vec<String>,
    pub import: Option<Import>,
}

/// A device's key for an individual enrollment of the run (derived from the run's secret, so nothing is kept).
fn individual_key(master: &str, id: &str) -> Result<String> {
    dps_crypto::derive_device_key(master, id).map_err(|e| anyhow::anyhow!("{e}"))
}

fn individual_id(prefix: &str, n: u64) -> String {
    format!("{prefix}-i{n:07}")
}

pub struct Setup<'a> {
    pub client: &'a Client,
    pub attestation: Attestation,
    pub transport: Transport,
    pub ca_pem: &'a [u8],
    /// Devices that register (the pool the load cycles over for individual and X.509).
    pub devices: u64,
    /// Individual enrollments to import (≥ devices).
    pub enrollments: u64,
    /// Extra symmetric-key groups to create (the "+ 100 groups" of the latency target).
    pub extra_groups: usize,
    pub batch: usize,
    /// Bulk operations in flight while importing.
    pub parallel: usize,
    pub poll: Poll,
}

/// How devices wait between polls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Poll {
    /// Poll again as soon as an answer arrives: the load measures the service, not the wait.
    Immediate,
    /// Wait the `retry-after` the service gives, as the SDKs do: a registration takes seconds, the service sees
    /// one register and about one poll per device (soak and overload runs: many devices waiting, few requests).
    /// A closed loop starts its devices spread over 2 s and a refused device waits 2 s before the next starts.
    RetryAfter,
}

impl Poll {
    fn polling(self) -> Polling {
        match self {
            Poll::Immediate => Polling::Every(Duration::ZERO),
            Poll::RetryAfter => Polling::RetryAfter,
        }
    }
}

impl Workload {
    /// Creates what the devices need in the service and returns the workload.
    pub async fn prepare(s: Setup<'_>) -> Result<Self> {
        if s.attestation == Attestation::X509 && s.transport == Transport::HttpsKeepAlive {
            bail!("X.509 devices are identified by their TLS connection: use --transport https-new-connection, mqtt or amqp");
        }
        let prefix = format!("bench-{}", std::process::id());
        let roots = Arc::new(dps_device::roots(s.ca_pem)?);
        let mut plain = dps_device::tls_builder(Arc::clone(&roots))?.with_no_client_auth();
        plain.resumption = rustls::client::Resumption::disabled();
        let mut cleanup = Vec::new();
        let mut import = None;
        let t = Instant::now();
        let groups = create_extra_groups(s.client, &prefix, s.extra_groups, s.batch).await?;
        cleanup.extend(groups);
        let credentials = match s.attestation {
            Attestation::Group => {
                let id = format!("{prefix}-group");
                let g: EnrollmentGroup = s
                    .client
                    .call(
                        Method::PUT,
                        &format!("/enrollmentGroups/{}", seg(&id)),
                        Some(&serde_json::json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } })),
                        &[],
                    )
                    .await?;
                cleanup.push(id);
                Credentials::Group { key: g.attestation.symmetric_key.and_then(|k| k.primary_key).context("the group has no key")? }
            }
            Attestation::Individual => {
                let master = dps_crypto::generate_key();
                let total = s.enrollments.max(s.devices);
                let mut docs = Vec::with_capacity(usize::try_from(total).unwrap_or_default());
                for i in 0..total {
                    let id = individual_id(&prefix, i);
                    let key = individual_key(&master, &id)?;
                    docs.push(serde_json::to_string(&serde_json::json!({
                        "registrationId": id,
                        "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": key, "secondaryKey": key } }
                    }))?);
                }
                // The same path as `dps enrollment import`: bulk operations of --import-batch, a few in flight.
                let t = Instant::now();
                let mut summary = import::Summary::new(import::ImportMode::Create, s.batch, s.parallel);
                import::send::<import::Enrollments>(
                    s.client,
                    import::ImportMode::Create,
                    docs.iter().map(String::as_str),
                    s.batch,
                    s.parallel,
                    &mut summary,
                )
                .await?;
                if let Some(f) = summary.failures.first() {
                    bail!("import: {} error(s), the first: {} ({})", summary.failed, f.message, f.error_code);
                }
                let secs = t.elapsed().as_secs_f64();
                import = Some(Import {
                    enrollments: total as usize,
                    batch: s.batch,
                    parallel: s.parallel,
                    seconds: secs,
                    per_second: total as f64 / secs.max(1e-9),
                    groups: s.extra_groups,
                });
                Credentials::Individual { master, pool: s.devices.max(1), stride: (total / s.devices.max(1)).max(1) }
            }
            Attestation::X509 => {
                let (ca_params, ca_key, ca_pem, ca_der) = make_ca(&prefix)?;
                let id = format!("{prefix}-x509");
                s.client
                    .send(
                        Method::PUT,
                        &format!("/enrollmentGroups/{}", seg(&id)),
                        Some(&serde_json::json!({ "enrollmentGroupId": id, "attestation": { "type": "x509", "x509": {
                            "signingCertificates": { "primary": { "certificate": ca_pem } } } } })),
                        &[],
                    )
                    .await?;
                cleanup.push(id);
                let issuer = Issuer::from_params(&ca_params, &ca_key);
                let mut leaves = Vec::with_capacity(s.devices as usize);
                for i in 0..s.devices.max(1) {
                    let key = KeyPair::generate()?;
                    let mut p = CertificateParams::new(Vec::<String>::new())?;
                    p.distinguished_name.push(DnType::CommonName, x509_id(&prefix, i));
                    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
                    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
                    let cert = p.signed_by(&key, &issuer)?;
                    let chain = vec![CertificateDer::from(cert.der().to_vec()), CertificateDer::from(ca_der.clone())];
                    let pk = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
                    let mut cfg = dps_device::tls_builder(Arc::clone(&roots))?.with_client_auth_cert(chain, pk)?;
                    cfg.resumption = rustls::client::Resumption::disabled();
                    leaves.push(Arc::new(cfg));
                }
                Credentials::X509 { leaves }
            }
        };
        tracing::debug!(seconds = t.elapsed().as_secs_f64(), "set up");
        Ok(Self { transport: s.transport, polling: s.poll.polling(), prefix, credentials, plain_tls: Arc::new(plain), cleanup, import })
    }

    /// Removes the groups this run created (individual enrollments stay: a spawned service's directory goes).
    pub async fn cleanup(&self, client: &Client) {
        for id in &self.cleanup {
            let _ = client.send::<()>(Method::DELETE, &format!("/enrollmentGroups/{}", seg(id)), None, &[]).await;
        }
    }

    /// The registration id of the `n`-th registration (individual and X.509 cycle over their pool).
    fn device(&self, n: u64) -> (String, Option<String>, Arc<rustls::ClientConfig>) {
        match &self.credentials {
            Credentials::Group { key } => {
                let id = format!("{}-g{n:07}", self.prefix);
                let k = dps_crypto::derive_device_key(key, &id).ok();
                (id, k, Arc::clone(&self.plain_tls))
            }
            Credentials::Individual { master, pool, stride } => {
                let id = individual_id(&self.prefix, (n % pool) * stride);
                let k = individual_key(master, &id).ok();
                (id, k, Arc::clone(&self.plain_tls))
            }
            Credentials::X509 { leaves } => {
                let i = n % leaves.len().max(1) as u64;
                let cfg = leaves.get(i as usize).map_or_else(|| Arc::clone(&self.plain_tls), Arc::clone);
                (x509_id(&self.prefix, i), None, cfg)
            }
        }
    }

    /// A client of `endpoint` for this workload: the shared keep-alive pools (one per source address, or one
    /// from the system's choice when `sources` is empty), or what each device builds.
    pub fn client(self: &Arc<Self>, endpoint: Endpoint, mqtt_port: u16, amqp_port: u16, sources: &[IpAddr]) -> Result<Devices> {
        let pool = |source| HttpsDevice::with_tls_from(endpoint.clone(), self.polling, (*self.plain_tls).clone(), source);
        let shared = match sources {
            [] => vec![pool(None)?],
            _ => sources.iter().map(|a| pool(Some(*a))).collect::<Result<_>>()?,
        };
        Ok(Devices { workload: Arc::clone(self), endpoint, shared, mqtt_port, amqp_port })
    }

    /// Connects and subscribes `n` MQTT devices (100 at a time) and returns them held open, with the error that
    /// stopped it early, if any (the open-files limit, the service's connection cap).
    pub async fn hold_idle(&self, endpoint: &Endpoint, port: u16, n: usize) -> (Vec<dps_device::mqtt::MqttSession>, Option<anyhow::Error>) {
        let mut held = Vec::with_capacity(n);
        let mut i = 0u64;
        while held.len() < n {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..(n - held.len()).min(100) {
                let (id, key, tls) = self.device(i);
                i += 1;
                let ep = endpoint.clone();
                batch.spawn(async move {
                    let sas = dps_device::device_sas(&ep.id_scope, &id, &key.unwrap_or_default(), Duration::from_secs(3600))?;
                    dps_device::mqtt::MqttSession::connect_with(&ep, port, &id, tls, Some(sas)).await
                });
            }
            let mut error = None;
            while let Some(r) = batch.join_next().await {
                match r.map_err(anyhow::Error::from).and_then(|r| r) {
                    Ok(s) => held.push(s),
                    Err(e) => error = Some(e),
                }
            }
            if error.is_some() {
                return (held, error);
            }
        }
        (held, None)
    }
}

/// The devices of a workload against one endpoint (the service or the ceiling).
pub struct Devices {
    workload: Arc<Workload>,
    endpoint: Endpoint,
    /// Keep-alive pools; device `n` uses pool `n % len` (never empty).
    shared: Vec<HttpsDevice>,
    mqtt_port: u16,
    amqp_port: u16,
}

impl Devices {
    /// Registers the `n`-th device and polls to the end; an error unless it ends `assigned`.
    pub async fn register(&self, n: u64) -> Result<RegistrationOperationStatus> {
        let (id, key, tls) = self.workload.device(n);
        let sas = match &key {
            Some(k) => Some(dps_device::device_sas(&self.endpoint.id_scope, &id, k, Duration::from_secs(3600))?),
            None => None,
        };
        let status = match self.workload.transport {
            Transport::HttpsKeepAlive => {
                let shared = self.shared.get(n as usize % self.shared.len().max(1)).context("no keep-alive pool")?;
                match &key {
                    Some(k) => shared.provision_symmetric_key(&id, k).await?,
                    None => shared.provision_x509(&id).await?,
                }
            }
            Transport::HttpsNewConnection => {
                let device = HttpsDevice::with_tls(self.endpoint.clone(), self.workload.polling, (*tls).clone())?;
                match &key {
                    Some(k) => device.provision_symmetric_key(&id, k).await?,
                    None => device.provision_x509(&id).await?,
                }
            }
            Transport::Mqtt => {
                let mut s = dps_device::mqtt::MqttSession::connect_with(&self.endpoint, self.mqtt_port, &id, tls, sas).await?;
                s.provision(&id, self.workload.polling).await?
            }
            Transport::Amqp => {
                let mut s = dps_device::amqp::AmqpSession::connect_with(&self.endpoint, self.amqp_port, &id, tls, sas).await?;
                let r = s.provision(&id, self.workload.polling).await;
                let _ = s.close().await;
                r?
            }
        };
        if status.status != RegistrationStatus::Assigned {
            let code = status.registration_state.as_ref().and_then(|s| s.error_code).unwrap_or(0);
            bail!("registration {:?} (error {code})", status.status);
        }
        Ok(status)
    }
}

fn x509_id(prefix: &str, n: u64) -> String {
    format!("{prefix}-x{n:07}")
}

fn make_ca(prefix: &str) -> Result<(CertificateParams, KeyPair, String, Vec<u8>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, format!("{prefix} CA"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let cert = params.self_signed(&key)?;
    Ok((params, key, cert.pem(), cert.der().to_vec()))
}

async fn bulk(client: &Client, path: &str, body: serde_json::Value) -> Result<()> {
    let r: BulkEnrollmentOperationResult = client.call(Method::POST, path, Some(&body), &[]).await?;
    if let Some(e) = r.errors.first() {
        bail!("bulk operation: {} error(s), the first: {} ({})", r.errors.len(), e.error_status, e.error_code);
    }
    Ok(())
}

/// Creates `n` symmetric-key groups that no device uses (they are in the list attestation walks).
async fn create_extra_groups(client: &Client, prefix: &str, n: usize, batch: usize) -> Result<Vec<String>> {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-extra{i:04}")).collect();
    for chunk in ids.chunks(batch.max(1)) {
        let groups: Vec<_> =
            chunk.iter().map(|id| serde_json::json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } })).collect();
        bulk(client, "/enrollmentGroups", serde_json::json!({ "mode": "create", "enrollmentGroups": groups })).await?;
    }
    Ok(ids)
}
