//! The custom allocation webhook client (§6): a JSON POST with a time-out; the retry schedule and the
//! mapping of outcomes live in the engine (`dps_core::registration`). Trusts the system's roots, the service's
//! own CA (its built-in demo webhook, and lab webhooks whose certificates the local CA issued) and, optionally,
//! one more CA (`webhook_ca_file`) for lab webhooks with a private CA.
//!
//! Hardened against the webhook's side (issue #14): redirects are not followed (a 3xx is the answer, which the
//! engine refuses — following one would send the device's data, and the function key in the URL, elsewhere);
//! the answer is read chunk by chunk and refused beyond [`MAX_ANSWER`] bytes, never buffered whole first; error
//! texts never carry the URL (its query holds the function key: `reqwest::Error::without_url`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use async_trait::async_trait;
use dps_core::ports::{AllocationWebhook, WebhookError};

/// The largest webhook answer read (§6.2's answer is a hub name, a twin and a payload: far less).
pub const MAX_ANSWER: usize = 64 * 1024;

pub struct HttpWebhook {
    http: reqwest::Client,
}

impl HttpWebhook {
    pub fn new(timeout: Duration, own_ca_pem: &str, extra_ca: Option<&Path>) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let bundle = std::env::var("SSL_CERT_FILE").unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into());
        if let Ok(pem) = std::fs::read(&bundle) {
            for c in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                let _ = roots.add(c);
            }
        }
        for c in rustls_pemfile::certs(&mut own_ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        if let Some(ca) = extra_ca {
            let pem = std::fs::read(ca).with_context(|| format!("webhook_ca_file {}", ca.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots.add(c?)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http })
    }
}

#[async_trait]
impl AllocationWebhook for HttpWebhook {
    async fn call(&self, url: &str, body: &serde_json::Value) -> Result<(u16, Vec<u8>), WebhookError> {
        let mut r = self.http.post(url).json(body).send().await.map_err(transport)?;
        let status = r.status().as_u16();
        if r.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return Err(WebhookError::TooLarge(MAX_ANSWER));
        }
        let mut answer = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(transport)? {
            if answer.len() + chunk.len() > MAX_ANSWER {
                return Err(WebhookError::TooLarge(MAX_ANSWER));
            }
            answer.extend_from_slice(&chunk);
        }
        Ok((status, answer))
    }
}

/// A client error without the URL (its query holds the function key) and with its causes.
fn transport(e: reqwest::Error) -> WebhookError {
    if e.is_timeout() {
        return WebhookError::Timeout;
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    WebhookError::Transport(text)
}

/// Measures the round-trip time to each linked hub's endpoint (TCP connect to port 443) every minute, for
/// the lowest-latency policy (see `dps_core::regions`).
pub async fn measure_hub_latency(
    hubs: Arc<dyn dps_core::ports::HubStore>,
    regions: dps_core::regions::RegionModel,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Ok(list) = hubs.list_hubs().await {
            for h in list {
                let host = h.host_name.clone();
                let addr = if host.contains(':') && !host.starts_with('[') { host.clone() } else { format!("{host}:443") };
                let started = std::time::Instant::now();
                let ok = matches!(tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&addr)).await, Ok(Ok(_)));
                if let Ok(mut m) = regions.measured.write() {
                    if ok {
                        m.insert(host.to_ascii_lowercase(), started.elapsed().as_millis().min(u128::from(u32::MAX)) as u32);
                    } else {
                        m.remove(&host.to_ascii_lowercase());
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.changed() => break,
        }
    }
}
