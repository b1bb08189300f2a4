//! The service-API client the management commands use: finds the service through
//! `<data-dir>/endpoint.json` or a connection string, signs each request with a SAS of the policy
//! (§5.1), and turns error bodies into readable errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use dps_proto::{EndpointInfo, ProvisioningServiceErrorDetails};
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

// How to reach the service: the shared flags of every management command (a plain comment: clap
// would show a doc comment as the description of every subcommand that flattens this).
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Data directory of a local service (its endpoint.json is read).
    #[arg(long, env = "DPS_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Service connection string (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…).
    #[arg(long, env = "DPS_CONNECTION_STRING", global = true, hide_env_values = true)]
    pub connection_string: Option<String>,
    /// CA certificate (PEM) to trust for the service's TLS certificate (default: the data directory's CA).
    #[arg(long, env = "DPS_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

/// Cheap to clone (the connection pool is shared): the bulk import hands one to each request in flight.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    host: String,
    key_name: String,
    key: Vec<u8>,
}

pub struct ConnectionString {
    pub host: String,
    pub key_name: String,
    pub key: String,
}

pub fn parse_connection_string(cs: &str) -> Result<ConnectionString> {
    let (mut host, mut name, mut key) = (None, None, None);
    for part in cs.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| anyhow!("connection string part '{part}' has no '='"))?;
        match k.trim().to_ascii_lowercase().as_str() {
            "hostname" => host = Some(v.trim().to_owned()),
            "sharedaccesskeyname" => name = Some(v.trim().to_owned()),
            "sharedaccesskey" => key = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    Ok(ConnectionString {
        host: host.ok_or_else(|| anyhow!("the connection string has no HostName"))?,
        key_name: name.ok_or_else(|| anyhow!("the connection string has no SharedAccessKeyName"))?,
        key: key.ok_or_else(|| anyhow!("the connection string has no SharedAccessKey"))?,
    })
}

pub fn read_endpoint(data_dir: &Path) -> Result<EndpointInfo> {
    let p = data_dir.join("endpoint.json");
    let text = std::fs::read_to_string(&p)
        .with_context(|| format!("cannot read {} — is `dps serve --data-dir {}` running?", p.display(), data_dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", p.display()))
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("cannot read the CA file {}", ca.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(c?)?;
            }
        }
        None => {
            let bundle = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
            if let Ok(pem) = std::fs::read(&bundle) {
                for c in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                    let _ = roots.add(c);
                }
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Client {
    pub fn new(t: &Target) -> Result<Self> {
        let data_dir = t.data_dir.clone().unwrap_or_else(dps_service::config::default_data_dir);
        let (cs, ca) = match &t.connection_string {
            Some(cs) => (parse_connection_string(cs)?, t.ca_file.clone()),
            None => {
                let info = read_endpoint(&data_dir)?;
                (parse_connection_string(&info.service_connection_string)?, t.ca_file.clone().or(Some(PathBuf::from(info.ca_certificate))))
            }
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(ca.as_deref())?)
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        let key = dps_crypto::decode_key(&cs.key).map_err(|e| anyhow!("SharedAccessKey: {e}"))?;
        Ok(Self { http, base: format!("https://{}", cs.host), host: cs.host, key_name: cs.key_name, key })
    }

    fn sas(&self) -> String {
        #[allow(clippy::disallowed_methods)] // a client signs with the wall clock
        let se = chrono::Utc::now().timestamp().max(0) as u64 + 3600;
        let sr = utf8_percent_encode(&self.host, NON_ALPHANUMERIC).to_string();
        let sig = utf8_percent_encode(&dps_crypto::sign(&self.key, &sr, se), NON_ALPHANUMERIC).to_string();
        format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn={}", self.key_name)
    }

    /// Sends a request; returns the body (if any) and the response headers.
    pub async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let mut rb = self.request(method, path);
        for (k, v) in headers {
            rb = rb.header(*k, v);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        self.finish(rb).await
    }

    /// Sends a body that is JSON text already (the bulk import builds its bodies from the items as read,
    /// without parsing and serialising them again).
    pub async fn send_json_text(
        &self,
        method: Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        self.finish(self.request(method, path).header("content-type", "application/json").body(body)).await
    }

    /// Sends a request and answers whatever the service answered — status and body, a refusal included (the
    /// simulator reads refusals as outcomes).
    pub async fn exchange<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<(StatusCode, Vec<u8>)> {
        let mut rb = self.request(method, path);
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.with_context(|| format!("cannot reach the service at {}", self.base))?;
        let status = resp.status();
        Ok((status, resp.bytes().await?.to_vec()))
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.http.request(method, format!("{}{path}{sep}api-version=2021-10-01", self.base)).header("authorization", self.sas())
    }

    async fn finish(&self, rb: reqwest::RequestBuilder) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>)> {
        let resp = rb.send().await.with_context(|| format!("cannot reach the service at {}", self.base))?;
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = resp.bytes().await?.to_vec();
        if !status.is_success() {
            match serde_json::from_slice::<ProvisioningServiceErrorDetails>(&bytes) {
                Ok(e) => bail!("{} (error {}, HTTP {}, tracking id {})", e.message, e.error_code, status.as_u16(), e.tracking_id),
                Err(_) => bail!("the service answered HTTP {}: {}", status.as_u16(), String::from_utf8_lossy(&bytes)),
            }
        }
        Ok((status, headers, bytes))
    }

    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        headers: &[(&str, String)],
    ) -> Result<T> {
        let (_, _, bytes) = self.send(method, path, body, headers).await?;
        serde_json::from_slice(&bytes).context("the service's answer does not parse")
    }

    /// Runs a paged query to the end.
    pub async fn query_all<T: DeserializeOwned>(&self, path: &str, top: Option<usize>) -> Result<Vec<T>> {
        let mut out = Vec::new();
        let mut continuation: Option<String> = None;
        let spec = serde_json::json!({ "query": "*" });
        loop {
            let mut h = vec![("x-ms-max-item-count", "100".to_owned())];
            if let Some(c) = &continuation {
                h.push(("x-ms-continuation", c.clone()));
            }
            let (_, headers, bytes) = self.send(Method::POST, path, Some(&spec), &h).await?;
            let page: Vec<T> = serde_json::from_slice(&bytes)?;
            out.extend(page);
            if top.is_some_and(|t| out.len() >= t) {
                out.truncate(top.unwrap_or(usize::MAX));
                break;
            }
            continuation = headers.get("x-ms-continuation").and_then(|v| v.to_str().ok()).map(str::to_owned);
            if continuation.is_none() {
                break;
            }
        }
        Ok(out)
    }
}

/// Percent-encodes an id for a path segment.
pub fn seg(id: &str) -> String {
    utf8_percent_encode(id, NON_ALPHANUMERIC).to_string()
}
