//! The bad-input corpus (#14 item 7): every case in `tests/bad_input/*.toml` is sent to a `dps serve` of its own
//! (a child process, port-0 listeners, short deadlines) — malformed, oversized, truncated, slow and out-of-order
//! input on every listener — and checked against what the case expects (an HTTP status and DPS code, an MQTT
//! CONNACK code, bytes such as an AMQP close condition, or the connection closed by the server).
//!
//! Around the cases the runner checks what must hold whatever a peer sends:
//! - the process is alive after every round;
//! - a legitimate device provisions *during* the rounds (a device registers over HTTPS in a loop, none may fail)
//!   and *after* them over HTTPS, MQTT and AMQP;
//! - memory returns to its baseline: the server's resident memory after three more rounds stays within a slack of
//!   what it was after the first (warm-up) round — a leak per bad input would grow it round by round.
//!
//! A case file holds `[[case]]` tables:
//! ```toml
//! [[case]]
//! name = "what it shows"
//! listener = "https"          # https | console | mqtt | amqp
//! tls = true                  # default true; false sends the bytes on the bare TCP connection
//! send = [ { text = "GET / HTTP/1.1\r\n" }, { hex = "10ff" }, { text = "A", repeat = 1000 },
//!          { pause_ms = 100 }, { text = "slow", drip_ms = 300 }, { shutdown = true },
//!          { mqtt_connect = { client_id = "d", username = "{scope}/registrations/d/api-version=2021-06-01",
//!            password = "{device_auth}", keep_alive = 60 } }, { mqtt_subscribe = "$dps/registrations/res/#" },
//!          { mqtt_publish = { topic = "…", payload = "{}", pkid = 2 } } ]
//! expect = { status = 400, code = 400001 }   # or closed = true, mqtt_connack = 5, contains = "framing-error"
//! ```
//! Texts may use `{scope}`, `{host}`, `{device_auth}` (a valid SAS of the device `bad-input-device`) and
//! `{service_auth}` (a valid service-API SAS of the owner policy).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dps_proto::RegistrationStatus;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the server may take to answer or close a case (the slow cases rely on deadlines of 1–2 s).
const CASE_TIMEOUT: Duration = Duration::from_secs(30);
/// Cases run this many at a time (each from 127.0.0.1; below the per-address connection cap).
const PARALLEL: usize = 8;
/// Rounds after the warm-up round; the resident memory after them is compared with the one after the warm-up.
const ROUNDS: usize = 3;
/// Memory growth tolerated over the rounds: allocator caches and the log ring fill, then stay.
const RSS_SLACK_KB: u64 = 48 * 1024;

/// The service's deadlines and caps for this run: short, so that slow cases end quickly.
const SERVE_ENV: &[(&str, &str)] = &[
    ("DPS_HTTP_HANDSHAKE_TIMEOUT_SECS", "3"),
    ("DPS_HTTP_IDLE_TIMEOUT_SECS", "3"),
    ("DPS_HTTP_BODY_TIMEOUT_SECS", "3"),
    ("DPS_WRITE_TIMEOUT_SECS", "3"),
    ("DPS_MQTT_CONNECT_TIMEOUT_SECS", "2"),
    ("DPS_MQTT_MAX_KEEP_ALIVE_SECS", "2"),
    ("DPS_MQTT_PACKET_TIMEOUT_SECS", "2"),
    ("DPS_AMQP_HANDSHAKE_TIMEOUT_SECS", "3"),
    ("DPS_AMQP_FRAME_TIMEOUT_SECS", "2"),
    ("DPS_AMQP_IDLE_TIMEOUT_SECS", "3"),
];

