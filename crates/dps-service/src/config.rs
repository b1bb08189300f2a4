//! Configuration in layers: built-in defaults → TOML file → `DPS_*` environment → command-line flags.
//! Every layer has the same shape ([`Overrides`]); each later layer overrides the fields it sets. The
//! result is validated once, at load, into [`Config`].
//!
//! Each setting is declared once, as a field of [`Overrides`]: the TOML key, the `DPS_*` variable and the
//! `dps serve` flag follow from it. The TOML file is `--config FILE` (or `DPS_CONFIG`), else
//! `<data-dir>/config.toml` when it exists. Secrets can come from files: `master_key_file` /
//! `DPS_MASTER_KEY_FILE` / `--master-key-file`.

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

/// Declares a layer struct (every field an `Option`) once, with its `then`: `self` with every field `other`
/// sets replaced. Each field's attributes say the rest: serde's name is the TOML key, clap's `long` the flag,
/// clap's `env` the `DPS_*` variable, the doc comment the help text.
macro_rules! layer {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $field:ident: Option<$ty:ty>,)* }) => {
        $(#[$m])*
        pub struct $name { $($(#[$fm])* pub $field: Option<$ty>,)* }

        impl $name {
            fn then_each(self, other: $name) -> $name {
                $name { $($field: other.$field.or(self.$field),)* }
            }
        }
    };
}

layer! {
/// One configuration layer; every field optional. Each setting is declared here once: its field name is the
/// TOML key, its `--flag` the name with dashes (`dps serve`; the three lists take one item a flag, singular),
/// its `DPS_*` variable the name in capitals; the README's settings table is checked against these
/// declarations (a unit test of `dps serve`, in `dps-cli`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Address the listeners bind (default 127.0.0.1; `0.0.0.0` or `::` for devices on other machines).
    #[arg(long, env = "DPS_BIND")]
    pub bind: Option<IpAddr>,
    /// The host name devices and service clients use (default: the bind address, or this machine's name).
    #[arg(long, env = "DPS_HOST")]
    pub host: Option<String>,
    /// More names (or addresses) for the TLS certificate and the service-API audience (repeatable; the
    /// variable is comma-separated).
    #[arg(long = "extra-host-name", env = "DPS_EXTRA_HOST_NAMES", value_delimiter = ',', value_parser = trimmed)]
    pub extra_host_names: Option<Vec<String>>,
    /// HTTPS port of the device and service APIs (default 443; 0 = any free port).
    #[arg(long, env = "DPS_HTTPS_PORT")]
    pub https_port: Option<u16>,
    /// MQTT over TLS (default 8883; 0 = any free port). MQTT over WebSockets uses the HTTPS port.
    #[arg(long, env = "DPS_MQTT_PORT")]
    pub mqtt_port: Option<u16>,
    /// AMQP over TLS (default 5671; 0 = any free port). AMQP over WebSockets uses the HTTPS port.
    #[arg(long, env = "DPS_AMQP_PORT")]
    pub amqp_port: Option<u16>,
    /// The browser console and the service API for it (HTTPS with the service's CA; default 8443; 0 = any free port).
    #[arg(long, env = "DPS_CONSOLE_PORT")]
    pub console_port: Option<u16>,
    /// Seconds an MQTT client has to send CONNECT after TLS (default 10).
    #[arg(long, env = "DPS_MQTT_CONNECT_TIMEOUT_SECS")]
    pub mqtt_connect_timeout_secs: Option<u32>,
    /// Largest MQTT packet accepted in bytes (default 99328).
    #[arg(long, env = "DPS_MQTT_MAX_PACKET_BYTES")]
    pub mqtt_max_packet_bytes: Option<usize>,
    /// Seconds an AMQP connection may stay silent (it is told half of it as its heartbeat interval; default 240).
    #[arg(long, env = "DPS_AMQP_IDLE_TIMEOUT_SECS")]
    pub amqp_idle_timeout_secs: Option<u32>,
    /// Open AMQP connections (TLS and WebSockets together) at most (default 20000).
    #[arg(long, env = "DPS_AMQP_MAX_CONNECTIONS")]
    pub amqp_max_connections: Option<usize>,
    /// The longest MQTT keep-alive honoured in seconds: a client asking 0 (no pings) or more is held to it, and
    /// closed after 1.5 × it in silence (default 1200; 1–65535).
    #[arg(long, env = "DPS_MQTT_MAX_KEEP_ALIVE_SECS")]
    pub mqtt_max_keep_alive_secs: Option<u32>,
    /// Seconds an MQTT packet may take to arrive whole once its first byte did (default 30; 1–3600).
    #[arg(long, env = "DPS_MQTT_PACKET_TIMEOUT_SECS")]
    pub mqtt_packet_timeout_secs: Option<u32>,
    /// Seconds from TCP accept to a complete AMQP `open` (TLS, protocol header, SASL; default 10; 1–300).
    #[arg(long, env = "DPS_AMQP_HANDSHAKE_TIMEOUT_SECS")]
    pub amqp_handshake_timeout_secs: Option<u32>,
    /// Seconds an AMQP frame may take to arrive whole once its first byte did (default 10; 1–3600).
    #[arg(long, env = "DPS_AMQP_FRAME_TIMEOUT_SECS")]
    pub amqp_frame_timeout_secs: Option<u32>,
    /// Seconds from TCP accept to a finished TLS handshake on the HTTPS and console ports (default 10; 1–300).
    #[arg(long, env = "DPS_HTTP_HANDSHAKE_TIMEOUT_SECS")]
    pub http_handshake_timeout_secs: Option<u32>,
    /// Seconds an HTTPS or console connection may move no byte; an HTTP/1 request head must arrive within it,
    /// counted from when the connection waits for a request (default 120; 1–3600).
    #[arg(long, env = "DPS_HTTP_IDLE_TIMEOUT_SECS")]
    pub http_idle_timeout_secs: Option<u32>,
    /// Seconds a request body has to arrive whole (default 60; 1–3600).
    #[arg(long, env = "DPS_HTTP_BODY_TIMEOUT_SECS")]
    pub http_body_timeout_secs: Option<u32>,
    /// Bytes of request bodies held at once across all HTTPS connections; past it a request gets 503 with
    /// retry-after (default 67108864 = 64 MiB; 1024–4294967295).
    #[arg(long, env = "DPS_HTTP_BODY_BUDGET_BYTES")]
    pub http_body_budget_bytes: Option<u64>,
    /// Seconds a write may wait for a peer that does not read, on every listener (default 30; 1–3600).
    #[arg(long, env = "DPS_WRITE_TIMEOUT_SECS")]
    pub write_timeout_secs: Option<u32>,
    /// Open connections per listener at most (HTTPS, console, MQTT, AMQP each; default 20000); more are closed
    /// at accept.
    #[arg(long, env = "DPS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Open connections per listener from one source address at most (default 1000: devices behind one NAT
    /// share it); more are closed at accept.
    #[arg(long, env = "DPS_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// Seconds devices are told to wait between polls (2–5, default 2).
    #[arg(long, env = "DPS_RETRY_AFTER_SECS")]
    pub retry_after_secs: Option<u32>,
    /// Registrations in flight at most; more are answered 429 at once (1–1000000, default 4096).
    #[arg(long, env = "DPS_MAX_REGISTRATIONS_IN_FLIGHT")]
    pub max_registrations_in_flight: Option<usize>,
    /// Allocation policy for enrollments that set none (default hashed).
    // A word of a fixed set whose enum lives in dps-proto (no clap there): clap lists and checks the words,
    // `validate` reads them into the enum in any case, as the TOML file's are.
    #[arg(long, env = "DPS_DEFAULT_ALLOCATION_POLICY", value_parser = ["hashed", "geoLatency", "static"], ignore_case = true)]
    pub default_allocation_policy: Option<String>,
    /// Hours finished operations are kept for late polls (default 24).
    #[arg(long, env = "DPS_OPERATION_RETENTION_HOURS")]
    pub operation_retention_hours: Option<u32>,
    /// File holding the master key (base64 of 32 bytes; default <data-dir>/master.key).
    #[arg(long, env = "DPS_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Where the master key is kept: `file` (master_key_file), `keyring` (the OS keyring: Secret Service,
    /// Keychain, Credential Manager) or `auto` (default: where this data directory's key already is; a new data
    /// directory's key goes to a file, or to the keyring in the desktop app).
    #[arg(long, env = "DPS_MASTER_KEY_SOURCE", value_enum)]
    pub master_key_source: Option<MasterKeySource>,
    /// PostgreSQL database for the store, postgres://USER:PASSWORD@HOST:PORT/DATABASE (default: SQLite,
    /// `dps.sqlite` in the data directory).
    // `hide_env_values`: `--help` would print the variable's value, password included.
    #[arg(long, env = "DPS_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The CA certificate (PEM) devices trust, shared by a cluster's instances with `tls_cert_file` and
    /// `tls_key_file` (`dps init` makes all three); default `<data-dir>/ca.pem`, made at first start with its key.
    #[arg(long, env = "DPS_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The TLS server certificate chain (PEM, the server's certificate first) every listener presents, as given;
    /// default: issued by the data directory's CA at every start for the host names.
    #[arg(long, env = "DPS_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    #[arg(long, env = "DPS_TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,
    /// A token `GET /metrics` then requires as `Authorization: Bearer <token>` (16+ visible characters; default:
    /// none, the exporter is open like any exporter).
    #[arg(long, env = "DPS_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// The service's own region (`geoLatency`: devices from unmapped networks, hubs without a region).
    #[arg(long, env = "DPS_SERVICE_REGION")]
    pub service_region: Option<String>,
    /// Map a network to a region for `geoLatency`, CIDR=REGION (repeatable; the variable is comma-separated;
    /// longest prefix wins), e.g. 10.1.0.0/16=factory.
    #[arg(long = "network-region", env = "DPS_NETWORK_REGIONS", value_name = "CIDR=REGION", value_delimiter = ',', value_parser = network_region)]
    pub network_regions: Option<Vec<dps_core::regions::NetworkRegion>>,
    /// Latency between two regions in milliseconds, FROM:TO=MS (repeatable; the variable is comma-separated;
    /// symmetric unless both directions are given), e.g. factory:lab=30.
    #[arg(long = "region-latency", env = "DPS_REGION_LATENCY", value_name = "FROM:TO=MS", value_delimiter = ',', value_parser = region_latency)]
    pub region_latency: Option<Vec<dps_core::regions::RegionLatency>>,
    /// Latency assumed between regions the table does not name (default 100 ms).
    #[arg(long, env = "DPS_DEFAULT_LATENCY_MS")]
    pub default_latency_ms: Option<u32>,
    /// Measure the round-trip time to each hub's endpoint (TCP connect to port 443) every minute.
    #[arg(long, env = "DPS_MEASURE_HUB_LATENCY", num_args = 0..=1, default_missing_value = "true")]
    pub measure_hub_latency: Option<bool>,
    /// Custom allocation webhooks: seconds per call before it counts as a time-out (default 30).
    #[arg(long, env = "DPS_WEBHOOK_TIMEOUT_SECS")]
    pub webhook_timeout_secs: Option<u32>,
    /// Custom allocation webhooks: retries on ≥ 429 / time-out (Azure: 10).
    #[arg(long, env = "DPS_WEBHOOK_RETRIES")]
    pub webhook_retries: Option<u32>,
    /// Custom allocation webhooks: first retry delay in ms (Azure: 1000).
    #[arg(long, env = "DPS_WEBHOOK_RETRY_INITIAL_MS")]
    pub webhook_retry_initial_ms: Option<u64>,
    /// Custom allocation webhooks: added delay per retry in ms (Azure: 9000).
    #[arg(long, env = "DPS_WEBHOOK_RETRY_INCREMENT_MS")]
    pub webhook_retry_increment_ms: Option<u64>,
    /// Retries of a hub that is unavailable (waits of 1, 2, 4, 8, 16, 30, 30 s…) while its devices see
    /// `assigning`, before their registrations fail (default 7).
    #[arg(long, env = "DPS_HUB_RETRIES")]
    pub hub_retries: Option<u32>,
    /// A CA (PEM file) to trust for webhooks besides the system's roots.
    #[arg(long, env = "DPS_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Limits profile: default (no throttling) or azure (Azure's quotas and rates, §9; numbers in [limits_azure]).
    // As `default_allocation_policy`: the enum is dps-core's `limits::Profile`.
    #[arg(long, env = "DPS_LIMITS", value_parser = ["default", "azure"], ignore_case = true)]
    pub limits: Option<String>,
    /// The `azure` profile's numbers, each replacing Azure's (tests and labs use small ones).
    #[command(flatten)]
    pub limits_azure: Option<AzureLimitsOverrides>,
    /// Refused devices all get the same 401002 and message (no enrollment enumeration); the reason goes to the
    /// log and the device's trace (default false).
    #[arg(long, env = "DPS_GENERIC_DEVICE_ERRORS", num_args = 0..=1, default_missing_value = "true")]
    pub generic_device_errors: Option<bool>,
    /// Log filter (e.g. info, debug, dps_core=debug; default info).
    #[arg(long, env = "DPS_LOG")]
    pub log: Option<String>,
    /// Log format (default text).
    #[arg(long, env = "DPS_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}
}

/// A list item without its surrounding spaces (`DPS_EXTRA_HOST_NAMES=a, b`).
fn trimmed(s: &str) -> Result<String, String> {
    Ok(s.trim().to_owned())
}

fn network_region(s: &str) -> Result<dps_core::regions::NetworkRegion, ConfigError> {
    parse_network_regions(s)?.pop().ok_or_else(|| ConfigError(format!("network region '{s}' is not CIDR=REGION")))
}

fn region_latency(s: &str) -> Result<dps_core::regions::RegionLatency, ConfigError> {
    parse_region_latency(s)?.pop().ok_or_else(|| ConfigError(format!("region latency '{s}' is not FROM:TO=MS")))
}

impl Overrides {
    /// `self` with every field `other` sets replaced (`[limits_azure]` field by field).
    pub fn then(mut self, mut other: Overrides) -> Overrides {
        let limits_azure = match (self.limits_azure.take(), other.limits_azure.take()) {
            (Some(a), Some(b)) => Some(a.then(b)),
            (a, b) => b.or(a),
        };
        Overrides { limits_azure, ..self.then_each(other) }
    }

    /// The `DPS_*` environment layer: each setting's variable, as its flag declares it, parsed as the flag is.
    pub fn from_env(env: &HashMap<String, String>) -> Result<Overrides, ConfigError> {
        use clap::{Args, FromArgMatches};
        // The variables come from `env`, never from this process's environment.
        let command = || Overrides::augment_args(clap::Command::new("environment").no_binary_name(true)).mut_args(|a| a.env(None::<&str>));
        let parse = |argv: &[String]| command().try_get_matches_from(argv).and_then(|m| Overrides::from_arg_matches(&m));
        let mut argv = Vec::new();
        for arg in Overrides::augment_args(clap::Command::new("environment")).get_arguments() {
            let (Some(var), Some(long)) = (arg.get_env().and_then(|v| v.to_str()), arg.get_long()) else { continue };
            let Some(value) = env.get(var).filter(|v| !v.trim().is_empty()) else { continue };
            let flag = vec![format!("--{long}={}", value.trim())];
            if let Err(e) = parse(&flag) {
                let reason = e.to_string();
                let reason = reason.lines().next().unwrap_or_default().trim_start_matches("error: ");
                return Err(ConfigError(format!("{var}={value} is not a valid value: {reason}")));
            }
            argv.extend(flag);
        }
        parse(&argv).map_err(|e| ConfigError(format!("the DPS_* environment: {e}")))
    }

    /// The TOML file layer.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Overrides, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(format!("{}: {}", origin.display(), e.to_string().trim_end())))
    }
}

layer! {
/// `[limits_azure]`: the `azure` limits profile's numbers (`dps_core::limits::AzureLimits`); environment
/// `DPS_LIMITS_AZURE_<NAME>` (e.g. `DPS_LIMITS_AZURE_POLLS_PER_WINDOW=1`), flags `--limits-azure-<name>`.
/// Unset fields keep Azure's values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "The azure limits profile's numbers (default: Azure's)")]
pub struct AzureLimitsOverrides {
    /// Registrations per window per service (Azure: 1000).
    #[arg(long = "limits-azure-registrations-per-window", env = "DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW")]
    pub registrations_per_window: Option<u32>,
    /// The registrations' window in seconds (Azure: 60).
    #[arg(long = "limits-azure-registration-window-secs", env = "DPS_LIMITS_AZURE_REGISTRATION_WINDOW_SECS")]
    pub registration_window_secs: Option<u32>,
    /// SAS-signed service operations per window (Azure: 1000).
    #[arg(long = "limits-azure-service-operations-per-window", env = "DPS_LIMITS_AZURE_SERVICE_OPERATIONS_PER_WINDOW")]
    pub service_operations_per_window: Option<u32>,
    /// The service operations' window in seconds (Azure: 60).
    #[arg(long = "limits-azure-service-operation-window-secs", env = "DPS_LIMITS_AZURE_SERVICE_OPERATION_WINDOW_SECS")]
    pub service_operation_window_secs: Option<u32>,
    /// Operation-status polls per window per device (Azure: 5).
    #[arg(long = "limits-azure-polls-per-window", env = "DPS_LIMITS_AZURE_POLLS_PER_WINDOW")]
    pub polls_per_window: Option<u32>,
    /// The polls' window in seconds (Azure: 10).
    #[arg(long = "limits-azure-poll-window-secs", env = "DPS_LIMITS_AZURE_POLL_WINDOW_SECS")]
    pub poll_window_secs: Option<u32>,
    /// Items of a bulk operation (Azure: 10).
    #[arg(long = "limits-azure-max-bulk-items", env = "DPS_LIMITS_AZURE_MAX_BULK_ITEMS")]
    pub max_bulk_items: Option<u32>,
    /// Enrollment groups per attestation type (Azure: 100).
    #[arg(long = "limits-azure-max-enrollment-groups", env = "DPS_LIMITS_AZURE_MAX_ENROLLMENT_GROUPS")]
    pub max_enrollment_groups: Option<u64>,
    /// Individual enrollments (Azure: 1000000).
    #[arg(long = "limits-azure-max-individual-enrollments", env = "DPS_LIMITS_AZURE_MAX_INDIVIDUAL_ENROLLMENTS")]
    pub max_individual_enrollments: Option<u64>,
    /// CA certificates (Azure: 25).
    #[arg(long = "limits-azure-max-ca-certificates", env = "DPS_LIMITS_AZURE_MAX_CA_CERTIFICATES")]
    pub max_ca_certificates: Option<u64>,
    /// Linked hubs (Azure: 50).
    #[arg(long = "limits-azure-max-linked-hubs", env = "DPS_LIMITS_AZURE_MAX_LINKED_HUBS")]
    pub max_linked_hubs: Option<u64>,
    /// Bytes of a register payload or a service-API body (Azure: 96 KB).
    #[arg(long = "limits-azure-max-message-bytes", env = "DPS_LIMITS_AZURE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u64>,
    /// Devices whose poll windows are kept in memory (default 100000).
    #[arg(long = "limits-azure-tracked-devices", env = "DPS_LIMITS_AZURE_TRACKED_DEVICES")]
    pub tracked_devices: Option<u32>,
}
}

impl AzureLimitsOverrides {
    pub fn then(self, other: AzureLimitsOverrides) -> AzureLimitsOverrides {
        self.then_each(other)
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

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the master key is kept (`master_key_source`; `DPS_MASTER_KEY` overrides every one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MasterKeySource {
    /// Where the data directory's key already is; a new one per [`Config::keyring_preferred`].
    #[default]
    Auto,
    File,
    Keyring,
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
    /// The HTTPS and console listeners' request bounds.
    pub http_limits: crate::https::Limits,
    /// Connection caps of each listener.
    pub caps: crate::bounds::Caps,
    /// The write deadline of every listener.
    pub write_timeout: std::time::Duration,
    pub retry_after_secs: u32,
    pub max_registrations_in_flight: usize,
    pub default_allocation_policy: AllocationPolicy,
    pub operation_retention_hours: u32,
    pub master_key_file: PathBuf,
    /// The master key itself, from `DPS_MASTER_KEY` (base64); when set, the key file is not read.
    pub master_key: Option<dps_crypto::Secret>,
    /// Whether a layer names `master_key_file`: then a missing file stops the start (never a new key).
    pub master_key_explicit: bool,
    pub master_key_source: MasterKeySource,
    /// With `auto`, whether a new data directory's key goes to the OS keyring when one answers (the desktop
    /// app sets it; `dps serve` keeps keys in files).
    pub keyring_preferred: bool,
    /// Shared TLS material (a cluster, `dps init`): the CA devices trust and the server certificate with its
    /// key, loaded as given, never made. `None`: the data directory's CA issues one at every start.
    pub shared_tls: Option<SharedTls>,
    /// The PostgreSQL database (`postgres://…`); `None`: SQLite in the data directory. Sealed from `Debug`
    /// (it may carry a password); logs show [`dps_store::redact_url`]'s form.
    pub database_url: Option<dps_crypto::Secret>,
    pub regions: dps_core::regions::RegionModel,
    pub measure_hub_latency: bool,
    pub webhook_timeout: std::time::Duration,
    pub webhook_retry: dps_core::registration::WebhookRetry,
    pub hub_retry: dps_core::registration::HubRetry,
    pub webhook_ca_file: Option<PathBuf>,
    /// What `GET /metrics` requires as a Bearer token, when set.
    pub metrics_token: Option<dps_crypto::Secret>,
    /// The limits profile at start (the console's Settings can switch it while the service runs).
    pub limits: dps_core::limits::Profile,
    /// Whether a layer set `limits` (then it wins over the profile the console last chose, kept in the store).
    pub limits_explicit: bool,
    pub limits_azure: dps_core::limits::AzureLimits,
    /// Refused devices all get the same 401 (`dps_core::registration` `refusal.rs`).
    pub generic_device_errors: bool,
    pub log: String,
    pub log_format: LogFormat,
}

/// `value` of the setting `name` when inside `range`, else an error naming the setting, the value and the
/// range — every numeric setting goes through it (or a check of its own), so no value of any layer reaches
/// a duration or time computation that could overflow.
fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError(format!("{name} {value} is outside {}–{} {unit}", range.start(), range.end()).trim_end().to_owned()))
    }
}

/// Seconds in a day: the longest any timeout may be.
const DAY_SECS: u32 = 86_400;
/// Ten minutes in milliseconds: the longest webhook retry delay or latency.
const TEN_MINUTES_MS: u64 = 600_000;
/// Seconds from a layer (or the default), refused outside `range`.
fn secs(
    name: &str,
    value: Option<u32>,
    default: std::time::Duration,
    range: std::ops::RangeInclusive<u32>,
) -> Result<std::time::Duration, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => in_range(name, v, range, "seconds").map(|v| std::time::Duration::from_secs(u64::from(v))),
    }
}

