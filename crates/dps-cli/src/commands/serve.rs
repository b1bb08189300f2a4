//! `dps serve`: the headless service. Flags are the last configuration layer; they are declared with the
//! settings themselves (`dps_service::config::Overrides`).

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
    /// Every setting: also a TOML key and a DPS_* variable (README "Configuration").
    #[command(flatten)]
    settings: Overrides,
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
    let config = Config::load(data_dir, a.config.as_deref(), &env, a.settings)?;
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
    // The owner key is printed once, when it is made; afterwards it stays in endpoint.json (0600), where
    // `dps` commands read it.
    if running.owner_key_created {
        println!("  Connection string:   {}  (shown once; also in endpoint.json)", i.service_connection_string);
    } else {
        println!("  Connection string:   in the endpoint file below (owner only; `dps` commands read it there)");
    }
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
            "                       (shown once; also in {} until it is changed: dps admin set-password)",
            config.data_dir.join("initial-admin-password").display()
        );
    }
    println!("Stop with Ctrl+C.");
    shutdown_signal().await;
    println!("Stopping…");
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use clap::{Args, CommandFactory};
    use dps_service::config::AzureLimitsOverrides;

    /// `dps serve`'s arguments, as the settings' declarations make them.
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: super::ServeArgs,
    }

    /// The first `code` of a table cell, or `—`.
    fn code(cell: &str) -> String {
        cell.split('`').nth(1).unwrap_or("—").to_owned()
    }

    /// The README's settings table: TOML key → (variable, flag).
    fn readme_settings(readme: &str) -> BTreeMap<String, (String, String)> {
        let mut rows = BTreeMap::new();
        let table = readme.split("| TOML key | environment | flag | default | meaning |").nth(1).unwrap_or_default();
        for line in table.lines().skip(2).take_while(|l| l.starts_with('|')) {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let key = match code(cells[0]).as_str() {
                "—" => code(cells[2]).trim_start_matches("--").replace('-', "_"),
                k => k.to_owned(),
            };
            rows.insert(key, (code(cells[1]), code(cells[2])));
        }
        rows
    }

    /// Every setting `dps serve` declares has its row in the README's table with its variable and flag, and
    /// every row is a declared setting; the `azure` profile's numbers follow one naming rule and are listed in
    /// the README's "Azure limits profile" table.
    #[test]
    fn the_readme_settings_table_matches_the_declarations() {
        let readme = include_str!("../../../../README.md");
        let mut rows = readme_settings(readme);
        assert!(rows.len() > 20, "the README's settings table was not found");
        let azure: Vec<String> =
            AzureLimitsOverrides::augment_args(clap::Command::new("azure")).get_arguments().map(|a| a.get_id().to_string()).collect();
        let limits_section = readme.split("## Azure limits profile").nth(1).unwrap_or_default();
        for arg in Serve::command().get_arguments() {
            let id = arg.get_id().to_string();
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or("—").to_owned();
            let flag = format!("--{}", arg.get_long().unwrap_or_default());
            if azure.contains(&id) {
                assert_eq!(env, format!("DPS_LIMITS_AZURE_{}", id.to_uppercase()), "{id}");
                assert_eq!(flag, format!("--limits-azure-{}", id.replace('_', "-")), "{id}");
                assert!(limits_section.contains(&format!("`{id}`")), "[limits_azure] {id} is not in the README's limits table");
                continue;
            }
            if id == "help" {
                continue;
            }
            assert_eq!(env, format!("DPS_{}", id.to_uppercase()), "{id}: a setting's variable is its name in capitals");
            let row = rows.remove(&id).unwrap_or_else(|| panic!("{id} ({env}, {flag}) has no row in the README's settings table"));
            assert_eq!(row, (env, flag), "{id}: the README's row");
        }
        rows.remove("[limits_azure]");
        assert!(rows.is_empty(), "the README lists settings `dps serve` does not declare: {rows:?}");
    }

    /// Settings' flags as `dps serve` accepted them before they were declared with the settings.
    #[test]
    fn serve_flags_parse_as_before() {
        use clap::Parser;
        let s = Serve::try_parse_from([
            "serve",
            "--https-port",
            "0",
            "--extra-host-name",
            "a.example",
            "--extra-host-name",
            "b.example",
            "--network-region",
            "10.1.0.0/16=factory",
            "--region-latency",
            "factory:lab=30",
            "--measure-hub-latency",
            "--limits",
            "azure",
            "--log-format",
            "json",
            "--limits-azure-polls-per-window",
            "2",
        ])
        .expect("try parse from");
        let o = s.args.settings;
        assert_eq!(o.https_port, Some(0));
        assert_eq!(o.extra_host_names, Some(vec!["a.example".to_owned(), "b.example".to_owned()]));
        assert_eq!(o.network_regions.map(|n| n.len()), Some(1));
        assert_eq!(o.region_latency.map(|r| r[0].ms), Some(30));
        assert_eq!(o.measure_hub_latency, Some(true));
        assert_eq!((o.limits.as_deref(), o.log_format), (Some("azure"), Some(dps_service::config::LogFormat::Json)));
        assert_eq!(o.limits_azure.and_then(|a| a.polls_per_window), Some(2));
        assert!(Serve::try_parse_from(["serve", "--log-format", "xml"]).is_err(), "a fixed set of values");
        assert!(Serve::try_parse_from(["serve", "--limits", "strict"]).is_err(), "a fixed set of values");
    }
}
