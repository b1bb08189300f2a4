//! A service started in-process on port 0 in a temporary data directory, with a client that trusts its
//! CA, and helpers that sign device and service SAS tokens the way the SDKs do.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use dps_core::clock::ManualClock;
use dps_core::Clock;
use dps_service::config::{Config, Overrides};
use dps_service::Running;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::{json, Value};

pub struct TestService {
    pub dir: tempfile::TempDir,
    pub running: Option<Running>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub base: String,
    pub scope: String,
    pub owner_key: String,
    pub mqtt_port: u16,
    pub amqp_port: u16,
    /// `https://127.0.0.1:<console port>`.
    pub console_base: String,
    pub ca_pem: Vec<u8>,
    pub extra: Overrides,
    /// The environment the configuration is loaded with (`DPS_MASTER_KEY`, …).
    pub env: HashMap<String, String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

pub fn tls_client_config(ca_pem: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]).flatten() {
        roots.add(c).expect("add");
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("with safe default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder().use_preconfigured_tls(tls_client_config(ca_pem)).timeout(Duration::from_secs(20)).build().expect("builds")
}

impl TestService {
    pub async fn start() -> Self {
        Self::start_with(Overrides::default()).await
    }

    /// Starts with extra configuration (applied over the test defaults).
    pub async fn start_with(extra: Overrides) -> Self {
        Self::start_with_env(extra, HashMap::new()).await
    }

    /// Starts with extra configuration and an environment.
    pub async fn start_with_env(extra: Overrides, env: HashMap<String, String>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::new(dps_core::SystemClock.now()));
        let mut s = Self {
            dir,
            running: None,
            clock,
            http: reqwest::Client::new(),
            base: String::new(),
            scope: String::new(),
            owner_key: String::new(),
            mqtt_port: 0,
            amqp_port: 0,
            console_base: String::new(),
            ca_pem: Vec::new(),
            extra,
            env,
        };
        s.restart().await;
        s
    }

    fn config(&self) -> Config {
        let flags = Overrides {
            https_port: Some(0),
            mqtt_port: Some(0),
            amqp_port: Some(0),
            console_port: Some(0),
            mqtt_connect_timeout_secs: Some(1),
            retry_after_secs: Some(2),
            ..Default::default()
        }
        .then(self.extra.clone());
        Config::load(self.dir.path().to_path_buf(), None, &self.env, flags).expect("loads")
    }

    /// Starts (again) on the same data directory, on a new port.
    pub async fn restart(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let config = self.config();
        let listeners = dps_service::bind(&config).expect("binds");
        let clock: Arc<dyn Clock> = self.clock.clone();
        let running = dps_service::start(&config, listeners, clock).await.expect("start");
        let ca = std::fs::read(&running.info.ca_certificate).expect("reads");
        self.http = client(&ca);
        self.mqtt_port = running.info.ports.mqtt.unwrap_or_default();
        self.amqp_port = running.info.ports.amqp.unwrap_or_default();
        self.ca_pem = ca.clone();
        self.base = format!("https://127.0.0.1:{}", running.info.ports.https.unwrap_or_default());
        self.console_base = format!("https://127.0.0.1:{}", running.info.ports.console.unwrap_or_default());
        self.scope = running.info.id_scope.clone();
        self.owner_key = running.info.service_connection_string.rsplit("SharedAccessKey=").next().unwrap_or_default().to_owned();
        self.running = Some(running);
    }

    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now().timestamp() as u64
    }

    /// A device SAS as Node signs it (raw `sr`).
    pub fn device_sas(&self, registration_id: &str, key_b64: &str, se: u64) -> String {
        let key = dps_crypto::decode_key(key_b64).expect("decodes the key");
        let sr = format!("{}/registrations/{registration_id}", self.scope);
        let sig = utf8_percent_encode(&dps_crypto::sign(&key, &sr, se), NON_ALPHANUMERIC).to_string();
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn=registration")
    }

    pub fn service_sas(&self) -> String {
        let key = dps_crypto::decode_key(&self.owner_key).expect("decodes the key");
        let se = self.now() + 3600;
        let sig = utf8_percent_encode(&dps_crypto::sign(&key, "127.0.0.1", se), NON_ALPHANUMERIC).to_string();
        format!("SharedAccessSignature sr=127.0.0.1&sig={sig}&se={se}&skn=provisioningserviceowner")
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(a) = auth {
            rb = rb.header("authorization", a);
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        let bytes = r.bytes().await.expect("reads the body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{path}: {e}: {}", String::from_utf8_lossy(&bytes)))
        };
        Answer { status, headers, body }
    }

    pub async fn service(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let sas = self.service_sas();
        let sep = if path.contains('?') { '&' } else { '?' };
        self.send(method, &format!("{path}{sep}api-version=2021-10-01"), Some(&sas), &[], body.map(|b| b.to_string().into_bytes())).await
    }

    /// A service-API PUT with `If-Match`.
    pub async fn send_json_if_match(&self, path: &str, body: Value, etag: &str) -> Answer {
        let sas = self.service_sas();
        let sep = if path.contains('?') { '&' } else { '?' };
        let path = format!("{path}{sep}api-version=2021-10-01");
        self.send(reqwest::Method::PUT, &path, Some(&sas), &[("if-match", etag)], Some(body.to_string().into_bytes())).await
    }

    /// Creates a symmetric-key individual enrollment; returns its primary key.
    pub async fn enroll(&self, id: &str, extra: Value) -> String {
        let mut doc = json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
        if let (Some(d), Some(e)) = (doc.as_object_mut(), extra.as_object()) {
            d.extend(e.clone());
        }
        let a = self.service(reqwest::Method::PUT, &format!("/enrollments/{id}"), Some(doc)).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned()
    }

    pub async fn register(&self, id: &str, sas: &str, body: &str) -> Answer {
        self.send(
            reqwest::Method::PUT,
            &format!("/{}/registrations/{id}/register?api-version=2019-03-31", self.scope),
            Some(sas),
            &[],
            Some(body.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn poll(&self, id: &str, op: &str, sas: &str) -> Answer {
        self.send(
            reqwest::Method::GET,
            &format!("/{}/registrations/{id}/operations/{op}?api-version=2019-03-31", self.scope),
            Some(sas),
            &[],
            None,
        )
        .await
    }

    /// Polls until the operation is terminal (bounded).
    pub async fn poll_done(&self, id: &str, op: &str, sas: &str) -> Answer {
        for _ in 0..100 {
            let a = self.poll(id, op, sas).await;
            if a.status != 202 {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation {op} did not finish");
    }

    /// Registers and waits for the result.
    pub async fn provision(&self, id: &str, key: &str) -> Answer {
        let sas = self.device_sas(id, key, self.now() + 3600);
        let a = self.register(id, &sas, &format!("{{\"registrationId\":\"{id}\"}}")).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
        self.poll_done(id, &op, &sas).await
    }

    /// The error contract of §1.8: status, `errorCode`, `x-ms-error-code`, and every body member.
    pub fn assert_error(a: &Answer, status: u16, code: i64) {
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.body["errorCode"].as_i64(), Some(code), "{}", a.body);
        assert_eq!(a.headers.get("x-ms-error-code").and_then(|v| v.to_str().ok()), Some(code.to_string().as_str()));
        assert!(a.body["trackingId"].as_str().is_some_and(|t| !t.is_empty()), "{}", a.body);
        assert!(a.body["message"].as_str().is_some_and(|t| !t.is_empty()), "{}", a.body);
        let ts = a.body["timestampUtc"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{}", a.body);
    }
}

/// A TLS client presenting `chain` (DER, leaf first) with `key` (PKCS#8 DER).
pub fn tls_client_config_with_cert(ca_pem: &[u8], chain: &[Vec<u8>], key: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]).flatten() {
        roots.add(c).expect("add");
    }
    let certs = chain.iter().map(|c| rustls::pki_types::CertificateDer::from(c.clone())).collect();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key.to_vec()));
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("with safe default protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .expect("with client auth cert")
}

impl TestService {
    /// An HTTPS client that presents a client certificate chain.
    pub fn client_with_cert(&self, chain: &[Vec<u8>], key: &[u8]) -> reqwest::Client {
        reqwest::Client::builder()
            .use_preconfigured_tls(tls_client_config_with_cert(&self.ca_pem, chain, key))
            .timeout(Duration::from_secs(20))
            .build()
            .expect("builds")
    }

    /// Registers with a client certificate over HTTPS (no Authorization header) and polls to the end.
    pub async fn provision_x509(&self, id: &str, chain: &[Vec<u8>], key: &[u8]) -> Answer {
        let http = self.client_with_cert(chain, key);
        let send = |rb: reqwest::RequestBuilder| async move {
            let r = rb.send().await.expect("sends");
            let status = r.status().as_u16();
            let headers = r.headers().clone();
            let body = r.json::<Value>().await.unwrap_or(Value::Null);
            Answer { status, headers, body }
        };
        let base = format!("{}/{}/registrations/{id}", self.base, self.scope);
        let a = send(http.put(format!("{base}/register?api-version=2019-03-31")).json(&json!({ "registrationId": id }))).await;
        if a.status != 202 {
            return a;
        }
        let op = a.body["operationId"].as_str().unwrap_or_default().to_owned();
        for _ in 0..100 {
            let p = send(http.get(format!("{base}/operations/{op}?api-version=2019-03-31"))).await;
            if p.status != 202 {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("operation {op} did not finish");
    }
}