/// A count from a layer (or the default), refused outside `range`.
fn count(name: &str, value: Option<usize>, default: usize, range: std::ops::RangeInclusive<usize>) -> Result<usize, ConfigError> {
    in_range(name, value.unwrap_or(default), range, "")
}

/// The HTTPS listeners' request bounds, the caps and the write deadline every listener shares.
fn listener_bounds(o: &Overrides) -> Result<(crate::https::Limits, crate::bounds::Caps, std::time::Duration), ConfigError> {
    let d = crate::https::Limits::default();
    let budget = o.http_body_budget_bytes.unwrap_or(d.body_budget_bytes as u64);
    if !(1024..=u64::from(u32::MAX)).contains(&budget) {
        return Err(ConfigError(format!("http_body_budget_bytes {budget} is outside 1024–4294967295")));
    }
    let http = crate::https::Limits {
        handshake_timeout: secs("http_handshake_timeout_secs", o.http_handshake_timeout_secs, d.handshake_timeout, 1..=300)?,
        idle_timeout: secs("http_idle_timeout_secs", o.http_idle_timeout_secs, d.idle_timeout, 1..=3600)?,
        body_timeout: secs("http_body_timeout_secs", o.http_body_timeout_secs, d.body_timeout, 1..=3600)?,
        body_budget_bytes: usize::try_from(budget).unwrap_or(usize::MAX),
    };
    let c = crate::bounds::Caps::default();
    let caps = crate::bounds::Caps {
        total: count("max_connections", o.max_connections, c.total, 1..=1_000_000)?,
        per_ip: count("max_connections_per_ip", o.max_connections_per_ip, c.per_ip, 1..=1_000_000)?,
    };
    let write = secs("write_timeout_secs", o.write_timeout_secs, std::time::Duration::from_secs(30), 1..=3600)?;
    Ok((http, caps, write))
}

