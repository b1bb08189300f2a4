//! The DPS Console service: transports, configuration, TLS material, wiring.
//!
//! Start-up follows one path for the CLI, the desktop shell and tests:
//! [`bind`] the listeners (port 0 allowed), then [`start`] the service on them with a clock; the returned
//! [`Running`] stops on [`Running::shutdown`]. [`start`] prepares the data directory (master key, CA,
//! server certificate, database, ID scope, the `provisioningserviceowner` policy), resumes registrations
//! a previous run left in progress, and writes `<data-dir>/endpoint.json`.

pub mod admin;
pub mod amqp;
pub mod app;
pub mod bounds;
pub mod config;
pub mod device_body;
pub mod diagnostics;
pub mod https;
pub mod keys;
pub mod local;
pub mod lock;
pub mod material;
pub mod mqtt;
pub mod os_keyring;
mod start;
pub mod tls;
pub mod webhook;
pub mod websocket;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use dps_core::model::{AccessPolicy, Right};
use dps_core::ports::{HubStore, PolicyStore};
use dps_core::Clock;
use dps_crypto::{generate_key, Secret};
use dps_proto::{EndpointInfo, IdScope, LinkedHub};
use dps_store::{Settings, Store};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::info;

pub use config::Config;

/// The policy with every right, created on first start (§5.1).
pub const OWNER_POLICY: &str = "provisioningserviceowner";
/// The database's file in the data directory.
pub const DATABASE_FILE: &str = "dps.sqlite";
/// The hub linked on first start so that a fresh service can assign devices at once.
pub const DEFAULT_HUB: &str = "local-hub.dps.local";

/// Listeners bound before the service starts (so callers choose ports, including 0).
pub struct Listeners {
    pub https: std::net::TcpListener,
    pub mqtt: std::net::TcpListener,
    pub amqp: std::net::TcpListener,
    /// The browser console (static UI + the service API, same origin).
    pub console: std::net::TcpListener,
}

fn bind_one(addr: SocketAddr, what: &str, flag: &str, env: &str, key: &str) -> Result<std::net::TcpListener> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        let how = format!("choose another port with {flag} N (or {env}, or {key} in config.toml)");
        match e.kind() {
            std::io::ErrorKind::AddrInUse => anyhow!("the {what} port {} on {} is already in use: stop what uses it, or {how}", addr.port(), addr.ip()),
            std::io::ErrorKind::PermissionDenied => anyhow!(
                "binding the {what} port {} needs privileges: run as root, allow it with `sudo setcap cap_net_bind_service=+ep $(command -v dps)`, or {how}",
                addr.port()
            ),
            _ => anyhow!("cannot listen on {addr} for {what}: {e}; {how}"),
        }
    })?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// A listener whose *default* port may be busy (another service, or several instances on one machine): then
/// it falls back to a free port, with a warning — endpoint.json tells clients where it is. A configured port
/// that is busy is an error. (Scripts written before MQTT and the console existed pass only `--https-port`.)
fn bind_with_fallback(
    config: &Config,
    port: u16,
    explicit: bool,
    what: &str,
    flag: &str,
    env: &str,
    key: &str,
) -> Result<std::net::TcpListener> {
    match bind_one(SocketAddr::new(config.bind, port), what, flag, env, key) {
        Ok(l) => Ok(l),
        Err(e) if !explicit => {
            let l = bind_one(SocketAddr::new(config.bind, 0), what, flag, env, key)?;
            let port = l.local_addr().map(|a| a.port()).unwrap_or_default();
            tracing::warn!("{e}; {what} listens on port {port} instead");
            eprintln!("warning: {e}; {what} listens on port {port} instead");
            Ok(l)
        }
        Err(e) => Err(e),
    }
}

/// Binds every listener the configuration asks for.
pub fn bind(config: &Config) -> Result<Listeners> {
    Ok(Listeners {
        https: bind_one(SocketAddr::new(config.bind, config.https_port), "HTTPS", "--https-port", "DPS_HTTPS_PORT", "https_port")?,
        // Devices whose SDK cannot change the port need 8883: the warning says so.
        mqtt: bind_with_fallback(config, config.mqtt_port, config.mqtt_port_explicit, "MQTT", "--mqtt-port", "DPS_MQTT_PORT", "mqtt_port")?,
        amqp: bind_with_fallback(config, config.amqp_port, config.amqp_port_explicit, "AMQP", "--amqp-port", "DPS_AMQP_PORT", "amqp_port")?,
        console: bind_with_fallback(
            config,
            config.console_port,
            config.console_port_explicit,
            "console",
            "--console-port",
            "DPS_CONSOLE_PORT",
            "console_port",
        )?,
    })
}

/// A started service.
pub struct Running {
    pub info: EndpointInfo,
    /// The console's admin password, on the first start only (print it once).
    pub initial_admin_password: Option<String>,
    /// Whether this start created the owner policy: its connection string is printed then only (later it is
    /// read from `endpoint.json`, mode 0600).
    pub owner_key_created: bool,
    pub store: Store,
    app: Arc<app::App>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    /// Held while the service runs: one process per data directory.
    _lock: lock::DataDirLock,
}

