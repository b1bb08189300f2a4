//! `dps init`: a cluster's shared material, made once (issue #15 item 3): the master key, the CA devices trust and
//! the server certificate for the cluster's host names (`--host`, `--extra-host-name`, as `dps serve` takes them).
//! Every instance then loads these files (`master_key_file`, `ca_file`, `tls_cert_file`, `tls_key_file`).

use std::path::PathBuf;

use anyhow::Result;
use dps_service::config::{Config, Overrides};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Directory for the cluster's material (refused when it already holds a master key).
    #[arg(long, env = "DPS_DATA_DIR")]
    data_dir: PathBuf,
    /// The name devices use for the load balancer (also in the certificate).
    #[arg(long, env = "DPS_HOST")]
    host: Option<String>,
    /// More names (or addresses) for the certificate (repeatable).
    #[arg(long = "extra-host-name", value_delimiter = ',')]
    extra_host_names: Vec<String>,
}

pub fn run(a: InitArgs) -> Result<()> {
    let flags = Overrides { host: a.host, extra_host_names: Some(a.extra_host_names), ..Default::default() };
    let config = Config::load(a.data_dir.clone(), None, &Default::default(), flags)?;
    let names = config.host_names();
    let f = dps_service::material::init(&a.data_dir, &names)?;
    println!("Made the cluster's material in {} for {}.", a.data_dir.display(), names.join(", "));
    println!("Give every instance these files (same paths or copies), e.g. in its config.toml:");
    println!("  master_key_file = {:?}", f.master_key.display().to_string());
    println!("  ca_file         = {:?}", f.ca.display().to_string());
    println!("  tls_cert_file   = {:?}", f.cert.display().to_string());
    println!("  tls_key_file    = {:?}", f.key.display().to_string());
    println!("Keep ca.key offline: instances do not need it.");
    Ok(())
}
