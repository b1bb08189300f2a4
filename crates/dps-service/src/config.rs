//! Configuration in layers: built-in defaults → TOML file → `DPS_*` environment → command-line flags.
//! Every layer has the same shape ([`Overrides`]); each later layer overrides the fields it sets. The
//! result is validated once, at load, into [`Config`].
//!
//! The TOML file is `--config FILE` (or `DPS_CONFIG`), else `<data-dir>/config.toml` when it exists.
//! Secrets can come from files: `master_key_file` / `DPS_MASTER_KEY_FILE`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use dps_proto::AllocationPolicy;
use serde::Deserialize;

/// The default ports are the ones the SDKs use (`dps-protocol.md` §1, §2, §3; TOOLCHAIN.md §6).
pub const DEFAULT_HTTPS_PORT: u16 = 443;
pub const DEFAULT_MQTT_PORT: u16 = 8883;
pub const DEFAULT_AMQP_PORT: u16 = 5671;
/// The browser console (HTTPS, the service's CA); a busy default falls back to a free port.
pub const DEFAULT_CONSOLE_PORT: u16 = 8443;

/// One configuration layer; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Address the listeners bind (default 127.0.0.1; `0.0.0.0` or `::` for devices on other machines).
    pub bind: Option<IpAddr>,
    /// The host name devices and service clients use; goes into endpoint.json and the connection string.
    pub host: Option<String>,
    /// More names (or addresses) for the TLS certificate and the service-API audience.
    pub extra_host_names: Option<Vec<String>>,
    pub https_port: Option<u16>,
    /// MQTT over TLS (default 8883; MQTT over WebSockets uses the HTTPS port).
    pub mqtt_port: Option<u16>,
    /// AMQP over TLS (default 5671; AMQP over WebSockets uses the HTTPS port).
    pub amqp_port: Option<u16>,
    /// The browser console and the service API for it (default 8443).
    pub console_port: Option<u16>,
    /// Seconds an MQTT client has to send CONNECT after TLS.
    pub mqtt_connect_timeout_secs: Option<u32>,
    /// Largest MQTT packet accepted (bytes).
    pub mqtt_max_packet_bytes: Option<usize>,
    /// Seconds an AMQP connection may stay silent (it is told half of it as its heartbeat interval).
    pub amqp_idle_timeout_secs: Option<u32>,
    /// Open AMQP connections (TLS and WebSockets together) at most.
    pub amqp_max_connections: Option<usize>,
    /// Seconds devices are told to wait between polls (1–60; 2–5 suit every SDK).
    pub retry_after_secs: Option<u32>,
    /// `hashed` (default), `geoLatency` or `static`.
    pub default_allocation_policy: Option<String>,
    /// Hours finished operations are kept for late polls.
    pub operation_retention_hours: Option<u32>,
    /// File holding the master key (base64 of 32 bytes); default `<data-dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// The service's own region (`geoLatency`: devices from unmapped networks, hubs without a region).
    pub service_region: Option<String>,
    /// Network → region map for `geoLatency` (longest prefix wins).
    pub network_regions: Option<Vec<dps_core::regions::NetworkRegion>>,
    /// Latency between regions in milliseconds (`from`, `to`, `ms`; symmetric unless both directions given).
    pub region_latency: Option<Vec<dps_core::regions::RegionLatency>>,
    /// Latency assumed between regions the table does not name (default 100 ms).
    pub default_latency_ms: Option<u32>,
    /// Measure the round-trip time to each hub's endpoint (TCP connect to port 443) every minute.
    pub measure_hub_latency: Option<bool>,
    /// Custom allocation webhooks: time-out per call and the retry schedule (Azure: 10 retries, 1 s, +9 s).
    pub webhook_timeout_secs: Option<u32>,
    pub webhook_retries: Option<u32>,
    pub webhook_retry_initial_ms: Option<u64>,
    pub webhook_retry_increment_ms: Option<u64>,
    /// Retries (1, 2, 4, 8, 16, 30, 30 s…) of a hub that is unavailable, while devices see `assigning` (default 7).
    pub hub_retries: Option<u32>,
    /// A CA (PEM file) to trust for webhooks besides the system's roots.
    pub webhook_ca_file: Option<PathBuf>,
    /// Limits profile: `default` (no throttling) or `azure` (Azure's quotas and rates, §9; README "Azure limits profile").
    pub limits: Option<String>,
    /// The `azure` profile's numbers, each replacing Azure's (tests and labs use small ones).
    pub limits_azure: Option<AzureLimitsOverrides>,
    /// Log filter (`info`, `dps=debug`, …).
    pub log: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
}