/// The AMQP limits, defaults replaced by what the layers set, refused when out of range.
/// The name devices use for the service: `host`, else the bound address when it is loopback, else the machine's
/// name.
fn host_name(host: Option<String>, bind: IpAddr) -> Result<String, ConfigError> {
    let host = match host {
        Some(h) if h.trim().is_empty() => return Err(ConfigError("host must not be empty".into())),
        Some(h) => h.trim().to_owned(),
        None if bind.is_loopback() => bind.to_string(),
        None => hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into()),
    };
    if host.contains('/') || host.contains(' ') {
        return Err(ConfigError(format!("host '{host}' is not a host name")));
    }
    Ok(host)
}

fn retry_after(secs: Option<u32>) -> Result<u32, ConfigError> {
    let secs = secs.unwrap_or(2);
    if !(2..=5).contains(&secs) {
        return Err(ConfigError(format!(
            "retry_after_secs {secs} is outside 2–5: the device SDKs clamp or ignore other values (Java and .NET \
             poll after 2 s at the least, Java after 2 s when it is above 5), so devices would not wait what they are told"
        )));
    }
    Ok(secs)
}

fn default_policy(text: Option<String>) -> Result<AllocationPolicy, ConfigError> {
    let text = text.unwrap_or_else(|| "hashed".into());
    match AllocationPolicy::parse(&text) {
        Some(AllocationPolicy::Custom) => {
            Err(ConfigError("default_allocation_policy cannot be custom (a webhook belongs to an enrollment)".into()))
        }
        Some(p) => Ok(p),
        None => Err(ConfigError(format!("default_allocation_policy '{text}' is not hashed, geoLatency or static"))),
    }
}

