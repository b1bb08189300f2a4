//! The desktop app end to end (issue: console, "Desktop"): under Xvfb, tauri-driver starts the real
//! `dps-console` binary (built with `custom-protocol`, so it shows the embedded ui/dist) through
//! WebKitWebDriver; the embedded service answers on its own ports; the window shows the service's ID scope,
//! and a click goes to the Enrollments page, where an enrollment created through the form appears — the
//! window's API calls reach the embedded service through the shell; the notification preference (Settings)
//! lands in `<data-dir>/desktop.json`.
//!
//! Run with `make test-desktop` (= `xvfb-run -a cargo test --manifest-path src-tauri/Cargo.toml --features
//! custom-protocol`). It writes a screenshot and the measured start-up time and idle memory to
//! `test-artifacts/desktop/`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

const APP: &str = env!("CARGO_BIN_EXE_dps-console");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// tauri-driver, stopped with SIGTERM (on SIGKILL it leaves WebKitWebDriver running).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-artifacts/desktop");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

async fn wait_for(c: &Client, css: &str, timeout: Duration) -> fantoccini::elements::Element {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            return e;
        }
        if Instant::now() > deadline {
            let shot = c.screenshot().await.unwrap_or_default();
            let _ = std::fs::write(artifacts().join("failure.png"), shot);
            panic!("{css} did not appear within {timeout:?} (screenshot in test-artifacts/desktop/failure.png)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_text(c: &Client, css: &str, want: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.text().await.expect("reads the body").contains(want) {
                return;
            }
        }
        if Instant::now() > deadline {
            panic!("{css} never showed '{want}' within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resident memory (KiB) of a process and its descendants (WebKit's web and network processes).
fn rss_tree_kib(root: u32) -> (u64, u64) {
    let mut own = 0;
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else { return (0, 0) };
    let procs: Vec<(u32, u32, u64)> = entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |k: &str| status.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
            Some((pid, u32::try_from(field("PPid:")?).ok()?, field("VmRSS:").unwrap_or(0)))
        })
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(procs.iter().filter(|(_, pp, _)| *pp == parent).map(|(p, _, _)| *p));
        i += 1;
    }
    for (pid, _, rss) in &procs {
        if *pid == root {
            own = *rss;
        }
        if tree.contains(pid) {
            total += rss;
        }
    }
    (own, total)
}

fn app_pid() -> Option<u32> {
    let want = std::fs::canonicalize(APP).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(format!("/proc/{pid}/exe")).ok()? == want).then_some(pid)
    })
}