#[derive(Debug, Deserialize)]
struct CaseFile {
    #[serde(rename = "case")]
    cases: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    listener: Listener,
    #[serde(default = "yes")]
    tls: bool,
    /// The client reads nothing for this long (a peer that stops reading).
    #[serde(default)]
    read_after_ms: u64,
    send: Vec<Step>,
    expect: Expect,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
enum Listener {
    Https,
    Console,
    Mqtt,
    Amqp,
}

/// One thing to do on the connection; exactly one of the members is set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    text: Option<String>,
    hex: Option<String>,
    /// Sends `text`/`hex` this many times.
    repeat: Option<usize>,
    /// Sends `text`/`hex` one byte at a time, this many milliseconds apart.
    drip_ms: Option<u64>,
    pause_ms: Option<u64>,
    /// Closes the writing half.
    shutdown: Option<bool>,
    /// An MQTT 3.1.1 CONNECT, encoded by rumqttc.
    mqtt_connect: Option<MqttConnect>,
    /// An MQTT PUBLISH (QoS 1 when `pkid` is set, else 0).
    mqtt_publish: Option<MqttPublish>,
    /// An MQTT SUBSCRIBE of this filter (QoS 1, packet id 1).
    mqtt_subscribe: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttConnect {
    client_id: String,
    username: Option<String>,
    #[serde(default)]
    password: String,
    #[serde(default)]
    keep_alive: u16,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttPublish {
    topic: String,
    #[serde(default)]
    payload: String,
    pkid: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// The HTTP status of the (first) response.
    status: Option<u16>,
    /// The DPS `errorCode` of the response body.
    code: Option<u32>,
    /// The return code of the MQTT CONNACK.
    mqtt_connack: Option<u8>,
    /// Bytes the answer contains (e.g. an AMQP error condition).
    contains: Option<String>,
    /// The server closes the connection (EOF or reset) within the case timeout.
    closed: Option<bool>,
}

/// What the runner substitutes into texts.
struct Vars {
    scope: String,
    host: String,
    device_auth: String,
    service_auth: String,
}

impl Vars {
    fn fill(&self, text: &str) -> String {
        text.replace("{scope}", &self.scope)
            .replace("{host}", &self.host)
            .replace("{device_auth}", &self.device_auth)
            .replace("{service_auth}", &self.service_auth)
    }
}

/// A `dps serve` on a temporary data directory, killed (by its handle) when dropped.
struct Serve {
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let child = Command::new(env!("CARGO_BIN_EXE_dps"))
            .args(["serve", "--data-dir", data.to_str().expect("utf-8 path"), "--log", "warn"])
            .args(["--https-port", "0", "--mqtt-port", "0", "--amqp-port", "0", "--console-port", "0"])
            .env_remove("DPS_DATA_DIR")
            .env_remove("DPS_CONFIG")
            .envs(SERVE_ENV.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dps serve starts");
        let mut s = Self { child, dir };
        for _ in 0..1200 {
            if s.data().join("endpoint.json").exists() {
                return s;
            }
            s.assert_alive("starting");
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("dps serve wrote no endpoint.json")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn assert_alive(&mut self, when: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("dps serve exited ({status}) {when}");
        }
    }

    /// Resident memory in KiB (`VmRSS` of /proc/PID/status).
    fn rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).expect("VmRSS")
    }

    /// Runs `dps args… --data-dir <data> --output json` and returns its JSON answer.
    fn dps_json(&self, args: &[&str]) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_dps"))
            .args(args)
            .args(["--data-dir", self.data().to_str().expect("utf-8 path"), "--output", "json"])
            .env_remove("DPS_DATA_DIR")
            .env_remove("DPS_CONNECTION_STRING")
            .output()
            .expect("dps runs");
        assert!(out.status.success(), "dps {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON answer")
    }
}

/// Where the service listens, whom to trust, and the legitimate devices' group key.
struct Target {
    ports: BTreeMap<Listener, u16>,
    endpoint: dps_device::Endpoint,
    tls: Arc<rustls::ClientConfig>,
    group_key: String,
    vars: Vars,
}

fn target(serve: &Serve) -> Target {
    let info: dps_proto::EndpointInfo =
        serde_json::from_slice(&std::fs::read(serve.data().join("endpoint.json")).expect("endpoint.json")).expect("endpoint.json");
    let port = |p: Option<u16>, what: &str| p.unwrap_or_else(|| panic!("no {what} port in endpoint.json"));
    let ports = BTreeMap::from([
        (Listener::Https, port(info.ports.https, "https")),
        (Listener::Console, port(info.ports.console, "console")),
        (Listener::Mqtt, port(info.ports.mqtt, "mqtt")),
        (Listener::Amqp, port(info.ports.amqp, "amqp")),
    ]);
    let ca_pem = std::fs::read(&info.ca_certificate).expect("CA file");
    let https = ports[&Listener::Https];
    let endpoint = dps_device::Endpoint { host: format!("localhost:{https}"), id_scope: info.id_scope.clone(), ca_pem };
    let tls = Arc::new(dps_device::tls_config(&endpoint.ca_pem).expect("TLS client"));
    let group = serve.dps_json(&["enrollment-group", "create", "--group-id", "bad-input-legit"]);
    let group_key = group["attestation"]["symmetricKey"]["primaryKey"].as_str().expect("group key").to_owned();
    let device_key = dps_crypto::derive_device_key(&group_key, "bad-input-device").expect("derived key");
    let device_auth =
        dps_device::device_sas(&info.id_scope, "bad-input-device", &device_key, Duration::from_secs(3600)).expect("device SAS");
    let service_auth = service_sas(&info.service_connection_string);
    let vars = Vars { scope: info.id_scope, host: endpoint.host.clone(), device_auth, service_auth };
    Target { ports, endpoint, tls, group_key, vars }
}