fn region_model(o: &mut Overrides) -> Result<dps_core::regions::RegionModel, ConfigError> {
    Ok(dps_core::regions::RegionModel {
        service_region: o.service_region.take().filter(|r| !r.trim().is_empty()),
        networks: o.network_regions.take().unwrap_or_default(),
        latency: o.region_latency.take().unwrap_or_default(),
        default_latency_ms: in_range("default_latency_ms", o.default_latency_ms.unwrap_or(100), 0..=600_000, "ms")?,
        measured: Default::default(),
    })
}

fn amqp_limits(o: &Overrides) -> Result<crate::amqp::Limits, ConfigError> {
    let d = crate::amqp::Limits::default();
    let handshake_timeout = secs("amqp_handshake_timeout_secs", o.amqp_handshake_timeout_secs, d.handshake_timeout, 1..=300)?;
    let frame_timeout = secs("amqp_frame_timeout_secs", o.amqp_frame_timeout_secs, d.frame_timeout, 1..=3600)?;
    let write_timeout = secs("write_timeout_secs", o.write_timeout_secs, d.write_timeout, 1..=3600)?;
    let idle = o.amqp_idle_timeout_secs.map_or(d.idle_timeout, |s| std::time::Duration::from_secs(u64::from(s)));
    if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(3600)).contains(&idle) {
        return Err(ConfigError(format!("amqp_idle_timeout_secs {} is outside 1–3600", idle.as_secs())));
    }
    let max_connections = o.amqp_max_connections.unwrap_or(d.max_connections);
    if !(1..=1_000_000).contains(&max_connections) {
        return Err(ConfigError(format!("amqp_max_connections {max_connections} is outside 1–1000000")));
    }
    Ok(crate::amqp::Limits { idle_timeout: idle, max_connections, handshake_timeout, frame_timeout, write_timeout, ..d })
}

