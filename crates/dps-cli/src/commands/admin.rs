//! `dps admin set-password`: the console's admin password (the current one and the new one, read from
//! standard input, never from a flag, so they stay out of shell history and process lists).

use std::io::BufRead;

use anyhow::{bail, Result};
use reqwest::Method;

use crate::client::{Client, Target};

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Set the admin password: standard input's first line is the current password, its second the new one (at
    /// least 10 characters); console sessions end.
    SetPassword {
        #[command(flatten)]
        target: Target,
    },
}

pub async fn run(cmd: AdminCommand) -> Result<()> {
    match cmd {
        AdminCommand::SetPassword { target } => {
            eprintln!("current admin password (one line), then the new one (one line):");
            let (current, password) = {
                let mut input = std::io::stdin().lock();
                (read_line(&mut input, "the current password")?, read_line(&mut input, "the new password")?)
            };
            let body = serde_json::json!({ "currentPassword": current, "password": password });
            Client::new(&target)?.send(Method::PUT, "/admin/password", Some(&body), &[]).await?;
            eprintln!("the admin password was changed; console sessions were signed out");
        }
    }
    Ok(())
}

fn read_line(input: &mut impl BufRead, what: &str) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let text = line.trim_end_matches(['\r', '\n']);
    if text.is_empty() {
        bail!("no {what} given on standard input");
    }
    Ok(text.to_owned())
}
