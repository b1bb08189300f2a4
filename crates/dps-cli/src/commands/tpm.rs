//! `dps tpm show|activate|sign`: a device's TPM 2.0 as DPS sees it (§4.4), through a TCTI (`device:/dev/tpmrm0`,
//! `swtpm:host=127.0.0.1,port=2321`, `tabrmd:`). `show` prints what an individual enrollment needs — the EK
//! (base64 TPM2B_PUBLIC) and the registration id derived from it — like Azure's `tpm_device_provision` tool;
//! the EK and SRK are created and persisted first when missing (§4.4.1). `activate` and `sign` are the two
//! TPM operations of a device SDK's security client (§4.4.3), for scripts and other SDKs' tests.

use anyhow::{anyhow, Context, Result};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use dps_device::tpm::TpmDevice;

use crate::output::{print, Output};

/// Which TPM (shared by the TPM commands and `dps device register --attestation tpm`).
#[derive(Debug, Clone, clap::Args)]
pub struct TctiArgs {
    /// The TPM's TCTI, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321
    /// (default: TPM2TOOLS_TCTI, TCTI or TEST_TCTI).
    #[arg(long, env = "DPS_TPM_TCTI")]
    pub tcti: Option<String>,
}

impl TctiArgs {
    pub fn open(&self) -> Result<TpmDevice> {
        match &self.tcti {
            Some(t) => TpmDevice::open(t),
            None => TpmDevice::from_env().context("pass --tcti (e.g. device:/dev/tpmrm0)"),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum TpmCommand {
    /// The endorsement key (base64 TPM2B_PUBLIC, for `dps enrollment create --attestation-type tpm
    /// --endorsement-key`), the storage root key and the registration id.
    Show {
        #[command(flatten)]
        tpm: TctiArgs,
        #[arg(long, value_enum, default_value_t)]
        output: Output,
    },
    /// Import the HMAC key of an authenticationKey blob from the service as the identity key (0x81000100).
    Activate {
        #[command(flatten)]
        tpm: TctiArgs,
        /// The blob, base64 (the 401 body's or registrationState.tpm's authenticationKey).
        #[arg(long)]
        blob: String,
    },
    /// Print base64(HMAC-SHA256(identity key, data)), computed in the TPM.
    Sign {
        #[command(flatten)]
        tpm: TctiArgs,
        /// The data to sign, base64.
        #[arg(long)]
        data_b64: String,
    },
}

pub fn run(cmd: TpmCommand) -> Result<()> {
    match cmd {
        TpmCommand::Show { tpm, output } => {
            let device = tpm.open()?;
            let info = serde_json::json!({
                "registrationId": device.registration_id(),
                "endorsementKey": B64.encode(device.endorsement_key()),
                "storageRootKey": B64.encode(device.storage_root_key()),
            });
            match output {
                Output::Json => print(output, &info, &[]),
                // What tpm_device_provision prints.
                Output::Table => {
                    println!("Registration Id:\n{}\n\nEndorsement Key:\n{}", device.registration_id(), B64.encode(device.endorsement_key()))
                }
            }
        }
        TpmCommand::Activate { tpm, blob } => {
            let blob = dps_crypto::tpm::blob::from_base64(&blob).map_err(|e| anyhow!("--blob: {e}"))?;
            tpm.open()?.activate_identity_key(&blob)?;
            eprintln!("activated the identity key ({:#010x})", dps_crypto::tpm::IDENTITY_KEY_HANDLE);
        }
        TpmCommand::Sign { tpm, data_b64 } => {
            let data = B64.decode(data_b64.trim()).map_err(|_| anyhow!("--data-b64 is not base64"))?;
            println!("{}", B64.encode(tpm.open()?.sign(&data)?));
        }
    }
    Ok(())
}
