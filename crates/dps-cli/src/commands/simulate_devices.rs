//! `dps simulate devices` (#16 item 7): the Simulate page's devices from a terminal. The service starts them
//! (`POST /simulations`: real clients through its own listeners, as the console's are), the CLI follows the run
//! with a progress bar and prints a summary — devices per state and per hub, and each device that did not get a
//! hub with its DPS code and message; `--clean-up` then removes what the run left. Exit status 1 when a device
//! given no fault got no hub.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dps_proto::simulation::{Fault, SimCa, SimState, SimTransport, Simulation, SimulationCleanUp, SimulationRequest};
use reqwest::Method;
use serde_json::Value;

use crate::client::{Client, Target};
use crate::output::{print, Output};

/// How long a run may take before the CLI stops following it (the run goes on in the service).
const FOLLOW_FOR: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// symmetricKey, x509 or tpm.
    #[arg(long, default_value = "symmetricKey")]
    attestation: String,
    /// https, mqtt, amqp, mqttWs or amqpWs (TPM: not MQTT).
    #[arg(long, default_value = "https", value_parser = wire::<SimTransport>)]
    transport: SimTransport,
    /// Devices: 1 to 1,000 (TPM: 100).
    #[arg(long, default_value_t = 5)]
    count: u32,
    /// The symmetric-key group whose keys the devices derive (default: simulated-devices, made when missing).
    #[arg(long)]
    group: Option<String>,
    /// An individual symmetric-key enrollment (one device).
    #[arg(long)]
    enrollment: Option<String>,
    /// Make the --group or --enrollment when it does not exist (symmetric key, the service's defaults).
    #[arg(long)]
    create: bool,
    /// Registration ids are PREFIX1, PREFIX2…
    #[arg(long)]
    prefix: Option<String>,
    /// What to break, as the console names it: wrongKey, otherGroupKey, unknownId, expiredToken, disabledGroup,
    /// hubDown, webhookError, webhookTimeout, throttled, untrustedCa, expiredCertificate, cnMismatch,
    /// disabledEnrollment.
    #[arg(long, default_value = "none", value_parser = wire::<Fault>)]
    fault: Fault,
    /// Give the fault to the first K devices only; the others are healthy (default: every device).
    #[arg(long, value_name = "K", requires = "fault")]
    faulty: Option<u32>,
    /// Each device sends a CSR and receives a certificate (the credential policy simulated-devices).
    #[arg(long)]
    request_certificate: bool,
    /// X.509: the CA that issues the devices' certificates: run (a root made for the run) or intermediate.
    #[arg(long, default_value = "run")]
    x509_ca: String,
    /// X.509: your own CA's certificate chain (PEM, the issuing CA first), with --ca-key.
    #[arg(long, requires = "ca_key")]
    ca_certificate: Option<PathBuf>,
    /// X.509: your own CA's private key (PEM), used for the run only.
    #[arg(long, requires = "ca_certificate")]
    ca_key: Option<PathBuf>,
    /// Afterwards, remove what the run left: its registration records, its devices' identities in their hubs and
    /// the enrollments made for its TPM devices (default: keep them, to look at in the console).
    #[arg(long)]
    clean_up: bool,
}

/// A wire name (`mqttWs`, `wrongKey`) read as the wire type.
fn wire<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, String> {
    serde_json::from_value(Value::String(s.to_owned())).map_err(|_| format!("'{s}' is not one of the names the console uses"))
}

impl DevicesArgs {
    fn request(&self) -> Result<SimulationRequest> {
        let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()));
        let x509_ca = match (&self.ca_certificate, &self.ca_key, self.x509_ca.as_str()) {
            (Some(c), Some(k), _) => SimCa::Uploaded { certificate: read(c)?, key: read(k)? },
            (_, _, "intermediate") => SimCa::Intermediate,
            (_, _, "run") => SimCa::Run,
            (_, _, other) => bail!("--x509-ca is run or intermediate (or give --ca-certificate and --ca-key), not {other}"),
        };
        Ok(SimulationRequest {
            attestation: self.attestation.clone(),
            transport: self.transport,
            count: self.count,
            group: self.group.clone(),
            enrollment: self.enrollment.clone(),
            create: self.create,
            prefix: self.prefix.clone(),
            fault: self.fault,
            faulty: self.faulty,
            step_through: false,
            request_certificate: self.request_certificate,
            x509_ca,
        })
    }
}

pub async fn run(a: &DevicesArgs, target: &Target, out: Output) -> Result<()> {
    let client = Client::new(target)?;
    let request = a.request()?;
    let started: Simulation = client.call(Method::POST, "/simulations", Some(&request), &[]).await?;
    eprintln!("{}: {} device(s) of {} over {}", started.id, started.devices.len(), started.target, serde_json::to_value(a.transport)?);
    let bar = super::simulate::new_bar(u64::from(a.count));
    let path = format!("/simulations/{}", started.id);
    let deadline = std::time::Instant::now() + FOLLOW_FOR;
    let run = loop {
        let run: Simulation = client.call::<(), _>(Method::GET, &path, None, &[]).await?;
        let done = run.devices.iter().filter(|d| d.state.is_final()).count();
        bar.set_position(done as u64);
        if done == run.devices.len() {
            break run;
        }
        if std::time::Instant::now() > deadline {
            bar.finish_and_clear();
            bail!("{}: still running after {} min; follow it in the console", run.id, FOLLOW_FOR.as_secs() / 60);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    bar.finish_and_clear();
    summary(&run, out);
    if a.clean_up {
        let done: SimulationCleanUp = client.call(Method::POST, &format!("{path}/cleanUp"), Some(&serde_json::json!({})), &[]).await?;
        eprintln!("{}", dps_console_model::simulation::clean_up_summary(&run.id, &done));
    }
    let unplaced = run.devices.iter().filter(|d| d.fault.is_none() && d.state != SimState::Assigned).count();
    if unplaced > 0 {
        bail!("{unplaced} device(s) without a fault got no hub");
    }
    Ok(())
}

/// Devices per state and per hub, then each device that got no hub with its code and message.
fn summary(run: &Simulation, out: Output) {
    let mut hubs = std::collections::BTreeMap::<String, u32>::new();
    for d in &run.devices {
        if let Some(h) = &d.assigned_hub {
            *hubs.entry(h.clone()).or_default() += 1;
        }
    }
    let hubs: Vec<String> = hubs.iter().map(|(h, n)| format!("{h}: {n}")).collect();
    let counts: Vec<String> = run.counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    eprintln!("{} — {}{}", run.id, counts.join(", "), if hubs.is_empty() { String::new() } else { format!(" ({})", hubs.join(", ")) });
    let rows: Vec<Value> = run
        .devices
        .iter()
        .map(|d| {
            serde_json::json!({
                "registrationId": d.registration_id,
                "state": d.state,
                "fault": (!d.fault.is_none()).then_some(d.fault),
                "assignedHub": d.assigned_hub,
                "errorCode": d.error_code,
                "message": d.message,
                "millis": d.millis,
            })
        })
        .collect();
    print(
        out,
        &rows,
        &[
            ("DEVICE", "/registrationId"),
            ("STATE", "/state"),
            ("FAULT", "/fault"),
            ("HUB", "/assignedHub"),
            ("CODE", "/errorCode"),
            ("MESSAGE", "/message"),
        ],
    );
}