fn https_client(ca_pem: &[u8]) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]).flatten() {
        roots.add(c).expect("add");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("with safe default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().use_preconfigured_tls(tls).timeout(Duration::from_secs(10)).build().expect("builds")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_runs_the_service_and_clicks_through_to_enrollments() {
    assert!(std::env::var_os("DISPLAY").is_some(), "needs a display: run it with `make test-desktop` (xvfb-run)");
    let data = tempfile::tempdir().expect("a temporary directory");
    let (port, native) = (free_port(), free_port());
    // The app inherits tauri-driver's environment: its own data directory and free ports.
    let driver = Command::new("tauri-driver")
        .args(["--port", &port.to_string(), "--native-port", &native.to_string()])
        .env("DPS_DATA_DIR", data.path())
        .env("DPS_HTTPS_PORT", "0")
        .env("DPS_MQTT_PORT", "0")
        .env("DPS_CONSOLE_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("tauri-driver (scripts/setup-ui.sh installs it): {e}"));
    let _driver = Driver(driver);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tauri-driver did not listen on {port}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), "wry".into());
    caps.insert("tauri:options".into(), serde_json::json!({ "application": APP }));
    // tauri-driver listens before its WebKitWebDriver does: a failed first request is retried (for 20 s). The
    // session's creation starts the app.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (c, launched) = loop {
        let launched = Instant::now();
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => break (c, launched),
            Err(e) if Instant::now() > deadline => panic!("WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };

    // The window shows the embedded service's ID scope: start-up is done.
    let scope_el = wait_for(&c, "[data-testid=overview-id-scope]", Duration::from_secs(60)).await;
    let endpoint: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.path().join("endpoint.json")).expect("reads the file")).expect("parses");
    let scope = endpoint["idScope"].as_str().unwrap_or_default().to_owned();
    assert!(!scope.is_empty(), "endpoint.json: {endpoint}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !scope_el.text().await.expect("reads the body").contains(&scope) {
        assert!(Instant::now() < deadline, "the overview never showed {scope}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let startup = launched.elapsed();

    // The desktop keeps its master key in the OS keyring (`make test-desktop` gives it a throw-away GNOME Keyring):
    // no key file, a marker naming the entry, and the entry readable with libsecret's secret-tool.
    assert!(std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(), "needs a D-Bus session: run it with `make test-desktop`");
    assert!(!data.path().join("master.key").exists(), "the desktop wrote a key file instead of using the keyring");
    let marker: serde_json::Value = serde_json::from_slice(&std::fs::read(data.path().join("master.key.keyring")).expect("reads the file"))
        .unwrap_or_else(|e| panic!("master.key.keyring: {e}"));
    let account = marker["account"].as_str().unwrap_or_default();
    let lookup = Command::new("secret-tool")
        .args(["lookup", "service", marker["service"].as_str().unwrap_or_default(), "username", account])
        .output()
        .unwrap_or_else(|e| panic!("secret-tool: {e}"));
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, String::from_utf8_lossy(&lookup.stdout).trim())
        .expect("decodes");
    assert_eq!(key.len(), 32, "the keyring holds no 32-byte key for {account}");

    // The embedded service answers devices and clients on its own port, with its CA.
    let ca = std::fs::read(data.path().join("ca.pem")).unwrap_or_else(|e| panic!("ca.pem: {e}"));
    let https = endpoint["ports"]["https"].as_u64().unwrap_or_default();
    let answer = https_client(&ca)
        .get(format!("https://127.0.0.1:{https}/service/ca.pem"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("the embedded service does not answer: {e}"));
    assert_eq!(answer.status(), 200);

    // Through to the enrollments page; an enrollment made with the form lands in the embedded service.
    wait_for(&c, "[data-testid=nav-enrollments]", Duration::from_secs(10)).await.click().await.expect("click");
    wait_for_text(&c, "[data-testid=page-title]", "Enrollments", Duration::from_secs(10)).await;
    wait_for(&c, "[data-testid=enrollment-new]", Duration::from_secs(10)).await.click().await.expect("click");
    wait_for(&c, "[data-testid=form-registration-id]", Duration::from_secs(10)).await.send_keys("desk-1").await.expect("send keys");
    wait_for(&c, "[data-testid=form-submit]", Duration::from_secs(10)).await.click().await.expect("click");
    wait_for(&c, "[data-testid=enrollment-row][data-id=desk-1]", Duration::from_secs(20)).await;
    let shot = c.screenshot().await.expect("screenshot");
    std::fs::write(artifacts().join("enrollments.png"), shot).expect("writes");

    // The desktop's own preference: notifications on failed registrations, off until switched on in Settings,
    // kept in <data-dir>/desktop.json.
    assert!(!data.path().join("desktop.json").exists());
    wait_for(&c, "[data-testid=nav-settings]", Duration::from_secs(10)).await.click().await.expect("click");
    wait_for(&c, "[data-testid=settings-notify]", Duration::from_secs(20)).await.click().await.expect("click");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let prefs: serde_json::Value =
            serde_json::from_slice(&std::fs::read(data.path().join("desktop.json")).expect("reads the file")).expect("parses");
        if prefs["notifyFailedRegistrations"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "desktop.json never said notifyFailedRegistrations: true ({prefs})");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Idle: a few seconds with nothing to do, then the app's memory (its own and with WebKit's processes).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (own, total) = app_pid().map(rss_tree_kib).unwrap_or_default();
    assert!(own > 0, "the app process was not found");
    let report = format!(
        "desktop start-up to the first rendered page with the service's scope: {} ms\nidle RSS: app {} MB, app + WebKit processes {} MB\n",
        startup.as_millis(),
        own / 1024,
        total / 1024
    );
    print!("{report}");
    std::fs::write(artifacts().join("measurements.txt"), report).expect("writes");
    c.close().await.unwrap_or_else(|e| panic!("closing the session: {e}"));
}
