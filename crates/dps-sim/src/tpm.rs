//! TPM simulated devices (#16 item 1): each device has a TPM of its own — a private software TPM (swtpm, through
//! tss-esapi, the same device code as `dps device register --attestation tpm`), started when the device starts
//! and stopped when it ends. The operator's part comes first, as on a factory floor: the TPM's endorsement key
//! is read and enrolled (an individual enrollment, by the caller's `enroll`); then the device registers over
//! HTTPS or AMQP (on its port or a WebSocket) and answers the service's challenge inside its TPM. DPS has no TPM
//! attestation over MQTT. At most 16 software TPMs run at once in the process, whatever the runs. Needs the `tpm`
//! feature (libtss2) and the `swtpm` program.

use std::sync::Arc;

use anyhow::Result;
use dps_device::flow::Flow;
use dps_proto::{RegistrationOperationStatus, TpmAttestation};
use futures_util::future::BoxFuture;

use crate::devices::DeviceTarget;
use crate::scenario::Transport;

/// Software TPMs running at once, over every run and scenario of the process (each is a process of its own).
#[cfg(feature = "tpm")]
const AT_ONCE: usize = 16;
#[cfg(feature = "tpm")]
static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(AT_ONCE);

/// The operator enrolling a device's TPM (a live run's devices share one): registration id and the TPM's keys, as
/// an individual enrollment takes them.
pub type Enroll = Arc<dyn Fn(String, TpmAttestation) -> BoxFuture<'static, Result<()>> + Send + Sync>;

/// Whether TPM devices can be simulated here: the build has TPM support and `swtpm` runs (`swtpm --version`,
/// asked until it first answers — installing swtpm needs no restart). The error says what to install.
pub fn available() -> Result<(), String> {
    static FOUND: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if !cfg!(feature = "tpm") {
        return Err("this build of DPS Console has no TPM support (it is built with the `tpm` feature and libtss2-dev)".into());
    }
    if FOUND.get().is_some() {
        return Ok(());
    }
    match std::process::Command::new("swtpm").arg("--version").output() {
        Ok(o) if o.status.success() => {
            let _ = FOUND.set(());
            Ok(())
        }
        _ => Err("TPM devices need a software TPM: install swtpm (Debian: apt-get install swtpm swtpm-tools)".into()),
    }
}

/// Starts a TPM, enrolls it with `enroll` (none: nobody enrolls it), and registers as `id` over `transport`,
/// telling `flow` each step.
#[cfg(feature = "tpm")]
pub async fn provision<F, Fut>(
    target: &DeviceTarget,
    transport: Transport,
    id: &str,
    enroll: Option<F>,
    flow: Flow,
) -> Result<RegistrationOperationStatus>
where
    F: FnOnce(String, TpmAttestation) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    use anyhow::Context;
    use dps_device::carrier::Carrier;
    use dps_device::{HttpsDevice, Polling};
    use dps_proto::simulation::FlowKind;

    // Held until the device is done: its TPM runs as long as it registers.
    let _turn = RUNNING.acquire().await.context("the software TPMs' semaphore")?;
    let set_up = async {
        flow.local(FlowKind::Setup, "a software TPM started (swtpm): endorsement key and storage root key created").await;
        let swtpm = tokio::task::spawn_blocking(dps_device::swtpm::Swtpm::start).await.context("the swtpm start")??;
        let tpm = dps_device::tpm_worker::TpmWorker::open(Some(swtpm.tcti())).await?;
        match enroll {
            Some(enroll) => {
                flow.local(FlowKind::Setup, format!("the operator enrolls the TPM's endorsement key: individual enrollment {id}")).await;
                enroll(id.to_owned(), tpm.attestation()).await.context("enrolling the TPM")?;
            }
            None => flow.local(FlowKind::Setup, "nobody enrolls this TPM's endorsement key").await,
        }
        anyhow::Ok((swtpm, tpm))
    };
    let (_swtpm, tpm) = set_up.await.inspect_err(|e| flow.failed(e))?;
    let ep = &target.endpoint;
    match transport {
        Transport::Https => HttpsDevice::new(ep.clone(), Polling::RetryAfter)?.observed(flow).provision_tpm(&tpm, Some(id)).await,
        Transport::Amqp => {
            dps_device::tpm_amqp::provision(ep, Carrier::Port(target.amqp_port), &tpm, Some(id), Polling::RetryAfter, flow).await
        }
        Transport::AmqpWs => dps_device::tpm_amqp::provision(ep, Carrier::WebSocket, &tpm, Some(id), Polling::RetryAfter, flow).await,
        Transport::Mqtt | Transport::MqttWs => anyhow::bail!("DPS has no TPM attestation over MQTT: use HTTPS or AMQP"),
    }
}

#[cfg(not(feature = "tpm"))]
pub async fn provision<F, Fut>(_: &DeviceTarget, _: Transport, _: &str, _: Option<F>, _: Flow) -> Result<RegistrationOperationStatus>
where
    F: FnOnce(String, TpmAttestation) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    Err(anyhow::anyhow!("{}", available().err().unwrap_or_default()))
}
