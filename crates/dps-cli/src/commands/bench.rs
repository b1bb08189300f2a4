//! `dps bench`: the load generator. Registers many group devices over HTTPS, with one keep-alive
//! connection pool or a new connection per device, and reports throughput and latency. Without
//! `--data-dir` it starts a private service in a temporary directory first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use dps_device::{Endpoint, HttpsDevice, Polling};
use dps_proto::{EnrollmentGroup, RegistrationStatus};
use reqwest::Method;
use tokio::sync::Semaphore;

use crate::client::{read_endpoint, seg, Client, Target};

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Data directory of a running service (default: start a private one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Devices to register.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Registrations in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Open a new TLS connection for every device instead of reusing keep-alive connections.
    #[arg(long)]
    new_connection: bool,
    /// Poll interval in milliseconds (0: honour retry-after like the SDKs).
    #[arg(long, default_value_t = 20)]
    poll_ms: u64,
    /// https, mqtt or amqp.
    #[arg(long, default_value = "https")]
    protocol: String,
    /// Instead of registering: open this many MQTT connections (CONNECT + SUBSCRIBE), hold them idle, and
    /// report the service's resident memory per connection (needs --server-pid, or a private service).
    #[arg(long)]
    idle_connections: Option<usize>,
    /// PID of the service process whose memory --idle-connections reports.
    #[arg(long)]
    server_pid: Option<u32>,
}

/// The transport the load runs over (the port for MQTT and AMQP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Https,
    Mqtt(u16),
    Amqp(u16),
}

fn rss_kib(field: &str) -> Option<u64> {
    proc_kib("self", field)
}

