//! Crash consistency: the service is killed with SIGKILL at injected points of a registration
//! (`dps_core::failpoint`: after the operation is accepted, after the hub identity is created, after the
//! record is written), then started again on the same data directory. Whatever the point, the device's poll
//! answers `assigned` — the same answer every time —, the hub holds exactly one identity with the enrollment's
//! initial twin, and nothing the service acknowledged is lost.
//!
//! The service runs in a child process: this test binary started again with `--serve <dir>` (no test harness,
//! `harness = false`), so the kill is a real one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const POINTS: [&str; 3] = ["engine.accepted", "engine.identity-created", "engine.finished"];
const HUB: &str = "local-hub.dps.local";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let dir = args.get(i + 1).map(PathBuf::from).unwrap_or_else(|| panic!("--serve needs a directory"));
        serve(&dir);
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("builds");
    let mut failed = 0;
    for point in POINTS {
        let started = Instant::now();
        match runtime.block_on(scenario(point)) {
            Ok(()) => println!("test crash at {point} ... ok ({:.1} s)", started.elapsed().as_secs_f64()),
            Err(e) => {
                println!("test crash at {point} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    println!("\ntest result: {}. {} passed; {failed} failed", if failed == 0 { "ok" } else { "FAILED" }, POINTS.len() - failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

/// The child: the service on `dir`, every listener on a free loopback port, until it is killed.
fn serve(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("builds");
    runtime.block_on(async {
        let flags = dps_service::config::Overrides {
            https_port: Some(0),
            mqtt_port: Some(0),
            amqp_port: Some(0),
            console_port: Some(0),
            bind: Some(std::net::Ipv4Addr::LOCALHOST.into()),
            ..Default::default()
        };
        let config = dps_service::config::Config::load(dir.into(), None, &Default::default(), flags).expect("loads");
        let listeners = dps_service::bind(&config).expect("binds");
        let _running = dps_service::start(&config, listeners, std::sync::Arc::new(dps_core::SystemClock)).await.expect("start");
        println!("READY");
        std::future::pending::<()>().await;
    });
}

/// A running child and the lines it prints.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    http: reqwest::Client,
    base: String,
    scope: String,
    service_sas: String,
}

impl Served {
    fn start(dir: &Path, failpoint: Option<&str>) -> Result<Self, String> {
        let _ = std::fs::remove_file(dir.join("endpoint.json"));
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        cmd.arg("--serve").arg(dir).stdout(Stdio::piped()).stderr(Stdio::null()).env_remove("DPS_FAILPOINT");
        if let Some(p) = failpoint {
            cmd.env("DPS_FAILPOINT", p);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served =
            Self { child, lines, http: reqwest::Client::new(), base: String::new(), scope: String::new(), service_sas: String::new() };
        served.wait_for("READY", Duration::from_secs(30))?;
        let endpoint: Value =
            serde_json::from_slice(&std::fs::read(dir.join("endpoint.json")).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
        let ca = std::fs::read(endpoint["caCertificate"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?;
        let cert = reqwest::Certificate::from_pem(&ca).map_err(|e| e.to_string())?;
        served.http = reqwest::Client::builder().add_root_certificate(cert).build().map_err(|e| e.to_string())?;
        served.base = format!("https://127.0.0.1:{}", endpoint["ports"]["https"].as_u64().unwrap_or_default());
        served.scope = endpoint["idScope"].as_str().unwrap_or_default().to_owned();
        let cs = endpoint["serviceConnectionString"].as_str().unwrap_or_default();
        let key = cs.rsplit("SharedAccessKey=").next().unwrap_or_default();
        let se = now() + 3600;
        let host = "127.0.0.1";
        let sig = dps_crypto::sign(&dps_crypto::decode_key(key).expect("decodes the key"), host, se);
        served.service_sas = format!("SharedAccessSignature sr={host}&sig={}&se={se}&skn=provisioningserviceowner", encode(&sig));
        Ok(served)
    }

    fn wait_for(&self, what: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(what) => return Ok(()),
                Ok(_) => {}
                Err(_) => return Err(format!("the service never printed {what}")),
            }
        }
    }

    /// SIGKILL: no shutdown, no flush — what a power cut leaves.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn call(&self, method: reqwest::Method, path: &str, auth: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let mut rb = self.http.request(method, format!("{}{path}", self.base)).header("authorization", auth);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|e| e.to_string())?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    async fn service(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.call(method, &format!("{path}{sep}api-version=2021-10-01"), &self.service_sas.clone(), body).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn now() -> u64 {
    std::time::SystemTime::UNIX_EPOCH.elapsed().map(|d| d.as_secs()).unwrap_or_default()
}

fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn device_sas(scope: &str, id: &str, key: &str) -> String {
    let se = now() + 3600;
    let sr = format!("{scope}/registrations/{id}");
    let sig = dps_crypto::sign(&dps_crypto::decode_key(key).expect("decodes the key"), &sr, se);
    format!("SharedAccessSignature sr={sr}&sig={}&se={se}&skn=registration", encode(&sig))
}

async fn scenario(point: &'static str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let served = Served::start(dir.path(), Some(point))?;
    let id = "crash-device";
    let twin = json!({ "tags": { "line": "7" }, "properties": { "desired": { "rate": 5 } } });
    let (status, enrollment) = served
        .service(
            reqwest::Method::PUT,
            &format!("/enrollments/{id}"),
            Some(json!({ "registrationId": id, "attestation": { "type": "symmetricKey" }, "initialTwin": twin })),
        )
        .await?;
    if status != 200 {
        return Err(format!("enrollment: {status} {enrollment}"));
    }
    let key = enrollment["attestation"]["symmetricKey"]["primaryKey"].as_str().unwrap_or_default().to_owned();
    let sas = device_sas(&served.scope, id, &key);
    let path = format!("/{}/registrations/{id}/register?api-version=2021-06-01", served.scope);
    let (status, accepted) = served.call(reqwest::Method::PUT, &path, &sas, Some(json!({ "registrationId": id }))).await?;
    if status != 202 {
        return Err(format!("register: {status} {accepted}"));
    }
    let operation = accepted["operationId"].as_str().unwrap_or_default().to_owned();
    served.wait_for(&format!("FAILPOINT {point}"), Duration::from_secs(20))?;
    served.kill();

    let served = Served::start(dir.path(), None)?;
    let sas = device_sas(&served.scope, id, &key);
    let poll = format!("/{}/registrations/{id}/operations/{operation}?api-version=2021-06-01", served.scope);
    let mut answer = (0, Value::Null);
    for _ in 0..200 {
        answer = served.call(reqwest::Method::GET, &poll, &sas, None).await?;
        if answer.0 != 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, done) = answer;
    if status != 200 || done["status"] != "assigned" || done["registrationState"]["assignedHub"] != HUB {
        return Err(format!("after the restart the acknowledged operation answers {status} {done}"));
    }
    let (_, again) = served.call(reqwest::Method::GET, &poll, &sas, None).await?;
    if again != done {
        return Err(format!("the answer changed: {done} then {again}"));
    }
    let (_, record) = served.service(reqwest::Method::GET, &format!("/registrations/{id}"), None).await?;
    if record["status"] != "assigned" || record["etag"] != done["registrationState"]["etag"] {
        return Err(format!("the record disagrees with the answer: {record} vs {done}"));
    }
    let (_, identities) = served.service(reqwest::Method::GET, &format!("/linkedHubs/{HUB}/devices"), None).await?;
    let mine: Vec<&Value> = identities.as_array().into_iter().flatten().filter(|d| d["deviceId"] == id).collect();
    if mine.len() != 1 {
        return Err(format!("expected one hub identity, found {}: {identities}", mine.len()));
    }
    if mine[0]["initialTwin"]["tags"]["line"] != "7" {
        return Err(format!("the identity lost its twin: {}", mine[0]));
    }
    Ok(())
}