/// A service-API SAS of a `HostName=…;SharedAccessKeyName=…;SharedAccessKey=…` connection string.
fn service_sas(connection_string: &str) -> String {
    let part = |name: &str| {
        connection_string
            .split(';')
            .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{name} in the connection string"))
            .to_owned()
    };
    let (host, key_name, key) = (part("HostName"), part("SharedAccessKeyName"), part("SharedAccessKey"));
    let key = dps_crypto::decode_key(&key).expect("owner key");
    let se = 4_102_444_800; // 2100-01-01: the token only has to outlive the test
    let sr = percent_encoding::utf8_percent_encode(&host.to_lowercase(), percent_encoding::NON_ALPHANUMERIC).to_string();
    let sig = dps_crypto::sign(&key, &sr, se);
    let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
    format!("SharedAccessSignature sr={sr}&sig={sig}&se={se}&skn={key_name}")
}

fn cases() -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad_input");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/bad_input")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("case file");
        let file: CaseFile = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        for case in &file.cases {
            check_case(case).unwrap_or_else(|e| panic!("{}: case {:?}: {e}", f.display(), case.name));
        }
        all.extend(file.cases);
    }
    all
}

/// A case the runner could not judge is a mistake in the corpus, not a pass.
fn check_case(case: &Case) -> Result<(), String> {
    let e = &case.expect;
    if e.status.is_none() && e.mqtt_connack.is_none() && e.contains.is_none() && e.closed.is_none() {
        return Err("expects nothing".into());
    }
    if e.code.is_some() && e.status.is_none() {
        return Err("a DPS code needs its HTTP status".into());
    }
    for s in &case.send {
        let set = [
            s.text.is_some(),
            s.hex.is_some(),
            s.pause_ms.is_some(),
            s.shutdown.is_some(),
            s.mqtt_connect.is_some(),
            s.mqtt_publish.is_some(),
            s.mqtt_subscribe.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            return Err(format!("a step sets exactly one of text, hex, pause_ms, shutdown, mqtt_*: {s:?}"));
        }
    }
    Ok(())
}

fn bytes_of(step: &Step, vars: &Vars) -> Vec<u8> {
    let one = match (&step.text, &step.hex) {
        (Some(t), _) => vars.fill(t).into_bytes(),
        (None, Some(h)) => decode_hex(h),
        (None, None) => mqtt_packet(step, vars),
    };
    one.repeat(step.repeat.unwrap_or(1))
}

fn mqtt_packet(step: &Step, vars: &Vars) -> Vec<u8> {
    use rumqttc::mqttbytes::{v4, QoS};
    let mut buf = bytes::BytesMut::new();
    let written = if let Some(c) = &step.mqtt_connect {
        let mut p = v4::Connect::new(vars.fill(&c.client_id));
        p.keep_alive = c.keep_alive;
        if let Some(user) = &c.username {
            p.set_login(vars.fill(user), vars.fill(&c.password));
        }
        p.write(&mut buf)
    } else if let Some(m) = &step.mqtt_publish {
        let qos = if m.pkid.is_some() { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        let mut p = v4::Publish::new(vars.fill(&m.topic), qos, vars.fill(&m.payload));
        p.pkid = m.pkid.unwrap_or(0);
        p.write(&mut buf)
    } else if let Some(filter) = &step.mqtt_subscribe {
        let mut p = v4::Subscribe::new(vars.fill(filter), QoS::AtLeastOnce);
        p.pkid = 1;
        p.write(&mut buf)
    } else {
        Ok(0)
    };
    written.expect("the case's MQTT packet encodes");
    buf.to_vec()
}

fn decode_hex(h: &str) -> Vec<u8> {
    let digits: Vec<u8> = h.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits.chunks(2).map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("hex"), 16).expect("hex digits")).collect()
}

