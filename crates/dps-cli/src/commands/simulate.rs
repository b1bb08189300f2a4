//! `dps simulate`: scenarios and simulated devices from a terminal (#16 item 7) — the same runner the console
//! uses (`dps-sim`): `list` the built-in scenarios, run one (`scenario NAME|FILE`, reset first, a progress bar
//! per step and a summary; exits non-zero when a step did not end as expected), `reset` one. Devices connect to
//! the service's listeners as any device would: the host and ports come from `GET /service/info`, the CA from
//! `--ca-file` or the local data directory.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use dps_device::Endpoint;
use dps_proto::EndpointInfo;
use dps_sim::{DeviceTarget, Event, Report, Runner, Scenario, ServiceApi};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::Value;

use crate::client::{read_endpoint, Client, Target};
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum SimulateCommand {
    /// List the built-in scenarios.
    List,
    /// Run a scenario (a built-in name or a TOML file): reset what an earlier run left, set up, run every step.
    Scenario {
        /// A built-in scenario's name (`dps simulate list`) or a scenario file.
        scenario: String,
        /// Remove what the run made afterwards (default: keep it, to look at in the console).
        #[arg(long)]
        reset_after: bool,
    },
    /// Remove everything a scenario makes: its devices' records and identities, groups, enrollments, hubs.
    Reset {
        /// A built-in scenario's name or a scenario file.
        scenario: String,
    },
    /// Start simulated devices, as the console's Simulate page does, and follow them to the end.
    Devices(super::simulate_devices::DevicesArgs),
}

/// The service API over HTTPS with the CLI's signed client.
struct Https(Client);

#[async_trait]
impl ServiceApi for Https {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| anyhow!("{method}: {e}"))?;
        let (status, bytes) = self.0.exchange(method, path, body.as_ref()).await?;
        let json = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status.as_u16(), json))
    }
}

pub async fn run(cmd: SimulateCommand, target: &Target, out: Output) -> Result<()> {
    match cmd {
        SimulateCommand::List => {
            let rows: Vec<Value> = dps_sim::scenario::BUILT_IN
                .iter()
                .map(|(_, text)| {
                    Scenario::parse(text).map(|s| serde_json::json!({ "name": s.name, "title": s.title, "summary": s.summary }))
                })
                .collect::<Result<_>>()?;
            print(out, &rows, &[("NAME", "/name"), ("TITLE", "/title")]);
            Ok(())
        }
        SimulateCommand::Devices(a) => super::simulate_devices::run(&a, target, out).await,
        SimulateCommand::Scenario { scenario, reset_after } => run_scenario(&load(&scenario)?, target, reset_after, out).await,
        SimulateCommand::Reset { scenario } => {
            let s = load(&scenario)?;
            let (api, device_target) = connect(target).await?;
            let runner = Runner { api: &api, target: device_target, on_event: &|_| {} };
            runner.reset(&s).await?;
            let left = runner.leftovers(&s).await?;
            if !left.is_empty() {
                bail!("the reset left {}", left.join(", "));
            }
            eprintln!("scenario '{}' reset: nothing of it is left", s.name);
            Ok(())
        }
    }
}

/// A built-in scenario by name, else a scenario file.
fn load(name_or_file: &str) -> Result<Scenario> {
    if let Some(s) = Scenario::built_in(name_or_file) {
        return s;
    }
    let text = std::fs::read_to_string(name_or_file)
        .with_context(|| format!("'{name_or_file}' is neither a built-in scenario (dps simulate list) nor a readable file"))?;
    Scenario::parse(&text).with_context(|| format!("scenario file {name_or_file}"))
}

/// The service API client and where devices connect.
async fn connect(target: &Target) -> Result<(Https, DeviceTarget)> {
    let client = Client::new(target)?;
    let info: EndpointInfo = client.call::<(), _>(Method::GET, "/service/info", None, &[]).await?;
    let ca = match &target.ca_file {
        Some(f) => f.clone(),
        None => {
            let data_dir = target.data_dir.clone().unwrap_or_else(dps_service::config::default_data_dir);
            PathBuf::from(read_endpoint(&data_dir).map(|i| i.ca_certificate).unwrap_or(info.ca_certificate.clone()))
        }
    };
    let ca_pem = std::fs::read(&ca).with_context(|| format!("cannot read the CA file {} (--ca-file)", ca.display()))?;
    let host = dps_service::host_with_port(&info.host, info.ports.https.unwrap_or(443));
    let endpoint = Endpoint { host, id_scope: info.id_scope.clone(), ca_pem };
    let devices = DeviceTarget { endpoint, mqtt_port: info.ports.mqtt.unwrap_or(8883), amqp_port: info.ports.amqp.unwrap_or(5671) };
    Ok((Https(client), devices))
}

async fn run_scenario(s: &Scenario, target: &Target, reset_after: bool, out: Output) -> Result<()> {
    let (api, device_target) = connect(target).await?;
    eprintln!("{} — {}", s.title, s.summary);
    let bar = std::sync::Mutex::new(ProgressBar::hidden());
    let on_event = |e: Event<'_>| show(&bar, e);
    let runner = Runner { api: &api, target: device_target, on_event: &on_event };
    let report = runner.run(s).await?;
    if reset_after {
        runner.reset(s).await?;
    }
    summary(&report, out);
    if !report.passed() {
        bail!("scenario '{}' did not end as expected", s.name);
    }
    Ok(())
}

/// The progress bar of a step's devices, and each step's result.
fn show(bar: &std::sync::Mutex<ProgressBar>, e: Event<'_>) {
    let Ok(mut bar) = bar.lock() else { return };
    match e {
        Event::Step { index, step, devices } => {
            if let Some(say) = &step.say {
                eprintln!("\n{index}. {say}");
            }
            *bar = if devices > 0 { new_bar(devices as u64) } else { ProgressBar::hidden() };
        }
        Event::Device(_) => bar.inc(1),
        Event::StepDone(r) => {
            bar.finish_and_clear();
            let hubs: Vec<String> = r.per_hub.iter().map(|(h, n)| format!("{h}: {n}")).collect();
            let verdict = if r.problems.is_empty() { "ok" } else { "NOT AS EXPECTED" };
            eprintln!("   {} — {verdict}{}", r.action, if hubs.is_empty() { String::new() } else { format!(" ({})", hubs.join(", ")) });
            for p in r.problems.iter().take(10) {
                eprintln!("     {p}");
            }
        }
    }
}

pub(super) fn new_bar(len: u64) -> ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("   [{bar:40}] {pos}/{len} devices") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// One row per step: what it did, devices, how many ended as expected.
fn summary(report: &Report, out: Output) {
    let rows: Vec<Value> = report
        .steps
        .iter()
        .map(|s| {
            serde_json::json!({
                "step": s.index,
                "action": s.action,
                "devices": s.outcomes.len(),
                "perHub": s.per_hub,
                "result": if s.problems.is_empty() { "ok" } else { "not as expected" },
                "problems": s.problems,
            })
        })
        .collect();
    print(out, &rows, &[("STEP", "/step"), ("ACTION", "/action"), ("DEVICES", "/devices"), ("RESULT", "/result")]);
}
