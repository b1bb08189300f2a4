//! The one service the stateful targets talk to, started once per process.
//!
//! It runs exactly as `dps serve` does ([`dps_service::start`]) in a temporary data directory (under
//! `/dev/shm` when there is one: the store's durable writes would otherwise dominate each execution), with
//! its listeners bound on 127.0.0.1 port 0 but never used: inputs reach the handlers over in-memory
//! `tokio::io::duplex` streams, as a connection does after its TLS handshake. The clock is a manual one fixed
//! at 2026-01-01, so an input replays the same way on every run. An enrollment group (`fuzz-group`, symmetric
//! keys), an X.509 group and a TPM enrollment exist from the start ([`Harness::enroll`]), so that inputs
//! reach attestation, allocation and the hub.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use dps_core::clock::ManualClock;
use dps_core::Clock;
use dps_service::app::App;
use dps_service::config::{Config, Overrides};
use dps_service::Running;

/// The group every device id can attest through (keys derived from its primary key, §4.2).
pub const GROUP_ID: &str = "fuzz-group";
/// Its primary key (base64 of 32 bytes).
pub const GROUP_KEY: &str = "ZnV6ei1ncm91cC1wcmltYXJ5LWtleS0wMTIzNDU2Nzg=";
/// The X.509 group: its signing certificate is the root of `corpus/x509_chain/chain_pem`.
pub const X509_GROUP_ID: &str = "fuzz-x509-group";
const X509_ROOT: &str = include_str!("../fixtures/x509-group-root.pem");
/// The TPM device's individual enrollment: its EK is `corpus/tpm_structures/ek_rsa2048`.
pub const TPM_DEVICE: &str = "tpmdev";
const TPM_EK: &[u8] = include_bytes!("../fixtures/tpm-ek.tpm2b");
/// How long one input may take before the target reports a hang (a lost wake-up, a missed deadline).
pub const ANSWER_DEADLINE: Duration = Duration::from_secs(30);

/// The running service and what inputs need to address it.
pub struct Harness {
    pub runtime: tokio::runtime::Runtime,
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    pub scope: String,
    owner_key: Vec<u8>,
    _running: Mutex<Running>,
    _dir: tempfile::TempDir,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The fixed instant the service's clock shows.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap_or(DateTime::UNIX_EPOCH)
}

/// The process's service, started on first use.
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(Harness::start)
}

fn config(dir: &std::path::Path) -> Config {
    let flags = Overrides {
        https_port: Some(0),
        mqtt_port: Some(0),
        amqp_port: Some(0),
        console_port: Some(0),
        mqtt_connect_timeout_secs: Some(1),
        amqp_idle_timeout_secs: Some(2),
        retry_after_secs: Some(2),
        measure_hub_latency: Some(false),
        ..Default::default()
    };
    Config::load(dir.to_path_buf(), None, &HashMap::new(), flags).unwrap_or_else(|e| panic!("fuzz config: {e}"))
}

fn temp_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() };
    dir.unwrap_or_else(|e| panic!("fuzz data directory: {e}"))
}

impl Harness {
    fn start() -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| panic!("runtime: {e}"));
        let dir = temp_dir();
        let clock = Arc::new(ManualClock::new(epoch()));
        let config = config(dir.path());
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let running = runtime.block_on(async {
            let listeners = dps_service::bind(&config).unwrap_or_else(|e| panic!("bind: {e:#}"));
            dps_service::start(&config, listeners, dyn_clock).await.unwrap_or_else(|e| panic!("start: {e:#}"))
        });
        let owner = running.info.service_connection_string.rsplit("SharedAccessKey=").next().unwrap_or_default();
        let harness = Self {
            app: running.app(),
            clock,
            scope: running.info.id_scope.clone(),
            owner_key: dps_crypto::decode_key(owner).unwrap_or_default(),
            runtime,
            _running: Mutex::new(running),
            _dir: dir,
        };
        harness.enroll();
        harness
    }

    /// The enrollments inputs can reach: the symmetric-key group, an X.509 group trusting the root of the
    /// x509 corpus's chains, and a TPM enrollment of the tpm corpus's EK.
    fn enroll(&self) {
        let sym = format!(r#"{{"type":"symmetricKey","symmetricKey":{{"primaryKey":"{GROUP_KEY}","secondaryKey":"{GROUP_KEY}"}}}}"#);
        self.service_put(&format!("/enrollmentGroups/{GROUP_ID}"), &format!(r#"{{"enrollmentGroupId":"{GROUP_ID}","attestation":{sym}}}"#));
        let root = serde_json::to_string(X509_ROOT).unwrap_or_default();
        let x509 = format!(r#"{{"type":"x509","x509":{{"signingCertificates":{{"primary":{{"certificate":{root}}}}}}}}}"#);
        self.service_put(
            &format!("/enrollmentGroups/{X509_GROUP_ID}"),
            &format!(r#"{{"enrollmentGroupId":"{X509_GROUP_ID}","attestation":{x509}}}"#),
        );
        let ek = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, TPM_EK);
        let tpm = format!(r#"{{"type":"tpm","tpm":{{"endorsementKey":"{ek}"}}}}"#);
        self.service_put(&format!("/enrollments/{TPM_DEVICE}"), &format!(r#"{{"registrationId":"{TPM_DEVICE}","attestation":{tpm}}}"#));
    }

    fn service_put(&self, path: &str, body: &str) {
        let head = format!(
            "PUT {path}?api-version=2021-10-01 HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            self.service_sas(),
            body.len()
        );
        let request = [head.as_bytes(), body.as_bytes()].concat();
        let answer = self.runtime.block_on(crate::http::exchange(self, dps_service::https::Surface::Device, request, false));
        assert!(answer.starts_with(b"HTTP/1.1 200"), "PUT {path}: {}", String::from_utf8_lossy(&answer));
    }

    /// `Authorization` of the owner policy (every right), valid for an hour of the service's clock.
    pub fn service_sas(&self) -> String {
        let se = self.clock.now().timestamp().unsigned_abs() + 3600;
        dps_crypto::build_token(&self.owner_key, "127.0.0.1", se, Some(dps_service::OWNER_POLICY))
    }

    /// `Authorization` of a device of [`GROUP_ID`], as the SDKs sign it (raw `sr`).
    pub fn device_sas(&self, registration_id: &str) -> String {
        let key = dps_crypto::derive_device_key(GROUP_KEY, registration_id).ok().and_then(|k| dps_crypto::decode_key(&k).ok());
        let sr = format!("{}/registrations/{registration_id}", self.scope);
        let se = self.clock.now().timestamp().unsigned_abs() + 3600;
        let sig = dps_crypto::sign(&key.unwrap_or_default(), &sr, se);
        let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=registration")
    }
}