/// What the server did: the bytes it sent, and whether it closed the connection.
struct Answer {
    bytes: Vec<u8>,
    closed: bool,
}

async fn run_case(case: &Case, target: &Target) -> Result<(), String> {
    let port = target.ports[&case.listener];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let answer = if case.tls {
        let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(&target.tls));
        match connector.connect(name, tcp).await {
            Ok(stream) => converse(stream, case, &target.vars).await,
            Err(e) => return Err(format!("TLS handshake: {e}")),
        }
    } else {
        converse(tcp, case, &target.vars).await
    };
    judge(&case.expect, &answer)
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(stream: S, case: &Case, vars: &Vars) -> Answer {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let reader = async {
        let deadline = tokio::time::Instant::now() + CASE_TIMEOUT;
        tokio::time::sleep(Duration::from_millis(case.read_after_ms)).await;
        let mut bytes = Vec::new();
        let mut buf = [0u8; 8192];
        let closed = loop {
            match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
                Err(_) => break false,
                Ok(Ok(0) | Err(_)) => break true,
                Ok(Ok(n)) => bytes.extend_from_slice(buf.get(..n).unwrap_or_default()),
            }
            if bytes.len() > 1 << 20 {
                break false;
            }
        };
        Answer { bytes, closed }
    };
    let writer = async {
        for step in &case.send {
            if send_step(&mut wr, step, vars).await.is_err() {
                break; // the server closed: what it said is read by the reader
            }
        }
        // Keeps the writing half open (a case closes it with `shutdown`) until the reader is done.
        std::future::pending::<Answer>().await
    };
    tokio::select! {
        a = reader => a,
        never = writer => never,
    }
}

async fn send_step<W: AsyncWrite + Unpin>(wr: &mut W, step: &Step, vars: &Vars) -> std::io::Result<()> {
    if let Some(ms) = step.pause_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(());
    }
    if step.shutdown == Some(true) {
        return wr.shutdown().await;
    }
    let bytes = bytes_of(step, vars);
    match step.drip_ms {
        Some(ms) => {
            for b in bytes {
                wr.write_all(&[b]).await?;
                wr.flush().await?;
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Ok(())
        }
        None => {
            wr.write_all(&bytes).await?;
            wr.flush().await
        }
    }
}

fn judge(expect: &Expect, answer: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&answer.bytes);
    let shown = || text.chars().take(400).collect::<String>();
    if let Some(status) = expect.status {
        let got = text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)).and_then(|s| s.parse::<u16>().ok());
        if got != Some(status) {
            return Err(format!("expected HTTP {status}, got {got:?}: {}", shown()));
        }
    }
    if let Some(code) = expect.code {
        let got = text
            .split_once("\"errorCode\":")
            .and_then(|(_, rest)| rest.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse::<u32>().ok());
        if got != Some(code) {
            return Err(format!("expected DPS code {code}, got {got:?}: {}", shown()));
        }
    }
    if let Some(rc) = expect.mqtt_connack {
        let got = answer.bytes.windows(4).find(|w| w.first() == Some(&0x20) && w.get(1) == Some(&2)).and_then(|w| w.get(3).copied());
        if got != Some(rc) {
            return Err(format!("expected CONNACK {rc}, got {got:?} in {:02x?}", answer.bytes.iter().take(64).collect::<Vec<_>>()));
        }
    }
    if let Some(needle) = &expect.contains {
        if !answer.bytes.windows(needle.len().max(1)).any(|w| w == needle.as_bytes()) {
            return Err(format!("expected the answer to contain {needle:?}: {}", shown()));
        }
    }
    if expect.closed == Some(true) && !answer.closed {
        return Err(format!("expected the server to close the connection within {CASE_TIMEOUT:?}; it said: {}", shown()));
    }
    Ok(())
}

