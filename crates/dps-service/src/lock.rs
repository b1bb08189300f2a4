//! One process per data directory: `dps.lock` is locked exclusively (an OS file lock, released by the kernel
//! when the process ends however it ends) for as long as the service runs. A second `dps serve` — or a desktop
//! app — on the same directory stops at start with a message naming the process that holds it. A holder that is
//! this very process (an in-process restart: the desktop app, the tests) is waited for, up to [`OWN_WAIT`]: the
//! previous instance's lock may outlive its shutdown for a moment (CI saw it once, right after a shutdown; one way
//! is a child process that another thread forks meanwhile, which holds a copy of the descriptor until it execs).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// How long a lock this process itself holds is waited for.
const OWN_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<Self> {
        let deadline = std::time::Instant::now() + OWN_WAIT;
        loop {
            match Self::try_acquire(data_dir)? {
                Ok(lock) => return Ok(lock),
                Err(holder) if holder == std::process::id().to_string() && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(holder) => {
                    let who = if holder.is_empty() { "another process".to_owned() } else { format!("process {holder}") };
                    bail!(
                        "the data directory {} is in use by {who} (another `dps serve` or the desktop app); \
                         stop it or choose another --data-dir",
                        data_dir.display()
                    );
                }
            }
        }
    }

    /// The lock, or who holds it (the process id it wrote; empty when unknown).
    fn try_acquire(data_dir: &Path) -> Result<std::result::Result<Self, String>> {
        crate::material::create_data_dir(data_dir)?;
        let path = data_dir.join("dps.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Ok(Err(holder.trim().to_owned()));
            }
            Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Ok(Self { _file: file }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DataDirLock::acquire(dir.path()).expect("first lock");
        let second = DataDirLock::acquire(dir.path()).expect_err("second lock");
        let message = second.to_string();
        assert!(message.contains("in use by process") && message.contains(&std::process::id().to_string()), "{message}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again");
    }
}
