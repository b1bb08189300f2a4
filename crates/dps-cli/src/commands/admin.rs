//! `dps admin set-password`: the console's admin password (read from standard input, never from a flag,
//! so it stays out of shell history and process lists).

use std::io::BufRead;

use anyhow::{bail, Result};
use reqwest::Method;

use crate::client::{Client, Target};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Set the admin password (first line of standard input, at least 10 characters); console sessions end.
    SetPassword {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::SetPassword { target } => {
            eprintln!("new admin password (one line):");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                bail!("no password given on standard input");
            }
            Client::new(&target)?.send(Method::PUT, "/admin/password", Some(&serde_json::json!({ "password": password })), &[]).await?;
            eprintln!("the admin password was changed; console sessions were signed out");
        }
    }
    Ok(())
}