/// Runs every case once, `PARALLEL` at a time; returns the failures.
async fn round(cases: &[Case], target: &Arc<Target>) -> Vec<String> {
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    let mut tasks = tokio::task::JoinSet::new();
    for case in cases.iter().cloned() {
        let (target, limit) = (Arc::clone(target), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            run_case(&case, &target).await.err().map(|e| format!("{}: {e}", case.name))
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Some(f) = done.unwrap_or_else(|e| Some(format!("case task: {e}"))) {
            failures.push(f);
        }
    }
    failures
}

/// Registers devices over HTTPS one after another until `stop`; counts successes and keeps failures.
async fn legitimate_devices(target: Arc<Target>, stop: Arc<AtomicBool>, ok: Arc<AtomicUsize>) -> Vec<String> {
    let device = dps_device::HttpsDevice::new(target.endpoint.clone(), dps_device::Polling::RetryAfter).expect("device");
    let mut failures = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let id = format!("legit-during-{n}");
        let key = dps_crypto::derive_device_key(&target.group_key, &id).expect("derived key");
        match device.provision_symmetric_key(&id, &key).await {
            Ok(s) if s.status == RegistrationStatus::Assigned => {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(s) => failures.push(format!("{id}: {s:?}")),
            Err(e) => failures.push(format!("{id}: {e:#}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    failures
}

/// One device over each transport, after the rounds.
async fn legitimate_after(target: &Target) {
    let key = |id: &str| dps_crypto::derive_device_key(&target.group_key, id).expect("derived key");
    let https = dps_device::HttpsDevice::new(target.endpoint.clone(), dps_device::Polling::RetryAfter).expect("device");
    let s = https.provision_symmetric_key("legit-after-https", &key("legit-after-https")).await.expect("HTTPS device after");
    assert_eq!(s.status, RegistrationStatus::Assigned, "HTTPS device after the bad input: {s:?}");
    let port = target.ports[&Listener::Mqtt];
    let mut mqtt = dps_device::mqtt::MqttSession::connect(&target.endpoint, port, "legit-after-mqtt", &key("legit-after-mqtt"))
        .await
        .expect("MQTT device connects after");
    let s = mqtt.provision("legit-after-mqtt", dps_device::Polling::RetryAfter).await.expect("MQTT device after");
    assert_eq!(s.status, RegistrationStatus::Assigned, "MQTT device after the bad input: {s:?}");
    let port = target.ports[&Listener::Amqp];
    let mut amqp = dps_device::amqp::AmqpSession::connect(&target.endpoint, port, "legit-after-amqp", &key("legit-after-amqp"))
        .await
        .expect("AMQP device connects after");
    let s = amqp.provision("legit-after-amqp", dps_device::Polling::RetryAfter).await.expect("AMQP device after");
    assert_eq!(s.status, RegistrationStatus::Assigned, "AMQP device after the bad input: {s:?}");
}

#[test]
fn the_service_holds_under_the_bad_input_corpus() {
    let cases = cases();
    assert!(cases.len() >= 40, "the corpus has {} cases", cases.len());
    let mut serve = Serve::start();
    let target = Arc::new(target(&serve));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, ok) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let during = rt.spawn(legitimate_devices(Arc::clone(&target), Arc::clone(&stop), Arc::clone(&ok)));

    let warm_up = rt.block_on(round(&cases, &target));
    assert!(warm_up.is_empty(), "{} of {} cases failed:\n{}", warm_up.len(), cases.len(), warm_up.join("\n"));
    serve.assert_alive("after the warm-up round");
    let baseline = serve.rss_kb();
    for n in 1..=ROUNDS {
        let failures = rt.block_on(round(&cases, &target));
        assert!(failures.is_empty(), "round {n}: {} cases failed:\n{}", failures.len(), failures.join("\n"));
        serve.assert_alive(&format!("after round {n}"));
    }
    let after = serve.rss_kb();

    stop.store(true, Ordering::Relaxed);
    let failures = rt.block_on(during).expect("legitimate device task");
    assert!(failures.is_empty(), "legitimate devices failed during the bad input:\n{}", failures.join("\n"));
    assert!(ok.load(Ordering::Relaxed) > 0, "no legitimate device provisioned during the bad input");
    rt.block_on(legitimate_after(&target));
    serve.assert_alive("at the end");
    assert!(
        after <= baseline + RSS_SLACK_KB,
        "resident memory grew from {baseline} KiB after the warm-up to {after} KiB after {ROUNDS} more rounds"
    );
}
