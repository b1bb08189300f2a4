//! Issue #14: the custom allocation webhook seen from an attacker's side. Its function key (`?code=…`) never
//! reaches a trace or the log (also not through the HTTP client's error texts); a redirect is not followed; an
//! answer larger than 64 KB is refused without being read whole.

mod common;

use common::TestService;
use dps_service::config::Overrides;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const KEY: &str = "FUNCTION-KEY-3f9a";

/// Reads one HTTP request (headers and a `content-length` body); returns its head.
async fn read_request(tcp: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = tcp.read(&mut chunk).await else { return String::new() };
        if n == 0 {
            return String::from_utf8_lossy(&buf).into_owned();
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some(end) = text.find("\r\n\r\n") else { continue };
        let length = text
            .lines()
            .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap_or(0)))
            .unwrap_or(0);
        if buf.len() >= end + 4 + length {
            return text.get(..end).unwrap_or_default().to_owned();
        }
    }
}

/// A webhook that answers every request with `answer` (raw HTTP bytes); counts the requests it got.
async fn raw_webhook(answer: Vec<u8>) -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let answer = answer.clone();
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                read_request(&mut tcp).await;
                let _ = tcp.write_all(&answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (addr, count)
}

fn fast_webhooks() -> Overrides {
    Overrides {
        webhook_timeout_secs: Some(2),
        webhook_retries: Some(1),
        webhook_retry_initial_ms: Some(20),
        webhook_retry_increment_ms: Some(20),
        ..Default::default()
    }
}

/// A custom-allocation group calling `url`; returns the derived key of device `id`.
async fn custom_group(s: &TestService, group: &str, url: &str, id: &str) -> String {
    let doc = json!({
        "enrollmentGroupId": group,
        "attestation": { "type": "symmetricKey" },
        "allocationPolicy": "custom",
        "customAllocationDefinition": { "webhookUrl": url, "apiVersion": "2021-10-01" },
    });
    let a = s.service(Method::PUT, &format!("/enrollmentGroups/{group}"), Some(doc)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["customAllocationDefinition"]["webhookUrl"], url, "the owner reads the URL back whole, as from Azure");
    let key = a.body["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    dps_crypto::derive_device_key(&key, id).expect("derives the device key")
}

async fn trace(s: &TestService, id: &str) -> Value {
    s.service(Method::GET, &format!("/registrations/{id}/trace"), None).await.body
}

/// The live log, as `dps serve` sets it up (the test process has no other subscriber).
fn capture_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dps_service::config::Config::load(dir.path().to_path_buf(), None, &std::collections::HashMap::new(), Overrides::default());
    dps_service::diagnostics::init_logging(&config.expect("config"));
}

/// The live log's lines of one device.
async fn log_text(s: &TestService, id: &str) -> String {
    s.service(Method::GET, &format!("/diagnostics/logs?limit=2000&registrationId={id}"), None).await.body.to_string()
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let s = TestService::start_with(fast_webhooks()).await;
    let (elsewhere, reached) = raw_webhook(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec()).await;
    let redirect = format!("HTTP/1.1 302 Found\r\nlocation: http://{elsewhere}/steal\r\ncontent-length: 0\r\n\r\n");
    let (hook, _) = raw_webhook(redirect.into_bytes()).await;
    let dk = custom_group(&s, "redirected", &format!("http://{hook}/api/allocate?code={KEY}"), "dev-r").await;
    let done = s.provision("dev-r", &dk).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 400207, "{}", done.body);
    assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0, "the redirect's target was called");
    let t = trace(&s, "dev-r").await;
    assert_eq!(t["trace"]["allocation"]["attempts"][0]["status"], 302, "{t}");
    assert!(t["trace"]["error"].to_string().contains("redirect"), "{t}");
}

#[tokio::test]
async fn an_oversized_answer_is_refused_and_not_retried() {
    let s = TestService::start_with(fast_webhooks()).await;
    // 200 KB in chunks, without a content-length: the cap must hold while reading.
    let mut answer = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n".to_vec();
    for _ in 0..200 {
        answer.extend_from_slice(format!("{:x}\r\n{}\r\n", 1024, " ".repeat(1024)).as_bytes());
    }
    answer.extend_from_slice(b"0\r\n\r\n");
    let (hook, calls) = raw_webhook(answer).await;
    let dk = custom_group(&s, "chatty", &format!("http://{hook}/api/allocate?code={KEY}"), "dev-big").await;
    let done = s.provision("dev-big", &dk).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 400207, "{}", done.body);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1, "a final answer is not retried");
    let t = trace(&s, "dev-big").await;
    let attempt = &t["trace"]["allocation"]["attempts"][0];
    assert!(attempt["error"].as_str().is_some_and(|e| e.contains("larger than 65536 bytes")), "{t}");
}

#[tokio::test]
async fn the_function_key_stays_out_of_traces_and_logs() {
    capture_logs();
    let s = TestService::start_with(fast_webhooks()).await;
    // Accepts and closes at once: the HTTP client's error names the URL it failed on.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            drop(tcp);
        }
    });
    let dk = custom_group(&s, "keyed", &format!("http://{addr}/api/allocate?code={KEY}"), "dev-k").await;
    let done = s.provision("dev-k", &dk).await;
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    let t = trace(&s, "dev-k").await;
    let attempts = t["trace"]["allocation"]["attempts"].to_string();
    assert!(attempts.contains("error"), "the attempts say what failed: {t}");
    assert!(!t.to_string().contains(KEY), "the function key is in the trace: {t}");
    // The live log (written as the lines are logged).
    let logs = log_text(&s, "dev-k").await;
    assert!(logs.contains("webhook"), "the log has the registration's lines: {logs}");
    assert!(!logs.contains(KEY), "the function key is in the log");
}
