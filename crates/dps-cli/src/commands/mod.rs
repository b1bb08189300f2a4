//! One file per command group.

pub mod admin;
pub mod bench;
pub mod ca;
pub mod cert;
pub mod credential_policy;
pub mod device;
mod documents;
pub mod enrollment;
pub mod group;
pub mod hub;
pub mod import;
pub mod init;
pub mod keys;
pub mod registration;
pub mod serve;
pub mod simulate;
pub mod simulate_devices;
#[cfg(feature = "tpm")]
pub mod tpm;

use anyhow::Result;

use crate::client::{parse_connection_string, read_endpoint, Target};
use crate::output::{print, Output};

pub fn connection_info(target: &Target, field: Option<&str>, out: Output) -> Result<()> {
    let data_dir = target.data_dir.clone().unwrap_or_else(dps_service::config::default_data_dir);
    match &target.connection_string {
        Some(cs) => {
            let cs = parse_connection_string(cs)?;
            print(
                out,
                &serde_json::json!({ "hostName": cs.host, "sharedAccessKeyName": cs.key_name }),
                &[("HOST", "/hostName"), ("POLICY", "/sharedAccessKeyName")],
            );
        }
        None => {
            let info = read_endpoint(&data_dir)?;
            if let Some(f) = field {
                let v = serde_json::to_value(&info)?;
                let ptr = format!("/{}", f.replace('.', "/"));
                match v.pointer(&ptr) {
                    Some(serde_json::Value::String(s)) => println!("{s}"),
                    Some(other) => println!("{other}"),
                    None => anyhow::bail!("endpoint.json has no member '{f}'"),
                }
                return Ok(());
            }
            print(out, &info, &[("ID SCOPE", "/idScope"), ("HOST", "/host"), ("HTTPS", "/ports/https"), ("CA", "/caCertificate")]);
        }
    }
    Ok(())
}

/// Parses a JSON argument (`--initial-twin-tags '{"a":1}'`).
pub fn json_arg(name: &str, v: &str) -> Result<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(v) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => anyhow::bail!("{name} must be a JSON object, e.g. '{{\"site\":\"b12\"}}'"),
    }
}
