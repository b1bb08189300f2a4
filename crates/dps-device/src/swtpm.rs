//! A private software TPM ([swtpm](https://github.com/stefanberger/swtpm)) per test or per simulated device, on
//! free loopback ports, with its state in a temporary directory; killed by its PID when dropped. Used by the TPM
//! tests and by the console's TPM simulated devices (`dps-sim`). Needs the Debian `swtpm` package; without it
//! [`Swtpm::start`] fails with a message saying so (tests must fail, not skip).

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

const SWTPM: &str = "swtpm";
const READY_WITHIN: Duration = Duration::from_secs(10);
const ATTEMPTS: usize = 5;
const LOG: &str = "swtpm.log";

/// A running swtpm: TPM commands on `port`, its control channel on `port + 1` (swtpm's TCTI requires this).
pub struct Swtpm {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Swtpm {
    /// Starts a fresh TPM (new state, so a new endorsement seed): initialised and `Startup(CLEAR)` done.
    pub fn start() -> Result<Self> {
        let mut last = anyhow!("no attempt made");
        for _ in 0..ATTEMPTS {
            match Self::try_start() {
                Ok(s) => return Ok(s),
                Err(e) if e.downcast_ref::<Missing>().is_some() => return Err(e),
                Err(e) => last = e,
            }
        }
        Err(last.context(format!("swtpm did not start in {ATTEMPTS} attempts")))
    }

    fn try_start() -> Result<Self> {
        let port = free_port_pair()?;
        let dir = tempfile::Builder::new().prefix("swtpm-").tempdir().context("swtpm state directory")?;
        let log = std::fs::File::create(dir.path().join(LOG)).context("swtpm log file")?;
        let child = Command::new(SWTPM)
            .args(["socket", "--tpm2"])
            .args(["--server", &format!("type=tcp,port={port},bindaddr=127.0.0.1")])
            .args(["--ctrl", &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1)])
            .args(["--tpmstate", &format!("dir={}", dir.path().display())])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => anyhow!(Missing),
                _ => anyhow!(e).context("starting swtpm"),
            })?;
        let mut tpm = Self { child, dir, port };
        tpm.wait_ready()?;
        Ok(tpm)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                let err = std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default();
                bail!("swtpm exited with {status} before listening on port {}: {}", self.port, err.trim());
            }
            let up = |p: u16| TcpStream::connect(("127.0.0.1", p)).is_ok();
            if up(self.port + 1) && up(self.port) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("swtpm did not listen on 127.0.0.1:{} within {READY_WITHIN:?}", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI for tss-esapi and tpm2-tools (`TPM2TOOLS_TCTI`): `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the TPM keeps its state (and `swtpm.log`, its standard error) (NVRAM: persistent keys survive a restart on the same directory).
    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        // Child::kill signals this process by its PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `swtpm` binary is not installed.
#[derive(Debug)]
struct Missing;

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "swtpm is not installed: TPM tests and simulated TPM devices need a software TPM \
             (Debian: apt-get install swtpm swtpm-tools tpm2-tools libtss2-dev)",
        )
    }
}

impl std::error::Error for Missing {}

/// A port P such that P and P + 1 are both free on 127.0.0.1 now (bound and released).
fn free_port_pair() -> Result<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        let port = first.local_addr()?.port();
        let Some(next) = port.checked_add(1) else { continue };
        if TcpListener::bind(("127.0.0.1", next)).is_ok() {
            return Ok(port);
        }
    }
    bail!("found no two consecutive free ports on 127.0.0.1")
}