impl Overrides {
    /// `self` with every field `other` sets replaced.
    pub fn then(self, other: Overrides) -> Overrides {
        Overrides {
            bind: other.bind.or(self.bind),
            host: other.host.or(self.host),
            extra_host_names: other.extra_host_names.or(self.extra_host_names),
            https_port: other.https_port.or(self.https_port),
            mqtt_port: other.mqtt_port.or(self.mqtt_port),
            amqp_port: other.amqp_port.or(self.amqp_port),
            console_port: other.console_port.or(self.console_port),
            mqtt_connect_timeout_secs: other.mqtt_connect_timeout_secs.or(self.mqtt_connect_timeout_secs),
            mqtt_max_packet_bytes: other.mqtt_max_packet_bytes.or(self.mqtt_max_packet_bytes),
            amqp_idle_timeout_secs: other.amqp_idle_timeout_secs.or(self.amqp_idle_timeout_secs),
            amqp_max_connections: other.amqp_max_connections.or(self.amqp_max_connections),
            retry_after_secs: other.retry_after_secs.or(self.retry_after_secs),
            default_allocation_policy: other.default_allocation_policy.or(self.default_allocation_policy),
            operation_retention_hours: other.operation_retention_hours.or(self.operation_retention_hours),
            master_key_file: other.master_key_file.or(self.master_key_file),
            service_region: other.service_region.or(self.service_region),
            network_regions: other.network_regions.or(self.network_regions),
            region_latency: other.region_latency.or(self.region_latency),
            default_latency_ms: other.default_latency_ms.or(self.default_latency_ms),
            measure_hub_latency: other.measure_hub_latency.or(self.measure_hub_latency),
            webhook_timeout_secs: other.webhook_timeout_secs.or(self.webhook_timeout_secs),
            webhook_retries: other.webhook_retries.or(self.webhook_retries),
            hub_retries: other.hub_retries.or(self.hub_retries),
            webhook_retry_initial_ms: other.webhook_retry_initial_ms.or(self.webhook_retry_initial_ms),
            webhook_retry_increment_ms: other.webhook_retry_increment_ms.or(self.webhook_retry_increment_ms),
            webhook_ca_file: other.webhook_ca_file.or(self.webhook_ca_file),
            limits: other.limits.or(self.limits),
            limits_azure: match (self.limits_azure, other.limits_azure) {
                (Some(a), Some(b)) => Some(a.then(b)),
                (a, b) => b.or(a),
            },
            log: other.log.or(self.log),
            log_format: other.log_format.or(self.log_format),
        }
    }