/// The MQTT limits, defaults replaced by what the layers set, refused when out of range.
fn mqtt_limits(o: &Overrides) -> Result<crate::mqtt::Limits, ConfigError> {
    let defaults = crate::mqtt::Limits::default();
    let limits = crate::mqtt::Limits {
        max_packet_bytes: o.mqtt_max_packet_bytes.unwrap_or(defaults.max_packet_bytes),
        connect_timeout: match o.mqtt_connect_timeout_secs {
            Some(s) => std::time::Duration::from_secs(u64::from(in_range("mqtt_connect_timeout_secs", s, 1..=DAY_SECS, "seconds")?)),
            None => defaults.connect_timeout,
        },
        max_keep_alive: secs("mqtt_max_keep_alive_secs", o.mqtt_max_keep_alive_secs, defaults.max_keep_alive, 1..=65535)?,
        packet_timeout: secs("mqtt_packet_timeout_secs", o.mqtt_packet_timeout_secs, defaults.packet_timeout, 1..=3600)?,
    };
    if !(1024..=16 * 1024 * 1024).contains(&limits.max_packet_bytes) {
        return Err(ConfigError(format!("mqtt_max_packet_bytes {} is outside 1 KiB–16 MiB", limits.max_packet_bytes)));
    }
    if limits.connect_timeout.is_zero() {
        return Err(ConfigError("mqtt_connect_timeout_secs must be at least 1".into()));
    }
    Ok(limits)
}

