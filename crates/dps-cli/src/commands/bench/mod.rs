//! `dps bench`: the load generator. It registers devices against a service in another process — one it
//! spawns (`dps serve` on a temporary data directory, port 0 listeners), a local one (`--data-dir`) or any
//! (`--target`) — in a closed loop (`--concurrency`) or an open loop (`--rate`), over HTTPS (kept-alive or a
//! new TLS connection per device), MQTT or AMQP, with group-derived or individual symmetric keys or X.509
//! certificates; devices poll again as soon as an answer arrives. The same load then runs against the bare
//! ceiling ([`ceiling`]), in its own process too, and the service's rate is printed as a ratio of it. The
//! summary (rate, p50/p95/p99/max, errors by DPS code, server CPU-seconds per 1,000 registrations and peak
//! RSS from `/proc`) is text or JSON; `--chart` draws throughput over time and the latency CDF (SVG).
//!
//! `--idle-connections N` instead holds N subscribed MQTT devices open and reports the service's resident
//! memory per connection.

mod ceiling;
mod load;
mod process;
mod report;
mod workload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dps_device::Endpoint;

use crate::client::{read_endpoint, Client, Target};
use load::{Mode, Plan};
use process::Spawned;
use report::{Phase, Summary};
use workload::{Attestation, Poll, Setup, Transport, Workload};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    serve: Option<BenchServe>,
    /// Data directory of a running local service (default: spawn `dps serve` on a temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HOST:PORT of a running service's HTTPS endpoint (with --id-scope, --connection-string, --ca-file).
    #[arg(long, conflicts_with = "data_dir", requires_all = ["id_scope", "connection_string", "ca_file"])]
    target: Option<String>,
    /// The ID scope of the --target service.
    #[arg(long)]
    id_scope: Option<String>,
    /// Service connection string of the --target service (creates the enrollments).
    #[arg(long, env = "DPS_CONNECTION_STRING", hide_env_values = true)]
    connection_string: Option<String>,
    /// CA certificate (PEM) of the --target service.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// MQTT port of the --target service.
    #[arg(long, default_value_t = 8883)]
    mqtt_port: u16,
    /// AMQP port of the --target service.
    #[arg(long, default_value_t = 5671)]
    amqp_port: u16,
    /// PID of a running service (--data-dir, --target) whose CPU time and memory to report.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Registrations to make (default 1000 unless --duration is given).
    #[arg(long)]
    devices: Option<u64>,
    /// Seconds to offer load for (with --devices: whichever ends first).
    #[arg(long)]
    duration: Option<f64>,
    /// Closed loop: devices in flight at once.
    #[arg(long, default_value_t = 64, conflicts_with = "rate")]
    concurrency: usize,
    /// Open loop: device arrivals per second on a fixed schedule (latency counts from each scheduled start).
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: the most devices the generator keeps in flight; a later arrival waits for a slot (its latency
    /// still counts from its scheduled start).
    #[arg(long, default_value_t = 4096, requires = "rate")]
    max_in_flight: usize,
    /// HTTPS keep-alive against a loopback service: spread the connections over this many source addresses
    /// (127.0.0.1, 127.0.0.2, …), as devices come from many — one address would meet the service's per-address
    /// connection cap (`max_connections_per_ip`) before its admission limit.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    source_addresses: u8,
    #[arg(long, value_enum, default_value_t = Transport::HttpsKeepAlive)]
    transport: Transport,
    #[arg(long, value_enum, default_value_t = Attestation::Group)]
    attestation: Attestation,
    /// How devices wait between polls.
    #[arg(long, value_enum, default_value_t = Poll::Immediate)]
    poll: Poll,
    /// Individual attestation: enrollments to import before the load (default: --devices); the registering
    /// devices are spread over them.
    #[arg(long)]
    enrollments: Option<u64>,
    /// Symmetric-key groups to create besides the run's own (no device uses them).
    #[arg(long, default_value_t = 0)]
    extra_groups: usize,
    /// Enrollments per bulk operation when importing.
    #[arg(long, default_value_t = 1000)]
    import_batch: usize,
    /// Bulk operations in flight when importing (as `dps enrollment import --parallel`).
    #[arg(long, default_value_t = 4)]
    import_parallel: usize,
    /// Do not run the bare ceiling.
    #[arg(long)]
    no_ceiling: bool,
    /// Summary on standard output: text or json.
    #[arg(long, value_enum, default_value_t = BenchOutput::Text)]
    output: BenchOutput,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw throughput over time and the latency CDF into this SVG file.
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Instead of registering: open this many MQTT connections (CONNECT + SUBSCRIBE), hold them idle, and
    /// report the service's resident memory per connection.
    #[arg(long)]
    idle_connections: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BenchOutput {
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
enum BenchServe {
    /// The bare ceiling server (spawned by `dps bench`).
    #[command(hide = true)]
    CeilingServe {
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Every device connection is a file descriptor: lift the soft limit to the hard one.
fn rlimit_nofile() {
    super::serve::raise_open_files_limit();
}

/// The service under test: where it is, how to manage it, and its PID when known.
struct Service {
    endpoint: Endpoint,
    mqtt_port: u16,
    amqp_port: u16,
    client: Client,
    pid: Option<u32>,
    spawned: Option<Spawned>,
}

async fn service(a: &BenchArgs) -> Result<Service> {
    if let Some(target) = &a.target {
        let ca_pem = match &a.ca_file {
            Some(f) => std::fs::read(f).with_context(|| format!("--ca-file {}", f.display()))?,
            None => Vec::new(),
        };
        let client = Client::new(&Target { data_dir: None, connection_string: a.connection_string.clone(), ca_file: a.ca_file.clone() })?;
        let endpoint = Endpoint { host: target.clone(), id_scope: a.id_scope.clone().unwrap_or_default(), ca_pem };
        return Ok(Service { endpoint, mqtt_port: a.mqtt_port, amqp_port: a.amqp_port, client, pid: a.server_pid, spawned: None });
    }
    let (data_dir, spawned) = match &a.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let s = Spawned::start(
                "service",
                &[
                    "serve",
                    "--https-port",
                    "0",
                    "--mqtt-port",
                    "0",
                    "--amqp-port",
                    "0",
                    "--console-port",
                    "0",
                    "--retry-after-secs",
                    "2",
                    "--log",
                    "warn",
                ],
            )
            .await?;
            (s.data_dir.clone(), Some(s))
        }
    };
    let info = read_endpoint(&data_dir)?;
    let client = Client::new(&Target { data_dir: Some(data_dir), connection_string: None, ca_file: None })?;
    let endpoint = Endpoint {
        host: dps_service::host_with_port(&info.host, info.ports.https.unwrap_or(443)),
        id_scope: info.id_scope.clone(),
        ca_pem: std::fs::read(&info.ca_certificate).with_context(|| info.ca_certificate.clone())?,
    };
    let pid = spawned.as_ref().map(Spawned::pid).or(a.server_pid);
    Ok(Service { endpoint, mqtt_port: info.ports.mqtt.unwrap_or(8883), amqp_port: info.ports.amqp.unwrap_or(5671), client, pid, spawned })
}

/// Runs the plan against one target and reads its process's CPU time and peak RSS around it.
async fn phase(label: &str, devices: workload::Devices, plan: Plan, pid: Option<u32>) -> Result<Phase> {
    let cpu0 = pid.and_then(process::cpu_seconds);
    let recorded = load::run(Arc::new(devices), plan, label).await?;
    let server = pid.and_then(|p| {
        let cpu = process::cpu_seconds(p)? - cpu0?;
        Some((p, cpu, process::status_kib(p, "VmHWM:").unwrap_or(0)))
    });
    Ok(Phase::new(label, recorded, server))
}

pub async fn run(a: BenchArgs) -> Result<()> {
    if let Some(BenchServe::CeilingServe { data_dir }) = &a.serve {
        return ceiling::run(data_dir).await;
    }
    rlimit_nofile();
    let svc = service(&a).await?;
    if let Some(n) = a.idle_connections {
        return idle(&a, &svc, n).await;
    }
    let plan = Plan {
        mode: match a.rate {
            Some(rate) if rate > 0.0 => Mode::Open { rate, max_in_flight: a.max_in_flight },
            Some(_) => bail!("--rate must be above 0"),
            None => Mode::Closed { concurrency: a.concurrency },
        },
        devices: a.devices.or(if a.duration.is_none() { Some(1000) } else { None }),
        pace: (a.poll == Poll::RetryAfter).then_some(RETRY_AFTER_PACE),
        duration: a.duration.map(Duration::from_secs_f64),
    };
    let ceiling_note = match (a.no_ceiling, a.transport) {
        (true, _) => Some("--no-ceiling".to_owned()),
        (_, Transport::Amqp) => Some("no AMQP ceiling (see `dps bench` ceiling module doc)".to_owned()),
        _ => None,
    };
    let ceiling = match ceiling_note {
        None => Some(Spawned::start("ceiling", &["bench", "ceiling-serve"]).await?),
        Some(_) => None,
    };
    // One trust store for both targets: the service's CA and the ceiling's.
    let mut ca_pem = svc.endpoint.ca_pem.clone();
    if let Some(c) = &ceiling {
        ca_pem.extend(std::fs::read(&c.info.ca_certificate)?);
    }
    // Devices that register: known up front for individual and X.509 (their pool); by time, a pool of 1000.
    let pool = plan.devices.unwrap_or(1000);
    let w = Arc::new(
        Workload::prepare(Setup {
            client: &svc.client,
            attestation: a.attestation,
            transport: a.transport,
            ca_pem: &ca_pem,
            devices: pool,
            enrollments: a.enrollments.unwrap_or(pool),
            extra_groups: a.extra_groups,
            batch: a.import_batch.max(1),
            parallel: a.import_parallel.max(1),
            poll: a.poll,
        })
        .await?,
    );
    let sources = source_addresses(a.source_addresses);
    let service_phase = phase("service", w.client(svc.endpoint.clone(), svc.mqtt_port, svc.amqp_port, &sources)?, plan, svc.pid).await;
    w.cleanup(&svc.client).await;
    let service_phase = service_phase?;
    let ceiling_phase = match &ceiling {
        Some(c) => {
            let ep = Endpoint {
                host: dps_service::host_with_port(&c.info.host, c.info.ports.https.unwrap_or(443)),
                id_scope: c.info.id_scope.clone(),
                ca_pem: Vec::new(),
            };
            let ports = (c.info.ports.mqtt.unwrap_or(0), 0);
            Some(phase("ceiling", w.client(ep, ports.0, ports.1, &sources)?, plan, Some(c.pid())).await?)
        }
        None => None,
    };
    drop(ceiling);
    drop(svc.spawned);
    let ratio = ceiling_phase.as_ref().map(|c| service_phase.registrations_per_second / c.registrations_per_second.max(1e-9));
    let summary = Summary {
        mode: match plan.mode {
            Mode::Closed { .. } => "closed".into(),
            Mode::Open { .. } => "open".into(),
        },
        concurrency: matches!(plan.mode, Mode::Closed { .. }).then_some(a.concurrency),
        rate: a.rate,
        max_in_flight: a.rate.map(|_| a.max_in_flight),
        source_addresses: a.source_addresses,
        transport: a.transport,
        attestation: a.attestation,
        poll: a.poll,
        devices: plan.devices,
        duration_seconds: a.duration,
        import: w.import.clone(),
        machine: process::machine(),
        service: service_phase,
        ceiling: ceiling_phase,
        ratio,
        ceiling_note,
    };
    let json = serde_json::to_string_pretty(&summary)?;
    match a.output {
        BenchOutput::Text => print!("{}", summary.text()),
        BenchOutput::Json => println!("{json}"),
    }
    if let Some(f) = &a.json {
        std::fs::write(f, &json).with_context(|| format!("--json {}", f.display()))?;
    }
    if let Some(f) = &a.chart {
        report::chart(f, &summary)?;
    }
    let failed = summary.service.failed + summary.ceiling.as_ref().map_or(0, |c| c.failed);
    if failed > 0 {
        bail!("{failed} registration(s) failed");
    }
    Ok(())
}

/// How long a paced closed loop spreads its devices' starts and backs a failed device off (`Plan::pace`):
/// the service's default `retry-after`.
const RETRY_AFTER_PACE: Duration = Duration::from_secs(2);

/// `--source-addresses N`: 127.0.0.1 … 127.0.0.N (none for one: the system chooses, as before).
fn source_addresses(n: u8) -> Vec<std::net::IpAddr> {
    match n {
        0 | 1 => Vec::new(),
        n => (1..=n).map(|k| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, k))).collect(),
    }
}