    /// The `DPS_*` environment layer.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Overrides, ConfigError> {
        fn get<'a>(env: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
            env.get(k).map(String::as_str).filter(|v| !v.is_empty())
        }
        fn parse<T: std::str::FromStr>(env: &HashMap<String, String>, k: &str) -> Result<Option<T>, ConfigError> {
            get(env, k).map(|v| v.trim().parse::<T>().map_err(|_| ConfigError(format!("{k}={v} is not a valid value")))).transpose()
        }
        Ok(Overrides {
            bind: parse(env, "DPS_BIND")?,
            host: get(env, "DPS_HOST").map(str::to_owned),
            extra_host_names: get(env, "DPS_EXTRA_HOST_NAMES")
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()),
            https_port: parse(env, "DPS_HTTPS_PORT")?,
            mqtt_port: parse(env, "DPS_MQTT_PORT")?,
            amqp_port: parse(env, "DPS_AMQP_PORT")?,
            console_port: parse(env, "DPS_CONSOLE_PORT")?,
            mqtt_connect_timeout_secs: parse(env, "DPS_MQTT_CONNECT_TIMEOUT_SECS")?,
            mqtt_max_packet_bytes: parse(env, "DPS_MQTT_MAX_PACKET_BYTES")?,
            amqp_idle_timeout_secs: parse(env, "DPS_AMQP_IDLE_TIMEOUT_SECS")?,
            amqp_max_connections: parse(env, "DPS_AMQP_MAX_CONNECTIONS")?,
            retry_after_secs: parse(env, "DPS_RETRY_AFTER_SECS")?,
            default_allocation_policy: get(env, "DPS_DEFAULT_ALLOCATION_POLICY").map(str::to_owned),
            operation_retention_hours: parse(env, "DPS_OPERATION_RETENTION_HOURS")?,
            master_key_file: get(env, "DPS_MASTER_KEY_FILE").map(PathBuf::from),
            service_region: get(env, "DPS_SERVICE_REGION").map(str::to_owned),
            network_regions: get(env, "DPS_NETWORK_REGIONS").map(parse_network_regions).transpose()?,
            region_latency: get(env, "DPS_REGION_LATENCY").map(parse_region_latency).transpose()?,
            default_latency_ms: parse(env, "DPS_DEFAULT_LATENCY_MS")?,
            measure_hub_latency: parse(env, "DPS_MEASURE_HUB_LATENCY")?,
            webhook_timeout_secs: parse(env, "DPS_WEBHOOK_TIMEOUT_SECS")?,
            webhook_retries: parse(env, "DPS_WEBHOOK_RETRIES")?,
            hub_retries: parse(env, "DPS_HUB_RETRIES")?,
            webhook_retry_initial_ms: parse(env, "DPS_WEBHOOK_RETRY_INITIAL_MS")?,
            webhook_retry_increment_ms: parse(env, "DPS_WEBHOOK_RETRY_INCREMENT_MS")?,
            webhook_ca_file: get(env, "DPS_WEBHOOK_CA_FILE").map(PathBuf::from),
            limits: get(env, "DPS_LIMITS").map(str::to_owned),
            limits_azure: AzureLimitsOverrides::from_env(env)?,
            log: get(env, "DPS_LOG").map(str::to_owned),
            log_format: get(env, "DPS_LOG_FORMAT").map(str::to_owned),
        })
    }

    /// The TOML file layer.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Overrides, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("{}: {}", origin.display(), e.to_string().trim_end())))
    }
}

/// `[limits_azure]`: the `azure` limits profile's numbers (`dps_core::limits::AzureLimits`); environment
/// `DPS_LIMITS_AZURE_<NAME>` (e.g. `DPS_LIMITS_AZURE_POLLS_PER_WINDOW=1`). Unset fields keep Azure's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureLimitsOverrides {
    pub registrations_per_window: Option<u32>,
    pub registration_window_secs: Option<u32>,
    pub service_operations_per_window: Option<u32>,
    pub service_operation_window_secs: Option<u32>,
    pub polls_per_window: Option<u32>,
    pub poll_window_secs: Option<u32>,
    pub max_bulk_items: Option<u32>,
    pub max_enrollment_groups: Option<u64>,
    pub max_individual_enrollments: Option<u64>,
    pub max_ca_certificates: Option<u64>,
    pub max_linked_hubs: Option<u64>,
    pub max_message_bytes: Option<u64>,
    pub tracked_devices: Option<u32>,
}

