//! The embedded service: configured and started exactly as `dps serve` does (crates/dps-cli/src/commands/serve.rs),
//! without flags: data directory from `DPS_DATA_DIR` or the default, `DPS_CONFIG` or `<data-dir>/config.toml`,
//! then the `DPS_*` environment — except that a new data directory's master key goes to the OS keyring when one
//! answers (`Config::keyring_preferred`; a key file stays where there is one). If it cannot start (say a port is taken), the window still opens and says why.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dps_proto::EndpointInfo;
use dps_service::config::{default_data_dir, Config, Overrides};
use dps_service::local::LocalApi;
use tokio::sync::watch;

use crate::commands::preferences::Preferences;
use crate::error::CommandError;

/// What the console can ask about the embedded service.
#[derive(Debug, Clone)]
pub enum Status {
    Starting,
    Running(EndpointInfo),
    Failed(String),
}

impl Status {
    /// One line for the tray menu and tooltip.
    pub fn summary(&self) -> String {
        match self {
            Status::Starting => "Service starting…".into(),
            Status::Running(i) => format!(
                "Service running — scope {}, HTTPS {}, MQTT {}",
                i.id_scope,
                i.ports.https.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                i.ports.mqtt.map(|p| p.to_string()).unwrap_or_else(|| "-".into())
            ),
            Status::Failed(m) => format!("Service stopped: {m}"),
        }
    }
}

pub struct EmbeddedService {
    data_dir: PathBuf,
    status: watch::Sender<Status>,
    running: Mutex<Option<dps_service::Running>>,
    api: Mutex<Option<Arc<LocalApi>>>,
    preferences: Mutex<Preferences>,
}

fn env() -> HashMap<String, String> {
    std::env::vars().collect()
}

async fn start_service(data_dir: PathBuf) -> anyhow::Result<dps_service::Running> {
    let env = env();
    let config_file = env.get("DPS_CONFIG").map(PathBuf::from);
    let mut config = Config::load(data_dir, config_file.as_deref(), &env, Overrides::default())?;
    // A new data directory's master key goes to the OS keyring when one answers (`master_key_source`).
    config.keyring_preferred = true;
    dps_service::diagnostics::init_logging(&config);
    let listeners = dps_service::bind(&config)?;
    dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await
}

impl EmbeddedService {
    pub fn new() -> Self {
        let data_dir = env().get("DPS_DATA_DIR").map(PathBuf::from).unwrap_or_else(default_data_dir);
        let preferences = std::fs::read(data_dir.join("desktop.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Preferences>(&b).ok())
            .unwrap_or_default();
        Self {
            data_dir,
            status: watch::channel(Status::Starting).0,
            running: Mutex::new(None),
            api: Mutex::new(None),
            preferences: Mutex::new(preferences),
        }
    }

    pub async fn start(&self) {
        let status = match start_service(self.data_dir.clone()).await {
            Ok(running) => {
                let info = running.info.clone();
                tracing::info!(id_scope = %info.id_scope, host = %info.host, "embedded service running");
                if let Ok(mut api) = self.api.lock() {
                    *api = Some(Arc::new(running.local_api()));
                }
                if let Ok(mut slot) = self.running.lock() {
                    *slot = Some(running);
                }
                Status::Running(info)
            }
            Err(e) => {
                let message = format!("{e:#}");
                tracing::error!(error = %message, "the embedded service did not start");
                eprintln!("DPS Console: the service did not start: {message}");
                Status::Failed(message)
            }
        };
        self.status.send_replace(status);
    }

    /// Follows the status (the tray).
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The status once start-up has finished (waits while it is starting).
    pub async fn settled(&self) -> Status {
        let mut rx = self.status.subscribe();
        let settled = match rx.wait_for(|s| !matches!(s, Status::Starting)).await {
            Ok(s) => s.clone(),
            Err(_) => Status::Failed("the service task ended".into()),
        };
        settled
    }

    /// The in-process service API, once the service runs.
    pub async fn api(&self) -> Result<Arc<LocalApi>, CommandError> {
        match self.settled().await {
            Status::Running(_) => {
                self.api.lock().ok().and_then(|a| a.clone()).ok_or_else(|| CommandError::service_unavailable("the service has stopped"))
            }
            Status::Failed(m) => Err(CommandError::service_unavailable(m)),
            Status::Starting => Err(CommandError::service_unavailable("the service is still starting")),
        }
    }

    pub fn preferences(&self) -> Preferences {
        self.preferences.lock().map(|p| p.clone()).unwrap_or_default()
    }

    pub fn set_preferences(&self, p: Preferences) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.data_dir)?;
        let tmp = self.data_dir.join("desktop.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&p).unwrap_or_default())?;
        std::fs::rename(&tmp, self.data_dir.join("desktop.json"))?;
        if let Ok(mut slot) = self.preferences.lock() {
            *slot = p;
        }
        Ok(())
    }

    /// Stops accepting, lets open requests finish, closes the store.
    pub async fn stop(&self) {
        if let Ok(mut api) = self.api.lock() {
            *api = None;
        }
        let running = self.running.lock().ok().and_then(|mut slot| slot.take());
        if let Some(running) = running {
            running.shutdown().await;
        }
    }
}