/// `--idle-connections`: N subscribed MQTT devices held open; the service's RSS before and after.
async fn idle(a: &BenchArgs, svc: &Service, n: usize) -> Result<()> {
    let w = Arc::new(
        Workload::prepare(Setup {
            client: &svc.client,
            attestation: Attestation::Group,
            transport: Transport::Mqtt,
            ca_pem: &svc.endpoint.ca_pem,
            devices: n as u64,
            enrollments: 0,
            extra_groups: 0,
            batch: 1000,
            parallel: 4,
            poll: Poll::Immediate,
        })
        .await?,
    );
    let pid = svc.pid.context("--idle-connections reports the service's memory: give --server-pid (or let dps bench spawn it)")?;
    let before = process::status_kib(pid, "VmRSS:").unwrap_or(0);
    let (held, error) = w.hold_idle(&svc.endpoint, svc.mqtt_port, n).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = process::status_kib(pid, "VmRSS:").unwrap_or(0);
    let opened = held.len();
    let v = serde_json::json!({
        "idleMqttConnections": opened,
        "requested": n,
        "serverPid": pid,
        "serverRssBeforeKiB": before,
        "serverRssAfterKiB": after,
        "bytesPerConnection": after.saturating_sub(before) * 1024 / opened.max(1) as u64,
        "openFilesLimit": rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(0),
        "stoppedBy": error.as_ref().map(|e| format!("{e:#}")),
    });
    match a.output {
        BenchOutput::Text => println!(
            "{opened} idle MQTT connections (of {n}): service RSS {:.1} → {:.1} MiB, {} bytes per connection",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            v["bytesPerConnection"]
        ),
        BenchOutput::Json => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    if let Some(f) = &a.json {
        std::fs::write(f, serde_json::to_string_pretty(&v)?)?;
    }
    drop(held);
    w.cleanup(&svc.client).await;
    Ok(())
}