fn proc_kib(pid: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub async fn run(a: BenchArgs) -> Result<()> {
    let mut private = None;
    let data_dir = match a.data_dir.clone() {
        Some(d) => d,
        None => {
            let dir = tempfile::tempdir()?;
            let flags = dps_service::config::Overrides {
                https_port: Some(0),
                console_port: Some(0),
                retry_after_secs: Some(2),
                ..Default::default()
            };
            let config = dps_service::Config::load(dir.path().to_path_buf(), None, &HashMap::new(), flags)?;
            let listeners = dps_service::bind(&config)?;
            let running = dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await?;
            let p = dir.path().to_path_buf();
            private = Some((dir, running));
            p
        }
    };
    let info = read_endpoint(&data_dir)?;
    let client = Client::new(&Target { data_dir: Some(data_dir.clone()), connection_string: None, ca_file: None })?;
    let group_id = format!("bench-{}", std::process::id());
    let g: EnrollmentGroup = client
        .call(
            Method::PUT,
            &format!("/enrollmentGroups/{}", seg(&group_id)),
            Some(&serde_json::json!({ "enrollmentGroupId": group_id, "attestation": { "type": "symmetricKey" } })),
            &[],
        )
        .await?;
    let group_key = g.attestation.symmetric_key.and_then(|k| k.primary_key).context("the group has no key")?;
    let endpoint = Endpoint {
        host: dps_service::host_with_port(&info.host, info.ports.https.unwrap_or(443)),
        id_scope: info.id_scope.clone(),
        ca_pem: std::fs::read(&info.ca_certificate)?,
    };
    let polling = if a.poll_ms == 0 { Polling::RetryAfter } else { Polling::Every(Duration::from_millis(a.poll_ms)) };
    let mqtt_port = info.ports.mqtt.unwrap_or(8883);
    let amqp_port = info.ports.amqp.unwrap_or(5671);
    if let Some(n) = a.idle_connections {
        let pid = a.server_pid.map_or_else(|| "self".to_owned(), |p| p.to_string());
        super::serve::raise_open_files_limit();
        let before = proc_kib(&pid, "VmRSS:").unwrap_or(0);
        let mut held = Vec::with_capacity(n);
        for i in 0..n {
            let id = format!("{group_id}-{i:06}");
            let key = dps_crypto::derive_device_key(&group_key, &id)?;
            held.push(dps_device::mqtt::MqttSession::connect(&endpoint, mqtt_port, &id, &key).await?);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = proc_kib(&pid, "VmRSS:").unwrap_or(0);
        println!(
            "{{\"idleMqttConnections\":{n},\"serverRssBeforeKiB\":{before},\"serverRssAfterKiB\":{after},\"bytesPerConnection\":{},\"measured\":\"{}\"}}",
            after.saturating_sub(before) * 1024 / n.max(1) as u64,
            if a.server_pid.is_some() { "server process" } else { "this process (client and private service)" }
        );
        drop(held);
        let _ = client.send::<()>(Method::DELETE, &format!("/enrollmentGroups/{}", seg(&group_id)), None, &[]).await;
        if let Some((_dir, running)) = private {
            running.shutdown().await;
        }
        return Ok(());
    }
    let protocol = match a.protocol.as_str() {
        "https" => Protocol::Https,
        "mqtt" => Protocol::Mqtt(mqtt_port),
        "amqp" => Protocol::Amqp(amqp_port),
        other => anyhow::bail!("--protocol {other}: https, mqtt or amqp"),
    };
    let shared = HttpsDevice::new(endpoint.clone(), polling)?;
    let gate = Arc::new(Semaphore::new(a.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.devices {
        let id = format!("{group_id}-{i:06}");
        let key = dps_crypto::derive_device_key(&group_key, &id)?;
        let device = if a.new_connection { HttpsDevice::new(endpoint.clone(), polling)? } else { shared.clone() };
        let gate = Arc::clone(&gate);
        let ep = endpoint.clone();
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let t = Instant::now();
            let r = match protocol {
                Protocol::Https => device.provision_symmetric_key(&id, &key).await,
                Protocol::Mqtt(port) => match dps_device::mqtt::MqttSession::connect(&ep, port, &id, &key).await {
                    Ok(mut s) => s.provision(&id, polling).await,
                    Err(e) => Err(e),
                },
                Protocol::Amqp(port) => match dps_device::amqp::AmqpSession::connect(&ep, port, &id, &key).await {
                    Ok(mut s) => {
                        let r = s.provision(&id, polling).await;
                        let _ = s.close().await;
                        r
                    }
                    Err(e) => Err(e),
                },
            };
            (t.elapsed(), r.map(|s| s.status == RegistrationStatus::Assigned).unwrap_or(false))
        });
    }
    let mut latencies = Vec::with_capacity(a.devices);
    let mut failed = 0usize;
    while let Some(r) = tasks.join_next().await {
        let (d, ok) = r?;
        latencies.push(d);
        if !ok {
            failed += 1;
        }
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct =
        |p: f64| latencies.get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or_default();
    println!(
        "{{\"protocol\":\"{}\",\"devices\":{},\"concurrency\":{},\"connection\":\"{}\",\"pollMs\":{},\"seconds\":{:.3},\"registrationsPerSecond\":{:.1},\"p50Ms\":{},\"p95Ms\":{},\"p99Ms\":{},\"failed\":{},\"peakRssKiB\":{}}}",
        a.protocol,
        a.devices,
        a.concurrency,
        if protocol != Protocol::Https || a.new_connection { "new-per-device" } else { "keep-alive" },
        a.poll_ms,
        elapsed.as_secs_f64(),
        a.devices as f64 / elapsed.as_secs_f64().max(1e-9),
        pct(0.50).as_millis(),
        pct(0.95).as_millis(),
        pct(0.99).as_millis(),
        failed,
        rss_kib("VmHWM:").unwrap_or(0)
    );
    let _ = client.send::<()>(Method::DELETE, &format!("/enrollmentGroups/{}", seg(&group_id)), None, &[]).await;
    if let Some((_dir, running)) = private {
        running.shutdown().await;
    }
    if failed > 0 {
        anyhow::bail!("{failed} registration(s) failed");
    }
    Ok(())
}
