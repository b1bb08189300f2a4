//! The steps of [`crate::start`]: open the data directory and the database, build the engine and the state the
//! listeners share, serve the listeners, and the background purge.

use std::sync::Arc;

use anyhow::{Context, Result};
use dps_core::allocation::BuiltinAllocator;
use dps_core::management::Management;
use dps_core::ports::OperationStore;
use dps_core::registration::{EngineConfig, Ports, RegistrationEngine};
use dps_core::Clock;
use dps_crypto::Secret;
use dps_proto::{EndpointInfo, IdScope, Ports as PortMap};
use dps_store::Store;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::info;

use crate::{admin, amqp, app, bounds, https, keys, material, mqtt, tls, webhook, Config, Listeners, OWNER_POLICY};

/// What the data directory and the database give a starting service.
pub(crate) struct Opened {
    pub material: material::Material,
    pub store: Store,
    pub key_source: keys::KeySource,
    pub id_scope: IdScope,
    pub owner_key: Secret,
    pub owner_key_created: bool,
    pub initial_admin_password: Option<String>,
    pub host_names: Vec<String>,
}

/// Loads the master key and the TLS material, opens the store, checks the key against it and makes (first
/// start) or reads the ID scope, the owner policy and the console's admin password.
pub(crate) async fn open(config: &Config) -> Result<Opened> {
    let host_names = config.host_names();
    let keys_config = config.clone();
    let (master_key, key_source) = tokio::task::spawn_blocking(move || keys::load(&keys_config)).await??;
    let material = material::prepare_configured(config, master_key, &host_names)?;
    let store = crate::open_store(config, Arc::clone(&material.master_key)).await?;
    // Instances starting at once on one database take turns here: the first makes, the others read.
    let start_lock = store.lock_start().await.context("cannot take the database's start lock")?;
    crate::check_master_key(&store, &material.master_key, &key_source).await?;
    let (id_scope, owner_key, owner_key_created) = crate::bootstrap(&store).await?;
    let initial_admin_password = crate::bootstrap_admin(&store, &config.data_dir).await?;
    start_lock.release().await;
    Ok(Opened { material, store, key_source, id_scope, owner_key, owner_key_created, initial_admin_password, host_names })
}

/// What `endpoint.json` says: the ID scope, the bound ports, the CA and the owner's connection string.
pub(crate) fn endpoint_info(config: &Config, listeners: &Listeners, opened: &Opened) -> Result<EndpointInfo> {
    let https_port = listeners.https.local_addr()?.port();
    Ok(EndpointInfo {
        id_scope: opened.id_scope.to_string(),
        host: config.host.clone(),
        ports: PortMap {
            https: Some(https_port),
            mqtt: Some(listeners.mqtt.local_addr()?.port()),
            amqp: Some(listeners.amqp.local_addr()?.port()),
            console: Some(listeners.console.local_addr()?.port()),
        },
        ca_certificate: opened.material.ca_path.display().to_string(),
        service_connection_string: format!(
            "HostName={};SharedAccessKeyName={OWNER_POLICY};SharedAccessKey={}",
            crate::host_with_port(&config.host, https_port),
            opened.owner_key.expose()
        ),
    })
}

/// The local CA as an issuer of credential policies, when its key is on this instance.
fn local_ca(material: &crate::material::Material) -> Option<Arc<dps_core::credentials::IssuingCa>> {
    let key = material.ca_key.clone()?;
    match dps_core::credentials::IssuingCa::new(&material.ca_pem, key) {
        Ok(ca) => Some(Arc::new(ca)),
        Err(e) => {
            tracing::warn!(error = %e.message, "the local CA cannot issue device certificates");
            None
        }
    }
}