impl AzureLimitsOverrides {
    pub fn then(self, other: AzureLimitsOverrides) -> AzureLimitsOverrides {
        AzureLimitsOverrides {
            registrations_per_window: other.registrations_per_window.or(self.registrations_per_window),
            registration_window_secs: other.registration_window_secs.or(self.registration_window_secs),
            service_operations_per_window: other.service_operations_per_window.or(self.service_operations_per_window),
            service_operation_window_secs: other.service_operation_window_secs.or(self.service_operation_window_secs),
            polls_per_window: other.polls_per_window.or(self.polls_per_window),
            poll_window_secs: other.poll_window_secs.or(self.poll_window_secs),
            max_bulk_items: other.max_bulk_items.or(self.max_bulk_items),
            max_enrollment_groups: other.max_enrollment_groups.or(self.max_enrollment_groups),
            max_individual_enrollments: other.max_individual_enrollments.or(self.max_individual_enrollments),
            max_ca_certificates: other.max_ca_certificates.or(self.max_ca_certificates),
            max_linked_hubs: other.max_linked_hubs.or(self.max_linked_hubs),
            max_message_bytes: other.max_message_bytes.or(self.max_message_bytes),
            tracked_devices: other.tracked_devices.or(self.tracked_devices),
        }
    }

    fn from_env(env: &HashMap<String, String>) -> Result<Option<AzureLimitsOverrides>, ConfigError> {
        fn parse<T: std::str::FromStr>(env: &HashMap<String, String>, k: &str) -> Result<Option<T>, ConfigError> {
            env.get(k)
                .map(String::as_str)
                .filter(|v| !v.is_empty())
                .map(|v| v.trim().parse::<T>().map_err(|_| ConfigError(format!("{k}={v} is not a valid value"))))
                .transpose()
        }
        let o = AzureLimitsOverrides {
            registrations_per_window: parse(env, "DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW")?,
            registration_window_secs: parse(env, "DPS_LIMITS_AZURE_REGISTRATION_WINDOW_SECS")?,
            service_operations_per_window: parse(env, "DPS_LIMITS_AZURE_SERVICE_OPERATIONS_PER_WINDOW")?,
            service_operation_window_secs: parse(env, "DPS_LIMITS_AZURE_SERVICE_OPERATION_WINDOW_SECS")?,
            polls_per_window: parse(env, "DPS_LIMITS_AZURE_POLLS_PER_WINDOW")?,
            poll_window_secs: parse(env, "DPS_LIMITS_AZURE_POLL_WINDOW_SECS")?,
            max_bulk_items: parse(env, "DPS_LIMITS_AZURE_MAX_BULK_ITEMS")?,
            max_enrollment_groups: parse(env, "DPS_LIMITS_AZURE_MAX_ENROLLMENT_GROUPS")?,
            max_individual_enrollments: parse(env, "DPS_LIMITS_AZURE_MAX_INDIVIDUAL_ENROLLMENTS")?,
            max_ca_certificates: parse(env, "DPS_LIMITS_AZURE_MAX_CA_CERTIFICATES")?,
            max_linked_hubs: parse(env, "DPS_LIMITS_AZURE_MAX_LINKED_HUBS")?,
            max_message_bytes: parse(env, "DPS_LIMITS_AZURE_MAX_MESSAGE_BYTES")?,
            tracked_devices: parse(env, "DPS_LIMITS_AZURE_TRACKED_DEVICES")?,
        };
        Ok((o != AzureLimitsOverrides::default()).then_some(o))
    }

    /// Azure's numbers with these replaced, validated.
    pub fn apply(self) -> Result<dps_core::limits::AzureLimits, ConfigError> {
        let d = dps_core::limits::AzureLimits::default();
        let a = dps_core::limits::AzureLimits {
            registrations_per_window: self.registrations_per_window.unwrap_or(d.registrations_per_window),
            registration_window_secs: self.registration_window_secs.unwrap_or(d.registration_window_secs),
            service_operations_per_window: self.service_operations_per_window.unwrap_or(d.service_operations_per_window),
            service_operation_window_secs: self.service_operation_window_secs.unwrap_or(d.service_operation_window_secs),
            polls_per_window: self.polls_per_window.unwrap_or(d.polls_per_window),
            poll_window_secs: self.poll_window_secs.unwrap_or(d.poll_window_secs),
            max_bulk_items: self.max_bulk_items.unwrap_or(d.max_bulk_items),
            max_enrollment_groups: self.max_enrollment_groups.unwrap_or(d.max_enrollment_groups),
            max_individual_enrollments: self.max_individual_enrollments.unwrap_or(d.max_individual_enrollments),
            max_ca_certificates: self.max_ca_certificates.unwrap_or(d.max_ca_certificates),
            max_linked_hubs: self.max_linked_hubs.unwrap_or(d.max_linked_hubs),
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            tracked_devices: self.tracked_devices.unwrap_or(d.tracked_devices),
        };
        a.validate().map_err(ConfigError)?;
        Ok(a)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// `CIDR=REGION[,CIDR=REGION…]` (environment and flags).
pub fn parse_network_regions(text: &str) -> Result<Vec<dps_core::regions::NetworkRegion>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (net, region) = p.split_once('=').ok_or_else(|| ConfigError(format!("network region '{p}' is not CIDR=REGION")))?;
            let network = net.trim().parse().map_err(|_| ConfigError(format!("'{net}' is not a network (CIDR, e.g. 10.1.0.0/16)")))?;
            Ok(dps_core::regions::NetworkRegion { network, region: region.trim().to_owned() })
        })
        .collect()
}