impl Running {
    /// The service API in-process, signed in as the console's admin (the desktop shell's window).
    pub fn local_api(&self) -> local::LocalApi {
        local::LocalApi::new(Arc::clone(&self.app))
    }

    /// The shared state every transport serves from: the fuzz targets (`dps-fuzz`) drive the real handlers
    /// (`https::handle`, `mqtt::session::run`, `amqp::run`) over in-memory streams with it.
    pub fn app(&self) -> Arc<app::App> {
        Arc::clone(&self.app)
    }

    /// Stops accepting, lets open requests finish, closes the store.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        self.store.close().await;
    }
}

async fn setting_or_init(store: &Store, key: &str, init: impl FnOnce() -> String) -> Result<String> {
    if let Some(v) = store.get_setting(key).await? {
        return Ok(v);
    }
    let v = init();
    store.put_setting(key, &v).await?;
    Ok(v)
}

/// Creates on first start what the service needs; returns the ID scope, the owner policy's key and whether
/// the policy was made now.
async fn bootstrap(store: &Store) -> Result<(IdScope, Secret, bool)> {
    let scope = setting_or_init(store, "id_scope", || IdScope::from_bytes(rand::random::<[u8; 4]>()).to_string()).await?;
    let scope = IdScope::try_from(scope).map_err(|e| anyhow!("stored ID scope: {e}"))?;
    let policies = store.list_policies().await?;
    let (owner, created) = match policies.into_iter().find(|p| p.name.eq_ignore_ascii_case(OWNER_POLICY)) {
        Some(p) => (p, false),
        None => {
            let p = AccessPolicy {
                name: OWNER_POLICY.into(),
                primary_key: Secret::new(generate_key()),
                secondary_key: Secret::new(generate_key()),
                rights: Right::ALL.to_vec(),
            };
            store.put_policy(p.clone()).await?;
            (p, true)
        }
    };
    if store.get_setting("default_hub_linked").await?.is_none() {
        if store.list_hubs().await?.is_empty() {
            store
                .put_hub(LinkedHub {
                    host_name: DEFAULT_HUB.into(),
                    allocation_weight: 1,
                    apply_allocation_policy: true,
                    region: None,
                    connector: "builtin".into(),
                    ..Default::default()
                })
                .await?;
        }
        store.put_setting("default_hub_linked", "true").await?;
    }
    Ok((scope, owner.primary_key, created))
}

/// The console's admin password: made at first start, written to `initial-admin-password` (0600), stored
/// hashed. Returns it when it was just made (to be printed once). A password file that no longer matches
/// (the password was changed before changes removed it) is removed.
async fn bootstrap_admin(store: &Store, data_dir: &Path) -> Result<Option<String>> {
    let file = data_dir.join(admin::INITIAL_PASSWORD_FILE);
    if let Some(hash) = store.get_setting("admin_password_hash").await? {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if !admin::PasswordWork::default().verify(text.trim(), &hash).await.map_err(|e| anyhow!("{e}"))? {
                std::fs::remove_file(&file).with_context(|| format!("cannot remove the stale {}", file.display()))?;
            }
        }
        return Ok(None);
    }
    let password = admin::generate_password();
    let hash = admin::hash_password(&password).map_err(|e| anyhow!("{e}"))?;
    material::write_private(&file, format!("{password}\n").as_bytes())?;
    store.put_setting("admin_password_hash", &hash).await?;
    Ok(Some(password))
}

/// `HostName=…` of the service connection string: the host, with `:port` unless it is 443.
pub fn host_with_port(host: &str, port: u16) -> String {
    let h = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    if port == 443 {
        h
    } else {
        format!("{h}:{port}")
    }
}

/// Writes `endpoint.json` (atomically: readers never see half a file; mode 0600: it holds the owner key).
fn write_endpoint(dir: &Path, info: &EndpointInfo) -> Result<()> {
    material::write_private(&dir.join("endpoint.json"), &serde_json::to_vec_pretty(info)?).context("cannot write endpoint.json")
}

/// The settings key of the limits profile the console chose last.
pub const LIMITS_SETTING: &str = "limits_profile";

/// The limits profile at start: the configured one when a layer sets it, else the one the console chose last
/// (kept in the store), else `default`.
async fn start_profile(config: &Config, store: &Store) -> dps_core::limits::Profile {
    use dps_store::Settings;
    if config.limits_explicit {
        return config.limits;
    }
    match store.get_setting(LIMITS_SETTING).await {
        Ok(Some(p)) => p.parse().unwrap_or(config.limits),
        _ => config.limits,
    }
}

/// The store the configuration names: PostgreSQL at `database_url`, else SQLite in the data directory. The
/// log and errors show the URL without its password.
async fn open_store(config: &Config, key: Arc<dps_crypto::MasterKey>) -> Result<Store> {
    let url = config.database_url.as_ref().map(|u| u.expose());
    let sqlite = config.data_dir.join(DATABASE_FILE);
    let store = Store::open(url, &sqlite, key).await.with_context(|| match url {
        Some(u) => format!("cannot open the database {}", dps_store::redact_url(u)),
        None => format!("cannot open the database in {}", config.data_dir.display()),
    })?;
    match url {
        Some(u) => info!(backend = store.backend_name(), database = %dps_store::redact_url(u), "store opened"),
        None => info!(backend = store.backend_name(), database = %sqlite.display(), "store opened"),
    }
    Ok(store)
}