/// The registration engine and the state every listener shares.
pub(crate) async fn build_app(
    config: &Config,
    opened: &Opened,
    info: EndpointInfo,
    clock: Arc<dyn Clock>,
    connection_caps: Vec<Arc<bounds::ConnectionCaps>>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<app::App>> {
    let shared = Arc::new(opened.store.clone());
    // What registrations read, cached; invalidated by the store's ConfigVersion.
    let config_cache = dps_core::cache::ConfigCache::new(shared.clone());
    let metrics = dps_core::metrics::Metrics::new(Arc::clone(&clock));
    let profile = crate::start_profile(config, &opened.store).await;
    let limits = dps_core::limits::Limits::new(profile, config.limits_azure, Arc::clone(&clock), metrics.clone());
    let connector = Arc::new(dps_hub::Connectors::new(shared.clone(), Arc::clone(&clock)));
    let credentials =
        dps_core::credentials::Credentials { store: shared.clone(), local_ca: local_ca(&opened.material), clock: Arc::clone(&clock) };
    let ports = Ports {
        enrollments: config_cache.clone(),
        certificates: config_cache.clone(),
        registrations: shared.clone(),
        operations: shared.clone(),
        tpm: shared.clone(),
        hubs: config_cache.clone(),
        config_version: shared.clone(),
        connector: connector.clone(),
        allocator: Arc::new(BuiltinAllocator),
        webhook: Arc::new(webhook::HttpWebhook::new(config.webhook_timeout, &opened.material.ca_pem, config.webhook_ca_file.as_deref())?),
        credentials: credentials.clone(),
        metrics: metrics.clone(),
        limits: limits.clone(),
        clock: Arc::clone(&clock),
    };
    let engine = RegistrationEngine::new(ports, engine_config(config, opened.id_scope.clone()));
    Ok(Arc::new_cyclic(|me| app::App {
        engine,
        management: Management {
            enrollments: config_cache.clone(),
            registrations: shared.clone(),
            hubs: config_cache.clone(),
            certificates: config_cache,
            connector,
            limits: limits.clone(),
            clock: Arc::clone(&clock),
        },
        policies: shared.clone(),
        registry: shared.clone(),
        clock,
        host_names: opened.host_names.clone(),
        info,
        mqtt_limits: config.mqtt_limits,
        http_limits: config.http_limits,
        body_budget: https::BodyBudget::new(config.http_limits.body_budget_bytes),
        amqp: amqp::Admission::new(config.amqp_limits),
        metrics,
        limits,
        limits_configured: config.limits_explicit,
        settings: shared.clone(),
        quarantine: shared.clone(),
        sessions: admin::Sessions::new(shared.clone()),
        login_throttle: admin::LoginThrottle::new(admin::ThrottleLimits::default(), shared),
        passwords: Default::default(),
        metrics_token: config.metrics_token.clone(),
        connection_caps,
        data_dir: config.data_dir.clone(),
        credentials,
        webhook_timeout: config.webhook_timeout,
        simulations: Arc::default(),
        scenarios: Arc::default(),
        me: me.clone(),
        rotation: Arc::new(keys::Rotation::new(opened.store.clone(), opened.key_source.clone())),
        shutdown,
    }))
}

fn engine_config(config: &Config, id_scope: IdScope) -> EngineConfig {
    EngineConfig {
        id_scope,
        retry_after_secs: config.retry_after_secs,
        default_policy: config.default_allocation_policy,
        regions: config.regions.clone(),
        webhook_retry: config.webhook_retry,
        hub_retry: config.hub_retry,
        max_in_flight: config.max_registrations_in_flight,
        generic_device_errors: config.generic_device_errors,
        cpu: dps_core::cpu::CpuBudget::default(),
    }
}

/// Serves the device HTTPS, console, MQTT and AMQP listeners (each with its caps, `caps` in that order) until
/// `shutdown`.
pub(crate) fn serve_listeners(
    tasks: &mut JoinSet<()>,
    config: &Config,
    listeners: Listeners,
    material: &material::Material,
    app: &Arc<app::App>,
    caps: [Arc<bounds::ConnectionCaps>; 4],
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let (chain, key) = (&material.server_chain, &material.server_key);
    let https_tls = tls::server_config(chain.clone(), key.clone_key(), &[b"h2", b"http/1.1"])?;
    let mqtt_tls = tls::server_config(chain.clone(), key.clone_key(), &[])?;
    let amqp_tls = tls::server_config(chain.clone(), key.clone_key(), &[])?;
    let [https_caps, console_caps, mqtt_caps, amqp_caps] = caps;
    let bounds = |caps| bounds::ListenerBounds {
        caps,
        handshake_timeout: config.http_limits.handshake_timeout,
        write_timeout: config.write_timeout,
        idle_timeout: None,
    };
    let (app, rx) = (Arc::clone(app), shutdown.clone());
    let https = tokio::net::TcpListener::from_std(listeners.https)?;
    tasks.spawn(https::serve(https, Arc::clone(&https_tls), Arc::clone(&app), https::Surface::Device, bounds(https_caps), rx.clone()));
    let console = tokio::net::TcpListener::from_std(listeners.console)?;
    tasks.spawn(https::serve(console, https_tls, Arc::clone(&app), https::Surface::Console, bounds(console_caps), rx.clone()));
    let mqtt = tokio::net::TcpListener::from_std(listeners.mqtt)?;
    tasks.spawn(mqtt::serve(mqtt, mqtt_tls, Arc::clone(&app), config.mqtt_limits, bounds(mqtt_caps), rx.clone()));
    let amqp = tokio::net::TcpListener::from_std(listeners.amqp)?;
    tasks.spawn(amqp::serve(amqp, amqp_tls, app, bounds(amqp_caps), rx));
    Ok(())
}

/// Purges finished operations older than `retention_hours` every [`crate::PURGE_EVERY`] until `shutdown`.
pub(crate) fn purge_operations(
    tasks: &mut JoinSet<()>,
    store: Store,
    retention_hours: u32,
    clock: Arc<dyn Clock>,
    mut shutdown: watch::Receiver<bool>,
) {
    tasks.spawn(async move {
        loop {
            let now = clock.now();
            let cutoff = now
                .checked_sub_signed(chrono::Duration::hours(i64::from(retention_hours)))
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
            if let Ok(n) = store.purge_operations(cutoff).await {
                if n > 0 {
                    info!(count = n, "purged finished operations");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(crate::PURGE_EVERY) => {}
                _ = shutdown.changed() => break,
            }
        }
    });
}
