//! The embedded service: configured and started exactly as `dps serve` does (crates/dps-cli/src/commands/serve.rs),
//! without flags: data directory from `DPS_DATA_DIR` or the default, `DPS_CONFIG` or `<data-dir>/config.toml`,
//! then the `DPS_*` environment. If it cannot start (say a port is taken), the window still opens and says why.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dps_proto::EndpointInfo;
use dps_service::config::{default_data_dir, Config, Overrides};
use tokio::sync::watch;

/// What the console can ask about the embedded service.
#[derive(Debug, Clone)]
pub enum Status {
    Starting,
    Running(EndpointInfo),
    Failed(String),
}

pub struct EmbeddedService {
    status: watch::Sender<Status>,
    running: Mutex<Option<dps_service::Running>>,
}

async fn start_service() -> anyhow::Result<dps_service::Running> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let data_dir = env.get("DPS_DATA_DIR").map(PathBuf::from).unwrap_or_else(default_data_dir);
    let config_file = env.get("DPS_CONFIG").map(PathBuf::from);
    let config = Config::load(data_dir, config_file.as_deref(), &env, Overrides::default())?;
    dps_service::diagnostics::init_logging(&config);
    let listeners = dps_service::bind(&config)?;
    dps_service::start(&config, listeners, Arc::new(dps_core::SystemClock)).await
}

impl EmbeddedService {
    pub fn new() -> Self {
        Self { status: watch::channel(Status::Starting).0, running: Mutex::new(None) }
    }

    pub async fn start(&self) {
        let status = match start_service().await {
            Ok(running) => {
                let info = running.info.clone();
                tracing::info!(id_scope = %info.id_scope, host = %info.host, "embedded service running");
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

    /// The status once start-up has finished (waits while it is starting).
    pub async fn settled(&self) -> Status {
        let mut rx = self.status.subscribe();
        let settled = match rx.wait_for(|s| !matches!(s, Status::Starting)).await {
            Ok(s) => s.clone(),
            Err(_) => Status::Failed("the service task ended".into()),
        };
        settled
    }

    /// Stops accepting, lets open requests finish, closes the store.
    pub async fn stop(&self) {
        let running = self.running.lock().ok().and_then(|mut slot| slot.take());
        if let Some(running) = running {
            running.shutdown().await;
        }
    }
}