/// How often finished operations past their retention are purged: often enough that each run deletes a few
/// minutes of registrations (at 100,000 a minute, 500,000 rows in 1,000 batches of 500), not an hour's worth.
const PURGE_EVERY: Duration = Duration::from_secs(300);

/// The setting holding a fixed text sealed with the master key: proof that the key opens this database.
const MASTER_KEY_CHECK: &str = "master_key_check";

/// Refuses a database whose secrets were sealed with another master key, before anything reads one. With
/// PostgreSQL the database lives outside the data directory, so a data directory that lost its key (a new one
/// is made) or a second data directory pointed at the same database would otherwise start and quarantine every
/// sealed row it met. The first start on a database writes the proof.
async fn check_master_key(store: &Store, key: &dps_crypto::MasterKey, source: &keys::KeySource) -> Result<()> {
    match store.get_setting(MASTER_KEY_CHECK).await? {
        Some(sealed) => key.open(&sealed, MASTER_KEY_CHECK).map(drop).map_err(|_| {
            anyhow!(
                "the master key {source} does not open this database's secrets (they were sealed with another key): use the \
                 master key this database was made with (master_key_file, DPS_MASTER_KEY_FILE or --master-key-file, \
                 master_key_source, or DPS_MASTER_KEY); if that key is lost, `dps keys reset` (README \"Master key\") keeps \
                 what has no secret"
            )
        }),
        None => Ok(store.put_setting(MASTER_KEY_CHECK, &key.seal(b"dps-console", MASTER_KEY_CHECK)).await?),
    }
}

/// `dps keys reset`: after the master key was lost, drops what it sealed (`Store::forget_secrets`: enrollments
/// without secrets survive) and writes a new key where the key is kept (`KeySource::replace`). The service must
/// be stopped (the data directory's lock). Answers the rows changed.
pub async fn reset_master_key(config: &Config) -> Result<u64> {
    if config.master_key.is_some() {
        anyhow::bail!("{} is set: unset it to reset (a new key file is written; put its key in the variable afterwards)", keys::ENV_KEY);
    }
    let _lock = lock::DataDirLock::acquire(&config.data_dir)?;
    let source = keys::choose_source(config)?;
    let (key, text) = dps_crypto::MasterKey::generate();
    let store = open_store(config, Arc::new(key)).await?;
    let changed = store.forget_secrets().await?;
    store.close().await;
    source.replace(&text, &config.data_dir)?;
    tracing::warn!(key = %source, changed, "master key reset: the secrets sealed with the lost key were dropped");
    Ok(changed)
}

/// Starts the service on `listeners`: opens the data directory and the database (`start::open`), builds the
/// engine and the state every listener shares, serves every listener and the background tasks until
/// [`Running::shutdown`].
pub async fn start(config: &Config, listeners: Listeners, clock: Arc<dyn Clock>) -> Result<Running> {
    let lock = lock::DataDirLock::acquire(&config.data_dir)?;
    let opened = start::open(config).await?;
    let info = start::endpoint_info(config, &listeners, &opened)?;
    let (tx, rx) = watch::channel(false);
    // Each listener its own caps; the protocols set their handshake and idle times (`bounds.rs`).
    let caps = ["HTTPS", "console", "MQTT", "AMQP"].map(|what| bounds::ConnectionCaps::new(what, config.caps));
    let app = start::build_app(config, &opened, info.clone(), Arc::clone(&clock), caps.to_vec(), rx.clone()).await?;
    let mut tasks = JoinSet::new();
    start::serve_listeners(&mut tasks, config, listeners, &opened.material, &app, caps, &rx)?;
    start::purge_operations(&mut tasks, opened.store.clone(), config.operation_retention_hours, Arc::clone(&clock), rx.clone());
    if config.measure_hub_latency {
        tasks.spawn(webhook::measure_hub_latency(Arc::new(opened.store.clone()), config.regions.clone(), rx.clone()));
    }
    // SQLite: this process holds the data directory's lock, so every operation still assigning was left by a
    // previous run. PostgreSQL may be shared by live instances: only expired leases are taken over (a sweep).
    if opened.store.is_shared() {
        app.engine.sweep().await.map_err(|e| anyhow!("{e}"))?;
    } else {
        app.engine.resume_pending().await.map_err(|e| anyhow!("{e}"))?;
    }
    tasks.spawn(Arc::clone(&app.engine).run_sweeper(rx));
    write_endpoint(&config.data_dir, &info)?;
    let ports = &info.ports;
    info!(id_scope = %info.id_scope, https = ?ports.https, mqtt = ?ports.mqtt, amqp = ?ports.amqp, console = ?ports.console, "service started");
    let start::Opened { store, initial_admin_password, owner_key_created, .. } = opened;
    Ok(Running { info, initial_admin_password, owner_key_created, store, app, shutdown: tx, tasks, _lock: lock })
}
