//! `dps serve`: the headless service. Flags are the last configuration layer.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use dps_service::config::{default_data_dir, Config, Overrides};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory (database, keys, CA, endpoint.json).
    #[arg(long, env = "DPS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TOML configuration file (default: <data-dir>/config.toml when present).
    #[arg(long, env = "DPS_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1; 0.0.0.0 for devices on other machines).
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Host name devices and clients use (default: the bind address, or this machine's name).
    #[arg(long)]
    host: Option<String>,
    /// More names for the TLS certificate (repeatable).
    #[arg(long = "extra-host-name")]
    extra_host_names: Vec<String>,
    /// HTTPS port of the device and service APIs (default 443; 0 = any free port).
    #[arg(long)]
    https_port: Option<u16>,
    /// MQTT port (default 8883; 0 = any free port). MQTT over WebSockets uses the HTTPS port.
    #[arg(long)]
    mqtt_port: Option<u16>,
    /// AMQP port (default 5671; 0 = any free port). AMQP over WebSockets uses the HTTPS port.
    #[arg(long)]
    amqp_port: Option<u16>,
    /// Port of the browser console (HTTPS with the service's CA; default 8443; 0 = any free port).
    #[arg(long)]
    console_port: Option<u16>,
    /// Seconds devices wait between polls.
    #[arg(long)]
    retry_after_secs: Option<u32>,
    /// Allocation policy for enrollments that set none: hashed, geoLatency or static.
    #[arg(long)]
    default_allocation_policy: Option<String>,
    /// The service's own region (lowest-latency allocation).
    #[arg(long)]
    service_region: Option<String>,
    /// Map a network to a region: CIDR=REGION (repeatable), e.g. 10.1.0.0/16=factory.
    #[arg(long = "network-region")]
    network_regions: Vec<String>,
    /// Latency between two regions: FROM:TO=MS (repeatable), e.g. factory:lab=30.
    #[arg(long = "region-latency")]
    region_latency: Vec<String>,
    /// Measure the round-trip time to each hub's endpoint every minute.
    #[arg(long)]
    measure_hub_latency: bool,
    /// Custom allocation webhooks: seconds per call before it counts as a time-out.
    #[arg(long)]
    webhook_timeout_secs: Option<u32>,
    /// Custom allocation webhooks: retries on ≥ 429 / time-out (Azure: 10).
    #[arg(long)]
    webhook_retries: Option<u32>,
    /// Custom allocation webhooks: first retry delay in ms (Azure: 1000).
    #[arg(long)]
    webhook_retry_initial_ms: Option<u64>,
    /// Custom allocation webhooks: added delay per retry in ms (Azure: 9000).
    #[arg(long)]
    webhook_retry_increment_ms: Option<u64>,
    /// Retries of a hub that is unavailable (waits of 1, 2, 4, 8, 16, 30 s…) before its registrations fail (default 7).
    #[arg(long)]
    hub_retries: Option<u32>,
    /// Limits profile: default (no throttling) or azure (Azure's quotas and rates; numbers in [limits_azure]).
    #[arg(long)]
    limits: Option<String>,
    /// Log filter (e.g. info, debug, dps_core=debug).
    #[arg(long)]
    log: Option<String>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<String>,
}

/// Every idle device connection is a file descriptor: lift the soft limit to the hard one.
pub fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn run(a: ServeArgs) -> Result<()> {
    let data_dir = a.data_dir.unwrap_or_else(default_data_dir);
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let flags = Overrides {
        bind: a.bind,
        host: a.host,
        extra_host_names: (!a.extra_host_names.is_empty()).then_some(a.extra_host_names),
        https_port: a.https_port,
        mqtt_port: a.mqtt_port,
        amqp_port: a.amqp_port,
        console_port: a.console_port,
        retry_after_secs: a.retry_after_secs,
        default_allocation_policy: a.default_allocation_policy,
        service_region: a.service_region,
        network_regions: if a.network_regions.is_empty() {
            None
        } else {
            Some(dps_service::config::parse_network_regions(&a.network_regions.join(","))?)
        },
        region_latency: if a.region_latency.is_empty() {
            None
        } else {
            Some(dps_service::config::parse_region_latency(&a.region_latency.join(","))?)
        },
        measure_hub_latency: a.measure_hub_latency.then_some(true),
        webhook_timeout_secs: a.webhook_timeout_secs,
        webhook_retries: a.webhook_retries,
        webhook_retry_initial_ms: a.webhook_retry_initial_ms,
        webhook_retry_increment_ms: a.webhook_retry_increment_ms,
        hub_retries: a.hub_retries,
        limits: a.limits,
        log: a.log,
        log_format: a.log_format,
        ..Default::default()
    };
    let config = Config::load(data_dir, a.config.as_deref(), &env, flags)?;
    dps_service::diagnostics::init_logging(&config);
    raise_open_files_limit();
    let listeners = dps_service::bind(&config)?;
    let running = dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await?;
    let i = &running.info;
    println!("DPS Console is running.");
    println!("  ID scope:            {}", i.id_scope);
    println!(
        "  Device endpoint:     https://{}  (global device endpoint / provisioning host)",
        dps_service::host_with_port(&i.host, i.ports.https.unwrap_or(443))
    );
    println!("  MQTT:                {}:{}  (MQTT over WebSockets: the HTTPS port)", i.host, i.ports.mqtt.unwrap_or(8883));
    println!("  AMQP:                {}:{}  (AMQP over WebSockets: the HTTPS port)", i.host, i.ports.amqp.unwrap_or(5671));
    println!("  Service endpoint:    same host; connection string below");
    println!("  CA certificate:      {}  (devices must trust it)", i.ca_certificate);
    println!("  Connection string:   {}", i.service_connection_string);
    if let Some(port) = i.ports.console {
        let note = if dps_service::https::console::built() {
            "browser; trust the CA above, or accept its warning"
        } else {
            "not built into this binary: run make ui, then rebuild"
        };
        println!("  Console:             https://{}/  ({note})", dps_service::host_with_port(&i.host, port));
    }
    println!("  Data directory:      {}", config.data_dir.display());
    println!("  Endpoint file:       {}", config.data_dir.join("endpoint.json").display());
    if let Some(p) = &running.initial_admin_password {
        println!("  Console admin:       user admin, password {p}");
        println!(
            "                       (shown once; also in {} — change it: dps admin set-password)",
            config.data_dir.join("initial-admin-password").display()
        );
    }
    println!("Stop with Ctrl+C.");
    shutdown_signal().await;
    println!("Stopping…");
    running.shutdown().await;
    Ok(())
}