/// `FROM:TO=MS[,…]` (environment and flags).
pub fn parse_region_latency(text: &str) -> Result<Vec<dps_core::regions::RegionLatency>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let bad = || ConfigError(format!("region latency '{p}' is not FROM:TO=MS"));
            let (pair, ms) = p.split_once('=').ok_or_else(bad)?;
            let (from, to) = pair.split_once(':').ok_or_else(bad)?;
            let ms = ms.trim().parse().map_err(|_| bad())?;
            Ok(dps_core::regions::RegionLatency { from: from.trim().to_owned(), to: to.trim().to_owned(), ms })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub bind: IpAddr,
    pub host: String,
    pub extra_host_names: Vec<String>,
    pub https_port: u16,
    pub mqtt_port: u16,
    /// Whether the MQTT port was configured (a busy *default* port falls back to a free one, see `bind`).
    pub mqtt_port_explicit: bool,
    pub amqp_port: u16,
    /// Whether the AMQP port was configured (a busy default falls back like MQTT's).
    pub amqp_port_explicit: bool,
    pub amqp_limits: crate::amqp::Limits,
    pub console_port: u16,
    /// Whether the console port was configured (a busy default falls back like MQTT's).
    pub console_port_explicit: bool,
    pub mqtt_limits: crate::mqtt::Limits,
    pub retry_after_secs: u32,
    pub default_allocation_policy: AllocationPolicy,
    pub operation_retention_hours: u32,
    pub master_key_file: PathBuf,
    pub regions: dps_core::regions::RegionModel,
    pub measure_hub_latency: bool,
    pub webhook_timeout: std::time::Duration,
    pub webhook_retry: dps_core::registration::WebhookRetry,
    pub hub_retry: dps_core::registration::HubRetry,
    pub webhook_ca_file: Option<PathBuf>,
    /// The limits profile at start (the console's Settings can switch it while the service runs).
    pub limits: dps_core::limits::Profile,
    /// Whether a layer set `limits` (then it wins over the profile the console last chose, kept in the store).
    pub limits_explicit: bool,
    pub limits_azure: dps_core::limits::AzureLimits,
    pub log: String,
    pub log_format: LogFormat,
}

/// The AMQP limits, defaults replaced by what the layers set, refused when out of range.
fn amqp_limits(o: &Overrides) -> Result<crate::amqp::Limits, ConfigError> {
    let d = crate::amqp::Limits::default();
    let idle = o.amqp_idle_timeout_secs.map_or(d.idle_timeout, |s| std::time::Duration::from_secs(u64::from(s)));
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600)).contains(&idle) {
        return Err(ConfigError(format!("amqp_idle_timeout_secs {} is outside 1–3600", idle.as_secs())));
    }
    let max_connections = o.amqp_max_connections.unwrap_or(d.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(ConfigError(format!("amqp_max_connections {max_connections} is outside 1–1000000")));
    }
    Ok(crate::amqp::Limits { idle_timeout: idle, max_connections, ..d })
}

/// The platform's data directory for DPS Console (`~/.local/share/dps-console` on Linux).
pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir().unwrap_or_else(|| PathBuf::from(".")).join("dps-console")
}

