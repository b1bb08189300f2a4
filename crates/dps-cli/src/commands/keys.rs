//! `dps keys`: the master key every secret at rest is sealed with (README "Master key").
//! - `rotate`: asks the running service to rotate it (`POST /service/keys/rotate`): devices keep registering;
//!   every secret is re-sealed with a new key, then the old key file is replaced. Safe to run again after an
//!   interruption (it finishes with the same new key).
//! - `generate`: prints a new random key (base64), for `DPS_MASTER_KEY` or a key file.
//! - `reset --yes`: after the key was lost, drops what it sealed and writes a new key (service stopped).

use anyhow::{bail, Result};
use reqwest::Method;

use crate::client::{Client, Target};
use crate::output::{print, Output};

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Rotate the master key of the running service: re-seal every secret with a new key, then retire the old.
    Rotate,
    /// Print a new random master key (base64 of 32 bytes).
    Generate,
    /// The master key is lost: drop every secret sealed with it (symmetric-key enrollments and groups, access
    /// policies, hub credentials; enrollments without secrets stay) and write a new key. The service must be
    /// stopped; the database is the data directory's, or DPS_DATABASE_URL / database_url in config.toml.
    Reset {
        /// Confirms that the secrets are to be dropped.
        #[arg(long)]
        yes: bool,
    },
}

pub async fn run(cmd: KeysCommand, target: &Target, out: Output) -> Result<()> {
    match cmd {
        KeysCommand::Rotate => {
            let (_, _, body) = Client::new(target)?.send::<()>(Method::POST, "/service/keys/rotate", None, &[]).await?;
            let report: serde_json::Value = serde_json::from_slice(&body)?;
            print(
                out,
                &report,
                &[("PREVIOUS KEY", "/previousKeyId"), ("KEY", "/keyId"), ("RESEALED", "/resealed"), ("UNREADABLE", "/unreadable")],
            );
        }
        KeysCommand::Generate => println!("{}", dps_crypto::MasterKey::generate().1),
        KeysCommand::Reset { yes } => reset(target, yes, out).await?,
    }
    Ok(())
}

async fn reset(target: &Target, yes: bool, out: Output) -> Result<()> {
    if !yes {
        bail!("this drops every secret sealed with the lost master key (symmetric-key enrollments and groups, access policies, hub credentials): run again with --yes");
    }
    let data_dir = target.data_dir.clone().unwrap_or_else(dps_service::config::default_data_dir);
    let env: std::collections::HashMap<String, String> = std::env::vars().collect();
    let config = dps_service::config::Config::load(data_dir, None, &env, Default::default())?;
    let changed = dps_service::reset_master_key(&config).await?;
    print(
        out,
        &serde_json::json!({ "changed": changed, "masterKeyFile": config.master_key_file }),
        &[("CHANGED", "/changed"), ("KEY FILE", "/masterKeyFile")],
    );
    eprintln!("a new master key was written; start the service: a new owner connection string is in endpoint.json");
    Ok(())
}
