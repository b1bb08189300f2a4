//! The master key's sources and its rotation (#15 item 4).
//!
//! Sources, first found wins: the environment variable `DPS_MASTER_KEY` (base64 of 32 bytes), else the place
//! `master_key_source` names — a key file (`master_key_file` / `DPS_MASTER_KEY_FILE` / `--master-key-file`,
//! default `<data-dir>/master.key`), which must be the owner's alone (mode 0600: a file others can read is
//! refused), or the OS keyring (`os_keyring.rs`). With `auto` (the default) a data directory keeps its key where
//! it is: a key file when there is one, the keyring when `master.key.keyring` says so; a new data directory's
//! key goes to a file, or to the keyring when [`Config::keyring_preferred`] (the desktop app) and one answers.
//!
//! Rotation (`POST /service/keys/rotate`, `dps keys rotate`) runs in the service while it serves:
//! 1. a new key is written to `<key file>.next` (0600, fsynced) or the keyring's `<account>.next` — or, after
//!    a crash, the one already there is taken again;
//! 2. the key ring switches: the new key seals every value from now on, the old one still opens;
//! 3. passes over every sealed column ([`dps_store::Store::reseal`]) re-seal what the old key sealed, until a
//!    pass finds nothing stale twice in a row (a compare-and-set per value: a request's own write is kept);
//! 4. the new key replaces the old one (the commit point): `<key file>.next` is renamed over the key file, or
//!    the keyring's entry is overwritten and `.next` deleted; the old key is forgotten.
//!
//! A crash before step 4 leaves both keys: the next start loads both (the new key current) and a rotation
//! finishes the work with the same new key. A crash after step 4 leaves the new key only, and nothing sealed
//! with the old one. With the key in `DPS_MASTER_KEY` the service cannot replace it, so it refuses to rotate.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use dps_crypto::MasterKey;
use dps_store::Store;
use tracing::{info, warn};

use crate::config::{Config, MasterKeySource};
use crate::os_keyring::KeyringHome;

/// The environment variable holding the master key itself (base64), instead of a file.
pub const ENV_KEY: &str = "DPS_MASTER_KEY";

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file the service owns (it can rotate it).
    File(PathBuf),
    /// The `DPS_MASTER_KEY` environment variable.
    Env,
    /// An entry of the OS keyring (it can rotate it).
    Keyring(KeyringHome),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Env => f.write_str(ENV_KEY),
            Self::Keyring(home) => write!(f, "{home}"),
        }
    }
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

/// The master key the configuration names, and where it came from: `DPS_MASTER_KEY`, else the key file or
/// the keyring entry (made on first start), with an interrupted rotation's new key added. May block (the
/// keyring): async callers run it on the blocking pool.
pub fn load(config: &Config) -> Result<(MasterKey, KeySource)> {
    if let Some(text) = &config.master_key {
        let key = MasterKey::from_base64(text.expose()).map_err(|e| anyhow!("{ENV_KEY}: {e}"))?;
        return Ok((key, KeySource::Env));
    }
    let source = choose_source(config)?;
    let key = match &source {
        KeySource::Keyring(home) => load_or_create_in_keyring(home, &config.data_dir)?,
        _ => load_file(config)?,
    };
    if let Some(next) = source.pending()? {
        key.rotate_to(&next);
        warn!(key = %source, "a master-key rotation was interrupted: both keys are loaded; run `dps keys rotate` to finish it");
    }
    Ok((key, source))
}

/// Where this data directory's key is kept (see the module docs): `master_key_source`, or with `auto` where the
/// key already is, else the preference for a new data directory.
pub fn choose_source(config: &Config) -> Result<KeySource> {
    let marker = KeyringHome::from_marker(&config.data_dir)?;
    let file = KeySource::File(config.master_key_file.clone());
    let new_home = || KeyringHome::for_data_dir(&config.data_dir);
    Ok(match config.master_key_source {
        MasterKeySource::File => file,
        MasterKeySource::Keyring => KeySource::Keyring(marker.unwrap_or_else(new_home)),
        MasterKeySource::Auto if config.master_key_explicit || config.master_key_file.exists() => file,
        MasterKeySource::Auto => match marker {
            Some(home) => KeySource::Keyring(home),
            None if config.keyring_preferred && crate::os_keyring::available() => KeySource::Keyring(new_home()),
            None => {
                if config.keyring_preferred {
                    warn!("no OS keyring answers (Secret Service, Keychain, Credential Manager): the master key goes to a file");
                }
                file
            }
        },
    })
}

fn load_file(config: &Config) -> Result<MasterKey> {
    if config.master_key_explicit && !config.master_key_file.exists() {
        bail!(
            "the master key file {} (master_key_file) does not exist: a configured key is loaded, never made — copy the \
             cluster's key there (`dps init` made it) or correct the setting",
            config.master_key_file.display()
        );
    }
    crate::material::load_or_create_master_key(&config.master_key_file, &config.data_dir)
}

