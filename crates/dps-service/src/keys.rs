//! The master key's sources and its rotation (#15 item 4).
//!
//! Sources, first found wins: the environment variable `DPS_MASTER_KEY` (base64 of 32 bytes), else the key file
//! (`master_key_file` / `DPS_MASTER_KEY_FILE` / `--master-key-file`, default `<data-dir>/master.key`), which must
//! be the owner's alone (mode 0600: a file others can read is refused).
//!
//! Rotation (`POST /service/keys/rotate`, `dps keys rotate`) runs in the service while it serves:
//! 1. a new key is written to `<key file>.next` (0600, fsynced) — or, after a crash, the one already there is
//!    taken again;
//! 2. the key ring switches: the new key seals every value from now on, the old one still opens;
//! 3. passes over every sealed column ([`dps_store::Store::reseal`]) re-seal what the old key sealed, until a
//!    pass finds nothing stale twice in a row (a compare-and-set per value: a request's own write is kept);
//! 4. `<key file>.next` is renamed over the key file (the commit point) and the old key is forgotten.
//!
//! A crash before step 4 leaves both files: the next start loads both (the new key current) and a rotation
//! finishes the work with the same new key. A crash after step 4 leaves the new key only, and nothing sealed
//! with the old one. With the key in `DPS_MASTER_KEY` the service cannot replace it, so it refuses to rotate.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use dps_crypto::MasterKey;
use dps_store::Store;
use tracing::{info, warn};

/// The environment variable holding the master key itself (base64), instead of a file.
pub const ENV_KEY: &str = "DPS_MASTER_KEY";

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file the service owns (it can rotate it).
    File(PathBuf),
    /// The `DPS_MASTER_KEY` environment variable.
    Env,
}

/// A rotation's new key, until it replaces the key file.
pub fn next_key_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".next");
    file.with_file_name(name)
}

/// Refuses a key file that anyone but its owner may read or write.
pub fn check_file_mode(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the master key file {p} has mode {mode:03o}: others may read it. Make it the owner's alone (chmod 600 {p}), \
                 or give the key in {ENV_KEY} instead",
                p = path.display()
            );
        }
    }
    Ok(())
}

/// Reads a key file (its mode checked first).
pub fn read_key_file(path: &Path) -> Result<MasterKey> {
    check_file_mode(path)?;
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the master key {}", path.display()))?;
    MasterKey::from_base64(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// The master key the configuration names, and where it came from: `DPS_MASTER_KEY`, else the key file (made
/// on first start), with an interrupted rotation's new key added.
pub fn load(config: &crate::config::Config) -> Result<(MasterKey, KeySource)> {
    if let Some(text) = &config.master_key {
        let key = MasterKey::from_base64(text.expose()).map_err(|e| anyhow!("{ENV_KEY}: {e}"))?;
        return Ok((key, KeySource::Env));
    }
    if config.master_key_explicit && !config.master_key_file.exists() {
        bail!(
            "the master key file {} (master_key_file) does not exist: a configured key is loaded, never made — copy the \
             cluster's key there (`dps init` made it) or correct the setting",
            config.master_key_file.display()
        );
    }
    let key = crate::material::load_or_create_master_key(&config.master_key_file, &config.data_dir)?;
    resume_pending(&key, &config.master_key_file)?;
    Ok((key, KeySource::File(config.master_key_file.clone())))
}

/// Adds an interrupted rotation's new key (`<file>.next`) to `key` as the current key.
pub fn resume_pending(key: &MasterKey, file: &Path) -> Result<()> {
    let next = next_key_path(file);
    if next.exists() {
        key.rotate_to(&read_key_file(&next)?);
        warn!(key = %next.display(), "a master-key rotation was interrupted: both keys are loaded; run `dps keys rotate` to finish it");
    }
    Ok(())
}

/// What a rotation did (the answer of `POST /service/keys/rotate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RotationReport {
    pub previous_key_id: String,
    pub key_id: String,
    /// Values re-sealed with the new key.
    pub resealed: u64,
    /// Values no key opens (left as they were; see `GET /diagnostics/quarantine`).
    pub unreadable: u64,
    /// Passes over the sealed columns.
    pub passes: u32,
}

/// Passes at most before a rotation gives up (each is restartable; the next rotation carries on).
const MAX_PASSES: u32 = 20;

/// Runs rotations, one at a time.
pub struct Rotation {
    store: Store,
    source: KeySource,
    turn: tokio::sync::Mutex<()>,
}

impl Rotation {
    pub fn new(store: Store, source: KeySource) -> Self {
        Self { store, source, turn: tokio::sync::Mutex::new(()) }
    }

    /// Rotates the master key (see the module docs).
    pub async fn rotate(&self) -> Result<RotationReport> {
        let _turn = self.turn.lock().await;
        let KeySource::File(file) = &self.source else {
            bail!("the master key comes from {ENV_KEY}, which the service cannot replace: rotate it with the key in a file")
        };
        let key = self.store.master_key();
        let next_path = next_key_path(file);
        let next = if next_path.exists() {
            read_key_file(&next_path)?
        } else {
            let (next, text) = MasterKey::generate();
            crate::material::write_private(&next_path, format!("{text}\n").as_bytes())?;
            next
        };
        let previous_key_id = read_key_file(file)?.id();
        key.rotate_to(&next);
        info!(previous = %previous_key_id, key = %key.id(), "master-key rotation: re-sealing every secret");
        let mut report = RotationReport { previous_key_id, key_id: key.id(), ..Default::default() };
        self.reseal_until_clean(&mut report).await?;
        crate::material::rename_durably(&next_path, file)?;
        key.retire_others();
        info!(key = %report.key_id, resealed = report.resealed, unreadable = report.unreadable, "master-key rotation done");
        Ok(report)
    }

    /// Passes until two in a row find nothing stale that a key opens.
    async fn reseal_until_clean(&self, report: &mut RotationReport) -> Result<()> {
        let mut clean = 0;
        while clean < 2 {
            if report.passes >= MAX_PASSES {
                bail!("values sealed with the old key keep appearing after {MAX_PASSES} passes; run the rotation again");
            }
            let pass = self.store.reseal().await?;
            report.passes += 1;
            report.resealed += pass.resealed;
            report.unreadable = pass.unreadable;
            clean = if pass.stale == pass.unreadable { clean + 1 } else { 0 };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pending_key_sits_beside_the_key_file() {
        assert_eq!(next_key_path(Path::new("/d/master.key")), PathBuf::from("/d/master.key.next"));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("master.key");
        let (_, text) = MasterKey::generate();
        crate::material::write_private(&path, text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_key_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap_or_else(|e| panic!("{e}"));
        let e = read_key_file(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
    }
}