/// The custom allocation webhooks' and the unavailable hubs' retry schedules, refused when too long.
fn retries(o: &Overrides) -> Result<(dps_core::registration::WebhookRetry, dps_core::registration::HubRetry), ConfigError> {
    let d = dps_core::registration::WebhookRetry::default();
    let ms = |name, v: Option<u64>, default| {
        v.map_or(Ok(default), |v| in_range(name, v, 0..=TEN_MINUTES_MS, "ms").map(std::time::Duration::from_millis))
    };
    let webhook_retry = dps_core::registration::WebhookRetry {
        retries: o.webhook_retries.unwrap_or(d.retries),
        initial: ms("webhook_retry_initial_ms", o.webhook_retry_initial_ms, d.initial)?,
        increment: ms("webhook_retry_increment_ms", o.webhook_retry_increment_ms, d.increment)?,
    };
    if webhook_retry.retries > 100 {
        return Err(ConfigError("webhook_retries is above 100".into()));
    }
    let hub_retry = dps_core::registration::HubRetry { retries: o.hub_retries.unwrap_or(7), ..Default::default() };
    if hub_retry.retries > 20 {
        return Err(ConfigError("hub_retries is above 20 (each wait is at most 30 s; devices give up after some minutes)".into()));
    }
    Ok((webhook_retry, hub_retry))
}

/// `metrics_token`: unset or blank is none; otherwise at least 16 visible ASCII characters (it goes in a header).
fn metrics_token(token: Option<&str>) -> Result<Option<dps_crypto::Secret>, ConfigError> {
    let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError("metrics_token must be at least 16 visible ASCII characters (no spaces)".into()));
    }
    Ok(Some(dps_crypto::Secret::new(t)))
}