/// The keyring's key; a new one (then the marker file) only when the data directory holds no database yet.
fn load_or_create_in_keyring(home: &KeyringHome, data_dir: &Path) -> Result<MasterKey> {
    if let Some(text) = home.current().read()? {
        return MasterKey::from_base64(&text).map_err(|e| anyhow!("{home}: {e}"));
    }
    if crate::material::database_has_data(data_dir) {
        bail!(
            "{home} holds no master key, but the database in {} holds secrets sealed with one: a new key would make them \
             unreadable, so none is made. Restore the key (or its master.key backup, with master_key_source = \"file\"); to \
             start over, `dps keys reset` (README \"Master key\")",
            data_dir.display()
        );
    }
    let (key, text) = MasterKey::generate();
    home.current().write(&text)?;
    home.write_marker(data_dir)?;
    info!(key = %home, "a new master key was stored in the OS keyring");
    Ok(key)
}

impl KeySource {
    /// The current key as stored (not an interrupted rotation's new one).
    fn stored(&self) -> Result<MasterKey> {
        match self {
            Self::File(file) => read_key_file(file),
            Self::Keyring(home) => {
                let text = home.current().read()?.ok_or_else(|| anyhow!("{home} holds no master key"))?;
                MasterKey::from_base64(&text).map_err(|e| anyhow!("{home}: {e}"))
            }
            Self::Env => bail!(
                "the master key comes from {ENV_KEY}, which the service cannot replace: rotate it with the key in a file or the keyring"
            ),
        }
    }

    /// An interrupted rotation's new key, if one waits.
    fn pending(&self) -> Result<Option<MasterKey>> {
        match self {
            Self::File(file) => {
                let next = next_key_path(file);
                next.exists().then(|| read_key_file(&next)).transpose()
            }
            Self::Keyring(home) => {
                home.next().read()?.map(|text| MasterKey::from_base64(&text).map_err(|e| anyhow!("{home} (.next): {e}"))).transpose()
            }
            Self::Env => Ok(None),
        }
    }

    /// A rotation's new key: the one waiting, else a new one written where it waits.
    fn pending_or_new(&self) -> Result<MasterKey> {
        if let Some(next) = self.pending()? {
            return Ok(next);
        }
        let (next, text) = MasterKey::generate();
        match self {
            Self::File(file) => crate::material::write_private(&next_key_path(file), format!("{text}\n").as_bytes())?,
            Self::Keyring(home) => home.next().write(&text)?,
            Self::Env => self.stored().map(drop)?,
        }
        Ok(next)
    }

    /// The commit point of a rotation: the waiting key replaces the stored one.
    fn commit_pending(&self) -> Result<()> {
        match self {
            Self::File(file) => crate::material::rename_durably(&next_key_path(file), file),
            Self::Keyring(home) => {
                let text = home.next().read()?.ok_or_else(|| anyhow!("{home}: the rotation's new key is gone"))?;
                home.current().write(&text)?;
                home.next().delete()
            }
            Self::Env => self.stored().map(drop),
        }
    }

    /// `dps keys reset`: `text` becomes the key, a waiting one is dropped; a key file that was there is kept
    /// aside as `<file>.replaced`.
    pub fn replace(&self, text: &str, data_dir: &Path) -> Result<()> {
        match self {
            Self::File(file) => {
                if file.exists() {
                    let mut aside = file.clone().into_os_string();
                    aside.push(".replaced");
                    std::fs::rename(file, &aside).with_context(|| format!("cannot move {} aside", file.display()))?;
                }
                let _ = std::fs::remove_file(next_key_path(file));
                crate::material::write_private(file, format!("{text}\n").as_bytes())
            }
            Self::Keyring(home) => {
                home.next().delete()?;
                home.current().write(text)?;
                home.write_marker(data_dir)
            }
            Self::Env => bail!("{ENV_KEY} is set: unset it to reset (a new key file is written; put its key in the variable afterwards)"),
        }
    }
}

/// Runs `f` on the blocking pool (keyring calls wait on D-Bus, maybe on an unlock prompt).
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| anyhow!("the key store task failed: {e}"))?
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
        if self.source == KeySource::Env {
            bail!("the master key comes from {ENV_KEY}, which the service cannot replace: rotate it with the key in a file or the keyring")
        }
        let key = self.store.master_key();
        let source = self.source.clone();
        let (previous, next) = blocking(move || Ok((source.stored()?, source.pending_or_new()?))).await?;
        key.rotate_to(&next);
        info!(previous = %previous.id(), key = %key.id(), "master-key rotation: re-sealing every secret");
        let mut report = RotationReport { previous_key_id: previous.id(), key_id: key.id(), ..Default::default() };
        self.reseal_until_clean(&mut report).await?;
        let source = self.source.clone();
        blocking(move || source.commit_pending()).await?;
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
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("master.key");
        let (_, text) = MasterKey::generate();
        crate::material::write_private(&path, text.as_bytes()).expect("write private");
        assert!(read_key_file(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("sets permissions");
        let e = read_key_file(&path).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
    }
}