impl Config {
    /// Resolves every layer. `config_file`: an explicit file (must exist); otherwise
    /// `<data-dir>/config.toml` is read when present.
    pub fn load(
        data_dir: PathBuf,
        config_file: Option<&Path>,
        env: &HashMap<String, String>,
        flags: Overrides,
    ) -> Result<Config, ConfigError> {
        let file = match config_file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError(format!("cannot read {}: {e}", p.display())))?;
                Overrides::from_toml(&text, p)?
            }
            None => {
                let p = data_dir.join("config.toml");
                match std::fs::read_to_string(&p) {
                    Ok(text) => Overrides::from_toml(&text, &p)?,
                    Err(_) => Overrides::default(),
                }
            }
        };
        let o = file.then(Overrides::from_env(env)?).then(flags);
        Self::validate(data_dir, o)
    }

    fn validate(data_dir: PathBuf, o: Overrides) -> Result<Config, ConfigError> {
        let amqp_limits = amqp_limits(&o)?;
        let bind = o.bind.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let host = match o.host {
            Some(h) if h.trim().is_empty() => return Err(ConfigError("host must not be empty".into())),
            Some(h) => h.trim().to_owned(),
            None if bind.is_loopback() => bind.to_string(),
            None => hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into()),
        };
        if host.contains('/') || host.contains(' ') {
            return Err(ConfigError(format!("host '{host}' is not a host name")));
        }
        let retry_after_secs = o.retry_after_secs.unwrap_or(2);
        if !(2..=5).contains(&retry_after_secs) {
            return Err(ConfigError(format!(
                "retry_after_secs {retry_after_secs} is outside 2–5: the device SDKs clamp or ignore other values (Java and .NET \
                 poll after 2 s at the least, Java after 2 s when it is above 5), so devices would not wait what they are told"
            )));
        }
        let policy_text = o.default_allocation_policy.unwrap_or_else(|| "hashed".into());
        let default_allocation_policy = match AllocationPolicy::parse(&policy_text) {
            Some(AllocationPolicy::Custom) => {
                return Err(ConfigError("default_allocation_policy cannot be custom (a webhook belongs to an enrollment)".into()))
            }
            Some(p) => p,
            None => return Err(ConfigError(format!("default_allocation_policy '{policy_text}' is not hashed, geoLatency or static"))),
        };
        let log_format = match o.log_format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(ConfigError(format!("log_format '{other}' is not text or json"))),
        };
        let limits_explicit = o.limits.is_some();
        let limits = o.limits.as_deref().map_or(Ok(dps_core::limits::Profile::Default), str::parse).map_err(ConfigError)?;
        let limits_azure = o.limits_azure.unwrap_or_default().apply()?;
        let defaults = crate::mqtt::Limits::default();
        let mqtt_limits = crate::mqtt::Limits {
            max_packet_bytes: o.mqtt_max_packet_bytes.unwrap_or(defaults.max_packet_bytes),
            connect_timeout: o.mqtt_connect_timeout_secs.map_or(defaults.connect_timeout, |s| std::time::Duration::from_secs(u64::from(s))),
        };
        if !(1024..=16 * 1024 * 1024).contains(&mqtt_limits.max_packet_bytes) {
            return Err(ConfigError(format!("mqtt_max_packet_bytes {} is outside 1 KiB–16 MiB", mqtt_limits.max_packet_bytes)));
        }
        if mqtt_limits.connect_timeout.is_zero() {
            return Err(ConfigError("mqtt_connect_timeout_secs must be at least 1".into()));
        }
        let regions = dps_core::regions::RegionModel {
            service_region: o.service_region.filter(|r| !r.trim().is_empty()),
            networks: o.network_regions.unwrap_or_default(),
            latency: o.region_latency.unwrap_or_default(),
            default_latency_ms: o.default_latency_ms.unwrap_or(100),
            measured: Default::default(),
        };
        let d = dps_core::registration::WebhookRetry::default();
        let webhook_retry = dps_core::registration::WebhookRetry {
            retries: o.webhook_retries.unwrap_or(d.retries),
            initial: o.webhook_retry_initial_ms.map_or(d.initial, std::time::Duration::from_millis),
            increment: o.webhook_retry_increment_ms.map_or(d.increment, std::time::Duration::from_millis),
        };
        if webhook_retry.retries > 100 {
            return Err(ConfigError("webhook_retries is above 100".into()));
        }
        let hub_retry = dps_core::registration::HubRetry { retries: o.hub_retries.unwrap_or(7), ..Default::default() };
        if hub_retry.retries > 20 {
            return Err(ConfigError("hub_retries is above 20 (each wait is at most 30 s; devices give up after some minutes)".into()));
        }
        Ok(Config {
            regions,
            measure_hub_latency: o.measure_hub_latency.unwrap_or(false),
            webhook_timeout: std::time::Duration::from_secs(u64::from(o.webhook_timeout_secs.unwrap_or(30).max(1))),
            webhook_retry,
            hub_retry,
            webhook_ca_file: o.webhook_ca_file,
            mqtt_port_explicit: o.mqtt_port.is_some(),
            mqtt_port: o.mqtt_port.unwrap_or(DEFAULT_MQTT_PORT),
            amqp_port_explicit: o.amqp_port.is_some(),
            amqp_port: o.amqp_port.unwrap_or(DEFAULT_AMQP_PORT),
            amqp_limits,
            console_port_explicit: o.console_port.is_some(),
            console_port: o.console_port.unwrap_or(DEFAULT_CONSOLE_PORT),
            mqtt_limits,
            master_key_file: o.master_key_file.unwrap_or_else(|| data_dir.join("master.key")),
            data_dir,
            bind,
            host,
            extra_host_names: o.extra_host_names.unwrap_or_default(),
            https_port: o.https_port.unwrap_or(DEFAULT_HTTPS_PORT),
            retry_after_secs,
            default_allocation_policy,
            operation_retention_hours: o.operation_retention_hours.unwrap_or(24).max(1),
            limits,
            limits_explicit,
            limits_azure,
            log: o.log.unwrap_or_else(|| "info".into()),
            log_format,
        })
    }

    /// Every name the service answers to: the TLS certificate's SANs and the service-API audiences.
    pub fn host_names(&self) -> Vec<String> {
        let mut v = vec![self.host.clone(), "localhost".into(), "127.0.0.1".into(), "::1".into()];
        if let Some(h) = hostname::get().ok().and_then(|h| h.into_string().ok()) {
            v.push(h);
        }
        if !self.bind.is_unspecified() {
            v.push(self.bind.to_string());
        }
        v.extend(self.extra_host_names.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        v.retain(|h| seen.insert(h.to_ascii_lowercase()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::load(PathBuf::from("/nonexistent"), None, &env(&[]), Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.https_port, 443);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.retry_after_secs, 2);
        assert_eq!(c.default_allocation_policy, AllocationPolicy::Hashed);
        assert_eq!(c.master_key_file, PathBuf::from("/nonexistent/master.key"));
        assert!(c.host_names().contains(&"localhost".to_owned()));
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("dps.toml");
        std::fs::write(&file, "host = \"file.example\"\nhttps_port = 8443\nretry_after_secs = 3\nextra_host_names = [\"a.example\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = env(&[("DPS_HTTPS_PORT", "9443"), ("DPS_RETRY_AFTER_SECS", "4")]);
        let flags = Overrides { retry_after_secs: Some(5), ..Default::default() };
        let c = Config::load(dir.path().into(), Some(&file), &e, flags).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.host.as_str(), c.https_port, c.retry_after_secs), ("file.example", 9443, 5));
        assert!(c.host_names().contains(&"a.example".to_owned()));
    }

    #[test]
    fn data_dir_config_toml_is_read_when_present() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("config.toml"), "default_allocation_policy = \"static\"\n").unwrap_or_else(|e| panic!("{e}"));
        let c = Config::load(dir.path().into(), None, &env(&[]), Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.default_allocation_policy, AllocationPolicy::Static);
    }

    #[test]
    fn regions_and_webhook_schedules_load_from_every_layer() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("dps.toml");
        let toml = "service_region = \"lab\"\nwebhook_retries = 3\n[[network_regions]]\nnetwork = \"10.1.0.0/16\"\nregion = \"factory\"\n[[region_latency]]\nfrom = \"factory\"\nto = \"lab\"\nms = 30\n";
        std::fs::write(&file, toml).unwrap_or_else(|e| panic!("{e}"));
        let e = env(&[("DPS_NETWORK_REGIONS", "127.0.0.2/32=eu, 127.0.0.3/32=us"), ("DPS_WEBHOOK_RETRY_INITIAL_MS", "50")]);
        let c = Config::load(dir.path().into(), Some(&file), &e, Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.regions.service_region.as_deref(), Some("lab"));
        assert_eq!(c.regions.networks.len(), 2, "the environment replaces the file's list");
        assert_eq!(c.regions.latency[0].ms, 30);
        assert_eq!((c.webhook_retry.retries, c.webhook_retry.initial.as_millis()), (3, 50));
        assert!(parse_network_regions("10.0.0.0/33=x").is_err());
        assert!(parse_region_latency("a-b=3").is_err());
        assert!(parse_region_latency("a:b=x").is_err());
    }

    #[test]
    fn limits_profile_and_its_numbers_load_from_every_layer() {
        use dps_core::limits::Profile;
        let c = Config::load(PathBuf::from("/nonexistent"), None, &env(&[]), Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.limits, c.limits_explicit), (Profile::Default, false), "the default profile does not throttle");
        assert_eq!(c.limits_azure, dps_core::limits::AzureLimits::default());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("dps.toml");
        std::fs::write(&file, "limits = \"azure\"\n[limits_azure]\npolls_per_window = 2\npoll_window_secs = 4\nmax_bulk_items = 3\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let e = env(&[("DPS_LIMITS_AZURE_POLL_WINDOW_SECS", "6"), ("DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW", "7")]);
        let c = Config::load(dir.path().into(), Some(&file), &e, Overrides::default()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((c.limits, c.limits_explicit), (Profile::Azure, true));
        let a = c.limits_azure;
        assert_eq!((a.polls_per_window, a.poll_window_secs, a.max_bulk_items, a.registrations_per_window), (2, 6, 3, 7));
        assert_eq!(a.max_enrollment_groups, 100, "unset numbers keep Azure's");
        let flags = Overrides { limits: Some("default".into()), ..Default::default() };
        let c = Config::load(dir.path().into(), Some(&file), &env(&[("DPS_LIMITS", "azure")]), flags).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.limits, Profile::Default, "flags win");
    }

    #[test]
    fn bad_samples_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cases = [
            ("unknown_key = 1\n", "unknown field"),
            ("https_port = \"x\"\n", "https_port"),
            ("https_port = 70000\n", "https_port"),
            ("retry_after_secs = 0\n", "retry_after_secs"),
            ("retry_after_secs = 1\n", "2–5"),
            ("retry_after_secs = 6\n", "2–5"),
            ("default_allocation_policy = \"custom\"\n", "custom"),
            ("default_allocation_policy = \"random\"\n", "random"),
            ("log_format = \"xml\"\n", "xml"),
            ("host = \"\"\n", "host"),
            ("limits = \"strict\"\n", "strict"),
            ("[limits_azure]\npolls_per_window = 0\n", "polls_per_window"),
            ("[limits_azure]\npoll_window_secs = 7200\n", "poll_window_secs"),
            ("[limits_azure]\nburst = 3\n", "burst"),
        ];
        for (text, needle) in cases {
            let f = dir.path().join("bad.toml");
            std::fs::write(&f, text).unwrap_or_else(|e| panic!("{e}"));
            let err = Config::load(dir.path().into(), Some(&f), &env(&[]), Overrides::default())
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(err.0.contains(needle), "{text}: {err}");
        }
        let err = Config::load(dir.path().into(), None, &env(&[("DPS_HTTPS_PORT", "https")]), Overrides::default());
        assert!(err.is_err());
        assert!(Config::load(dir.path().into(), Some(&dir.path().join("missing.toml")), &env(&[]), Overrides::default()).is_err());
    }
}