/// Files of a cluster's shared TLS material (see [`Config::shared_tls`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTls {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `ca_file`, `tls_cert_file` and `tls_key_file` come together or not at all (a server certificate without the
/// CA devices are told to trust, or the reverse, would be half a cluster's material).
fn shared_tls(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<SharedTls>, ConfigError> {
    match (ca, cert, key) {
        (None, None, None) => Ok(None),
        (Some(ca_file), Some(cert_file), Some(key_file)) => Ok(Some(SharedTls { ca_file, cert_file, key_file })),
        _ => Err(ConfigError(
            "ca_file, tls_cert_file and tls_key_file go together (`dps init` makes all three): set all of them or none".into(),
        )),
    }
}

/// `database_url`: unset or blank is SQLite; otherwise a `postgres://` (or `postgresql://`) URL.
fn database_url(url: Option<&str>) -> Result<Option<dps_crypto::Secret>, ConfigError> {
    let Some(u) = url.map(str::trim).filter(|u| !u.is_empty()) else { return Ok(None) };
    if !dps_store::is_postgres(u) {
        return Err(ConfigError(format!(
            "database_url {} is not a PostgreSQL URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE); leave it out for SQLite",
            dps_store::redact_url(u)
        )));
    }
    Ok(Some(dps_crypto::Secret::new(u)))
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
        let mut config = Self::validate(data_dir, o)?;
        config.master_key = env.get(crate::keys::ENV_KEY).filter(|k| !k.trim().is_empty()).map(|k| dps_crypto::Secret::new(k.trim()));
        Ok(config)
    }

    fn validate(data_dir: PathBuf, mut o: Overrides) -> Result<Config, ConfigError> {
        let amqp_limits = amqp_limits(&o)?;
        let mqtt_limits = mqtt_limits(&o)?;
        let (http_limits, caps, write_timeout) = listener_bounds(&o)?;
        let (webhook_retry, hub_retry) = retries(&o)?;
        let metrics_token = metrics_token(o.metrics_token.as_deref())?;
        let database_url = database_url(o.database_url.as_deref())?;
        let bind = o.bind.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let host = host_name(o.host.take(), bind)?;
        let retry_after_secs = retry_after(o.retry_after_secs)?;
        let max_registrations_in_flight = o.max_registrations_in_flight.unwrap_or(dps_core::registration::DEFAULT_MAX_IN_FLIGHT);
        if !(1..=1_000_000).contains(&max_registrations_in_flight) {
            return Err(ConfigError(format!("max_registrations_in_flight {max_registrations_in_flight} is outside 1–1000000")));
        }
        let default_allocation_policy = default_policy(o.default_allocation_policy.take())?;
        let log_format = o.log_format.unwrap_or(LogFormat::Text);
        let limits_explicit = o.limits.is_some();
        let limits = o.limits.as_deref().map_or(Ok(dps_core::limits::Profile::Default), str::parse).map_err(ConfigError)?;
        let limits_azure = o.limits_azure.take().unwrap_or_default().apply()?;
        let regions = region_model(&mut o)?;
        Ok(Config {
            regions,
            measure_hub_latency: o.measure_hub_latency.unwrap_or(false),
            webhook_timeout: std::time::Duration::from_secs(u64::from(in_range(
                "webhook_timeout_secs",
                o.webhook_timeout_secs.unwrap_or(30),
                1..=3600,
                "seconds",
            )?)),
            webhook_retry,
            hub_retry,
            webhook_ca_file: o.webhook_ca_file,
            metrics_token,
            mqtt_port_explicit: o.mqtt_port.is_some(),
            mqtt_port: o.mqtt_port.unwrap_or(DEFAULT_MQTT_PORT),
            amqp_port_explicit: o.amqp_port.is_some(),
            amqp_port: o.amqp_port.unwrap_or(DEFAULT_AMQP_PORT),
            amqp_limits,
            console_port_explicit: o.console_port.is_some(),
            console_port: o.console_port.unwrap_or(DEFAULT_CONSOLE_PORT),
            mqtt_limits,
            http_limits,
            caps,
            write_timeout,
            master_key_explicit: o.master_key_file.is_some(),
            master_key_source: o.master_key_source.unwrap_or_default(),
            keyring_preferred: false,
            master_key_file: o.master_key_file.unwrap_or_else(|| data_dir.join("master.key")),
            master_key: None,
            shared_tls: shared_tls(o.ca_file, o.tls_cert_file, o.tls_key_file)?,
            database_url,
            data_dir,
            bind,
            host,
            extra_host_names: o.extra_host_names.unwrap_or_default().into_iter().filter(|h| !h.is_empty()).collect(),
            https_port: o.https_port.unwrap_or(DEFAULT_HTTPS_PORT),
            retry_after_secs,
            max_registrations_in_flight,
            default_allocation_policy,
            operation_retention_hours: in_range("operation_retention_hours", o.operation_retention_hours.unwrap_or(24), 1..=8760, "hours")?,
            limits,
            limits_explicit,
            limits_azure,
            generic_device_errors: o.generic_device_errors.unwrap_or(false),
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
        let c = Config::load(PathBuf::from("/nonexistent"), None, &env(&[]), Overrides::default()).expect("loads");
        assert_eq!(c.https_port, 443);
        assert_eq!(c.host, "127.0.0.1");
        assert_eq!(c.retry_after_secs, 2);
        assert_eq!(c.default_allocation_policy, AllocationPolicy::Hashed);
        assert_eq!(c.master_key_file, PathBuf::from("/nonexistent/master.key"));
        assert!(c.host_names().contains(&"localhost".to_owned()));
    }

    #[test]
    fn layers_apply_in_order_file_env_flags() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dps.toml");
        std::fs::write(&file, "host = \"file.example\"\nhttps_port = 8443\nretry_after_secs = 3\nextra_host_names = [\"a.example\"]\n")
            .expect("writes");
        let e = env(&[("DPS_HTTPS_PORT", "9443"), ("DPS_RETRY_AFTER_SECS", "4")]);
        let flags = Overrides { retry_after_secs: Some(5), ..Default::default() };
        let c = Config::load(dir.path().into(), Some(&file), &e, flags).expect("loads");
        assert_eq!((c.host.as_str(), c.https_port, c.retry_after_secs), ("file.example", 9443, 5));
        assert!(c.host_names().contains(&"a.example".to_owned()));
    }

    #[test]
    fn data_dir_config_toml_is_read_when_present() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join("config.toml"), "default_allocation_policy = \"static\"\n").expect("writes");
        let c = Config::load(dir.path().into(), None, &env(&[]), Overrides::default()).expect("loads");
        assert_eq!(c.default_allocation_policy, AllocationPolicy::Static);
    }

    #[test]
    fn regions_and_webhook_schedules_load_from_every_layer() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dps.toml");
        let toml = "service_region = \"lab\"\nwebhook_retries = 3\n[[network_regions]]\nnetwork = \"10.1.0.0/16\"\nregion = \"factory\"\n[[region_latency]]\nfrom = \"factory\"\nto = \"lab\"\nms = 30\n";
        std::fs::write(&file, toml).expect("writes");
        let e = env(&[("DPS_NETWORK_REGIONS", "127.0.0.2/32=eu, 127.0.0.3/32=us"), ("DPS_WEBHOOK_RETRY_INITIAL_MS", "50")]);
        let c = Config::load(dir.path().into(), Some(&file), &e, Overrides::default()).expect("loads");
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
        let c = Config::load(PathBuf::from("/nonexistent"), None, &env(&[]), Overrides::default()).expect("loads");
        assert_eq!((c.limits, c.limits_explicit), (Profile::Default, false), "the default profile does not throttle");
        assert_eq!(c.limits_azure, dps_core::limits::AzureLimits::default());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("dps.toml");
        std::fs::write(&file, "limits = \"azure\"\n[limits_azure]\npolls_per_window = 2\npoll_window_secs = 4\nmax_bulk_items = 3\n")
            .expect("writes");
        let e = env(&[("DPS_LIMITS_AZURE_POLL_WINDOW_SECS", "6"), ("DPS_LIMITS_AZURE_REGISTRATIONS_PER_WINDOW", "7")]);
        let c = Config::load(dir.path().into(), Some(&file), &e, Overrides::default()).expect("loads");
        assert_eq!((c.limits, c.limits_explicit), (Profile::Azure, true));
        let a = c.limits_azure;
        assert_eq!((a.polls_per_window, a.poll_window_secs, a.max_bulk_items, a.registrations_per_window), (2, 6, 3, 7));
        assert_eq!(a.max_enrollment_groups, 100, "unset numbers keep Azure's");
        let flags = Overrides { limits: Some("default".into()), ..Default::default() };
        let c = Config::load(dir.path().into(), Some(&file), &env(&[("DPS_LIMITS", "azure")]), flags).expect("loads");
        assert_eq!(c.limits, Profile::Default, "flags win");
    }

    #[test]
    fn the_environment_layer_reads_each_settings_variable_from_the_given_map() {
        let e = env(&[
            ("DPS_EXTRA_HOST_NAMES", "a.example, b.example,"),
            ("DPS_MEASURE_HUB_LATENCY", "false"),
            ("DPS_MASTER_KEY_FILE", "/keys/master.key"),
            ("DPS_LIMITS", "Azure"),
            ("DPS_LIMITS_AZURE_MAX_LINKED_HUBS", "3"),
            ("DPS_HOST", ""),
            ("DPS_NOT_A_SETTING", "1"),
        ]);
        let o = Overrides::from_env(&e).expect("from env");
        assert_eq!(o.extra_host_names, Some(vec!["a.example".to_owned(), "b.example".to_owned(), String::new()]));
        assert_eq!(o.measure_hub_latency, Some(false));
        assert_eq!(o.master_key_file, Some(PathBuf::from("/keys/master.key")));
        assert_eq!(o.limits.as_deref(), Some("Azure"));
        assert_eq!(o.limits_azure.and_then(|a| a.max_linked_hubs), Some(3));
        assert_eq!(o.host, None, "an empty variable is unset");
        let c = Config::load(PathBuf::from("/nonexistent"), None, &e, Overrides::default()).expect("loads");
        assert_eq!(c.extra_host_names, ["a.example", "b.example"]);
        assert_eq!(c.limits, dps_core::limits::Profile::Azure, "read in any case, as before");
        assert_eq!(Overrides::from_env(&env(&[])).expect("from env"), Overrides::default());
        let err = Overrides::from_env(&env(&[("DPS_HTTPS_PORT", "https")])).err().unwrap_or_else(|| panic!("accepted"));
        assert!(err.0.contains("DPS_HTTPS_PORT=https"), "{err}");
        let err = Overrides::from_env(&env(&[("DPS_LOG_FORMAT", "xml")])).err().unwrap_or_else(|| panic!("accepted"));
        assert!(err.0.contains("DPS_LOG_FORMAT=xml"), "{err}");
    }

    #[test]
    fn bad_samples_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().expect("a temporary directory");
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
            ("metrics_token = \"short\"\n", "metrics_token"),
            ("metrics_token = \"has a space in it, 16+\"\n", "metrics_token"),
            ("mqtt_max_keep_alive_secs = 0\n", "mqtt_max_keep_alive_secs 0 is outside 1–65535"),
            ("http_idle_timeout_secs = 0\n", "http_idle_timeout_secs"),
            ("http_body_budget_bytes = 10\n", "http_body_budget_bytes"),
            ("write_timeout_secs = 100000\n", "write_timeout_secs"),
            ("max_connections_per_ip = 0\n", "max_connections_per_ip"),
            ("amqp_frame_timeout_secs = 0\n", "amqp_frame_timeout_secs"),
        ];
        for (text, needle) in cases {
            let f = dir.path().join("bad.toml");
            std::fs::write(&f, text).expect("writes");
            let err = Config::load(dir.path().into(), Some(&f), &env(&[]), Overrides::default())
                .err()
                .unwrap_or_else(|| panic!("{text} accepted"));
            assert!(err.0.contains(needle), "{text}: {err}");
        }
        let err = Config::load(dir.path().into(), None, &env(&[("DPS_HTTPS_PORT", "https")]), Overrides::default());
        assert!(err.is_err());
        assert!(Config::load(dir.path().into(), Some(&dir.path().join("missing.toml")), &env(&[]), Overrides::default()).is_err());
    }

    /// `database_url` picks PostgreSQL; its password shows nowhere (not in `Debug`, not in an error).
    #[test]
    fn database_url_selects_postgres_and_its_password_is_never_shown() {
        let load = |vars: &[(&str, &str)]| Config::load(PathBuf::from("/nonexistent"), None, &env(vars), Overrides::default());
        let c = load(&[("DPS_DATABASE_URL", "postgres://dps:hunter2@db.example/dps")]).expect("loads");
        assert_eq!(c.database_url.as_ref().map(|u| u.expose()), Some("postgres://dps:hunter2@db.example/dps"));
        assert!(!format!("{c:?}").contains("hunter2"), "Debug shows the password");
        assert!(load(&[]).expect("loads").database_url.is_none(), "SQLite by default");
        assert!(load(&[("DPS_DATABASE_URL", " ")]).expect("loads").database_url.is_none(), "blank is unset");
        let err = load(&[("DPS_DATABASE_URL", "mysql://dps:hunter2@db/dps")]).err().unwrap_or_else(|| panic!("accepted"));
        assert!(err.0.contains("database_url") && err.0.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.0.contains("hunter2"), "the error shows the password: {err}");
    }

    /// Every numeric setting has a range; a value outside it — in the file, the environment or a flag — is a
    /// clear error naming the setting and its range, never a panic later (huge retention hours, retry delays).
    #[test]
    fn out_of_range_numbers_are_refused_from_every_layer() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cases = [
            ("operation_retention_hours", "DPS_OPERATION_RETENTION_HOURS", "4294967295", "outside 1–8760 hours"),
            ("operation_retention_hours", "DPS_OPERATION_RETENTION_HOURS", "0", "outside 1–8760 hours"),
            ("webhook_timeout_secs", "DPS_WEBHOOK_TIMEOUT_SECS", "0", "outside 1–3600 seconds"),
            ("webhook_timeout_secs", "DPS_WEBHOOK_TIMEOUT_SECS", "4294967295", "outside 1–3600 seconds"),
            ("webhook_retry_initial_ms", "DPS_WEBHOOK_RETRY_INITIAL_MS", "9223372036854775807", "outside 0–600000 ms"),
            ("webhook_retry_increment_ms", "DPS_WEBHOOK_RETRY_INCREMENT_MS", "600001", "outside 0–600000 ms"),
            ("default_latency_ms", "DPS_DEFAULT_LATENCY_MS", "4294967295", "outside 0–600000 ms"),
            ("mqtt_connect_timeout_secs", "DPS_MQTT_CONNECT_TIMEOUT_SECS", "86401", "outside 1–86400 seconds"),
            ("amqp_idle_timeout_secs", "DPS_AMQP_IDLE_TIMEOUT_SECS", "0", "outside 1–3600"),
            ("amqp_max_connections", "DPS_AMQP_MAX_CONNECTIONS", "0", "outside 1–1000000"),
            ("mqtt_max_packet_bytes", "DPS_MQTT_MAX_PACKET_BYTES", "9223372036854775807", "outside 1 KiB–16 MiB"),
            ("webhook_retries", "DPS_WEBHOOK_RETRIES", "101", "above 100"),
            ("hub_retries", "DPS_HUB_RETRIES", "21", "above 20"),
        ];
        for (key, var, value, needle) in cases {
            let f = dir.path().join("range.toml");
            std::fs::write(&f, format!("{key} = {value}\n")).expect("writes");
            let from_file = Config::load(dir.path().into(), Some(&f), &env(&[]), Overrides::default());
            let from_env = Config::load(dir.path().into(), None, &env(&[(var, value)]), Overrides::default());
            let flag = format!("--{}={value}", key.replace('_', "-"));
            let flags = {
                use clap::{Args, FromArgMatches};
                let m = Overrides::augment_args(clap::Command::new("serve").no_binary_name(true))
                    .mut_args(|a| a.env(None::<&str>))
                    .try_get_matches_from([flag.as_str()])
                    .unwrap_or_else(|e| panic!("{flag}: {e}"));
                Overrides::from_arg_matches(&m).unwrap_or_else(|e| panic!("{flag}: {e}"))
            };
            let from_flag = Config::load(dir.path().into(), None, &env(&[]), flags);
            for (layer, result) in [("file", from_file), ("environment", from_env), ("flag", from_flag)] {
                let err = result.err().unwrap_or_else(|| panic!("{key} = {value} from the {layer} was accepted"));
                assert!(err.0.contains(key) && err.0.contains(needle), "{key} = {value} ({layer}): {err}");
            }
        }
    }
}
