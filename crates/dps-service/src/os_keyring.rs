//! The master key in the OS keyring (#15 item 4): Secret Service on Linux (GNOME Keyring, KWallet), Keychain on
//! macOS, Credential Manager on Windows — through the `keyring` crate (cargo feature `keyring`, which the desktop
//! shell turns on).
//!
//! A data directory whose key lives there has no `master.key`; instead `master.key.keyring` says where the key
//! is (service and account, no secret), so a later start finds it, and a start that cannot reach the keyring
//! says so instead of making a second key. The account names the data directory, so two data directories never
//! share an entry. A rotation's new key waits in the account `<account>.next`, as a file's waits in
//! `<file>.next` (`keys.rs`).
//!
//! Every call blocks (D-Bus round trips, maybe an unlock prompt): callers in async code run them on the
//! blocking pool.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};

/// The keyring service name of every entry this program writes.
pub const SERVICE: &str = "dps-console";

/// The file beside the data that says the key is in the keyring.
pub const MARKER_FILE: &str = "master.key.keyring";

/// One data directory's key in the keyring: where it is (the marker file's contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyringHome {
    pub service: String,
    pub account: String,
}

impl KeyringHome {
    /// The home a data directory gets when its key first goes to the keyring.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        Self { service: SERVICE.to_owned(), account: format!("master-key {}", dir.display()) }
    }

    /// Where the marker file of `data_dir` is.
    pub fn marker(data_dir: &Path) -> PathBuf {
        data_dir.join(MARKER_FILE)
    }

    /// The home the marker file names, if there is one.
    pub fn from_marker(data_dir: &Path) -> Result<Option<Self>> {
        let path = Self::marker(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).with_context(|| format!("{} cannot be read", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
        }
    }

    /// Writes the marker file (after the key is in the keyring).
    pub fn write_marker(&self, data_dir: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self)?;
        crate::material::write_private(&Self::marker(data_dir), &text)
    }

    /// The entry of the current key.
    pub fn current(&self) -> Slot {
        Slot { service: self.service.clone(), account: self.account.clone() }
    }

    /// The entry of a rotation's new key.
    pub fn next(&self) -> Slot {
        Slot { service: self.service.clone(), account: format!("{}.next", self.account) }
    }
}

impl std::fmt::Display for KeyringHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the OS keyring (service {}, account {})", self.service, self.account)
    }
}

/// One keyring entry holding a key's text (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    service: String,
    account: String,
}

impl Slot {
    /// The entry's account name.
    pub fn account_name(&self) -> &str {
        &self.account
    }
}

#[cfg(feature = "keyring")]
impl Slot {
    fn entry(&self) -> Result<keyring::Entry> {
        keyring::Entry::new(&self.service, &self.account).map_err(|e| self.failed(e))
    }

    fn failed(&self, e: keyring::Error) -> anyhow::Error {
        anyhow!("the OS keyring (service {}, account {}): {e}", self.service, self.account)
    }

    /// The text stored, `None` when the entry does not exist.
    pub fn read(&self) -> Result<Option<String>> {
        match self.entry()?.get_password() {
            Ok(text) => Ok(Some(text)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    /// Stores `text` (replacing what was there).
    pub fn write(&self, text: &str) -> Result<()> {
        self.entry()?.set_password(text).map_err(|e| self.failed(e))
    }

    /// Deletes the entry (nothing to do when it does not exist).
    pub fn delete(&self) -> Result<()> {
        match self.entry()?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(self.failed(e)),
        }
    }
}

#[cfg(not(feature = "keyring"))]
impl Slot {
    fn unsupported(&self) -> anyhow::Error {
        anyhow!(
            "the master key is in the OS keyring (service {}, account {}), but this build has no keyring support: run the \
             desktop app, or build `dps` with the cargo feature `keyring`",
            self.service,
            self.account
        )
    }

    pub fn read(&self) -> Result<Option<String>> {
        Err(self.unsupported())
    }

    pub fn write(&self, _text: &str) -> Result<()> {
        Err(self.unsupported())
    }

    pub fn delete(&self) -> Result<()> {
        Err(self.unsupported())
    }
}

/// Whether a keyring answers here (a read of an entry that need not exist succeeds or finds nothing).
pub fn available() -> bool {
    let probe = Slot { service: SERVICE.to_owned(), account: "probe".to_owned() };
    probe.read().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_names_the_data_directory_and_the_next_key_sits_beside_it() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let home = KeyringHome::for_data_dir(dir.path());
        assert_eq!(home.service, SERVICE);
        assert!(home.account.ends_with(&dir.path().canonicalize().expect("canonicalize").display().to_string()));
        assert_eq!(home.next().account, format!("{}.next", home.account));
        assert_ne!(home, KeyringHome::for_data_dir(&dir.path().join("other")));
    }

    #[test]
    fn the_marker_round_trips_and_its_absence_is_none() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        assert_eq!(KeyringHome::from_marker(dir.path()).expect("from marker"), None);
        let home = KeyringHome::for_data_dir(dir.path());
        home.write_marker(dir.path()).expect("write marker");
        assert_eq!(KeyringHome::from_marker(dir.path()).expect("from marker"), Some(home));
        std::fs::write(KeyringHome::marker(dir.path()), b"{").expect("writes");
        assert!(KeyringHome::from_marker(dir.path()).is_err());
    }
}
