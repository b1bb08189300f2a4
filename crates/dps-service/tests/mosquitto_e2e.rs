//! The whole chain with a REAL Mosquitto broker (≥ 2, dynamic-security plugin): a device registers with the
//! service over HTTPS (symmetric key), the service assigns it to a linked hub whose connector is `mosquitto`,
//! and the device then connects to that broker with the credentials it was given (username = device id,
//! password = its primary key). What the broker lets it do is the proof (§7.4).
//!
//! Needs the `mosquitto` Debian package (`scripts/setup.sh` installs it); without it the tests fail with
//! a message saying so.

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::TestService;
use dps_core::ports::DeviceRegistryStore;
use reqwest::Method;
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use serde_json::json;
use tokio::sync::mpsc;

// ---- The broker ----
//
// A minimal copy of the broker-start helper of `crates/dps-hub/tests/mosquitto.rs` (a separate test crate
// cannot import it): the same binaries, `dynsec init`, configuration and PID-based kill, with only the
// plain listener (these tests need no TLS), plus `stop` / `start_again` on the same port and directory.

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
const DYNSEC: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
const ADMIN_PASSWORD: &str = "admin-pass-0123";
const WAIT: Duration = Duration::from_secs(10);
/// The linked hub's name; the connector reaches the broker through the connection string, not this name.
const HUB: &str = "broker.lab:8883";
/// The service's built-in hub (bootstrapped at start).
const BUILTIN_HUB: &str = "local-hub.dps.local";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap_or_else(|e| panic!("{e}")).port()
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: these tests drive a real Mosquitto broker with its dynamic-security plugin — `apt-get install mosquitto` (scripts/setup.sh does)"
    );
}

/// A broker on 127.0.0.1:`port`. Dropping it kills the process (by its PID) and removes the directory.
struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- mosquitto's log ---\n{}", self.log());
        }
    }
}

impl Broker {
    fn start() -> Self {
        for p in [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC] {
            require(p);
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let dynsec = dir.path().join("dynsec.json");
        let init = Command::new(MOSQUITTO_CTRL)
            .args(["dynsec", "init"])
            .arg(&dynsec)
            .args(["admin", ADMIN_PASSWORD])
            .output()
            .unwrap_or_else(|e| panic!("{MOSQUITTO_CTRL}: {e}"));
        assert!(init.status.success(), "mosquitto_ctrl dynsec init: {}", String::from_utf8_lossy(&init.stderr));
        let port = free_port();
        // `user root`: when the tests run as root, mosquitto would otherwise switch to the `mosquitto`
        // user, who cannot read this directory (has no effect when not root).
        let conf = format!(
            "per_listener_settings false\nallow_anonymous false\npersistence false\nuser root\nlog_dest stderr\nlog_type all\n\
             plugin {DYNSEC}\nplugin_opt_config_file {}\n\
             listener {port} 127.0.0.1\n",
            dynsec.display(),
        );
        std::fs::write(dir.path().join("mosquitto.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
        let mut broker = Self { child: None, dir, port };
        broker.start_again();
        broker
    }

    /// (Re)starts the process on the same configuration, port and dynamic-security file.
    fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.file("mosquitto.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.file("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{MOSQUITTO}: {e}"));
        self.child = Some(child);
        self.wait_until_listening();
    }

    /// Kills the process by its PID and reaps it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.file("mosquitto.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("mosquitto exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "mosquitto is not listening on {}:\n{}", self.port, self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connection_string(&self) -> String {
        format!("mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.port)
    }
}

// ---- A device's MQTT session (as in `crates/dps-hub/tests/mosquitto.rs`, trimmed) ----

/// A device's MQTT session; its event loop runs in a task aborted on drop.
struct Device {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Connected = Result<Device, Box<ConnectionError>>;

impl Device {
    async fn connect(port: u16, client_id: &str, user: &str, password: &str) -> Connected {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_credentials(user, password);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, mut eventloop) = AsyncClient::new(opts, 16);
        let first = tokio::time::timeout(WAIT, async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Ok(_) => {}
                    Err(e) => return Err(Box::new(e)),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no CONNACK within {WAIT:?}"));
        first?;
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(p)) => {
                        if tx.send(p).is_err() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(_)) => {}
                    Err(_) => return,
                }
            }
        });
        Ok(Self { client, events, task })
    }

    /// The first incoming packet that `pick` selects (others are skipped).
    async fn next<T>(&mut self, what: &str, pick: impl Fn(&Packet) -> Option<T>) -> T {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(p) => {
                        if let Some(v) = pick(&p) {
                            return v;
                        }
                    }
                    None => panic!("the connection closed while waiting for {what}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap_or_else(|e| panic!("{e}"));
        self.next("SUBACK", |p| match p {
            Packet::SubAck(a) => a.return_codes.first().copied(),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK.
    async fn publish(&mut self, topic: &str, payload: &str) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap_or_else(|e| panic!("{e}"));
        self.next("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }

    /// (topic, payload) of the next message delivered.
    async fn message(&mut self) -> (String, String) {
        self.next("PUBLISH", |p| match p {
            Packet::Publish(m) => Some((m.topic.clone(), String::from_utf8_lossy(&m.payload).into_owned())),
            _ => None,
        })
        .await
    }
}

fn connected(r: Connected, who: &str) -> Device {
    r.unwrap_or_else(|e| panic!("{who} cannot connect: {e}"))
}

fn refused(r: Connected, who: &str) {
    match r {
        Err(e) if matches!(*e, ConnectionError::ConnectionRefused(_)) => {}
        Err(e) => panic!("{who}: expected CONNACK refusal, got {e}"),
        Ok(_) => panic!("{who} connected"),
    }
}

// ---- The service side ----

async fn link_broker(s: &TestService, broker: &Broker) {
    let a = s
        .service(
            Method::PUT,
            &format!("/linkedHubs/{HUB}"),
            Some(json!({ "hostName": HUB, "connector": "mosquitto", "connectionString": broker.connection_string() })),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("connectionString").is_none_or(|c| c.is_null()), "credentials are write-only: {}", a.body);
}

/// Registers over HTTPS, expects `assigned` to `hub`; returns the device id the service gave.
async fn assigned(s: &TestService, id: &str, key: &str, hub: &str) -> String {
    let done = s.provision(id, key).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "assigned", "{}", done.body);
    let r = &done.body["registrationState"];
    assert_eq!(r["assignedHub"], hub, "{}", done.body);
    let device_id = r["deviceId"].as_str().unwrap_or_default().to_owned();
    assert!(!device_id.is_empty(), "{}", done.body);
    device_id
}

async fn set_hubs(s: &TestService, id: &str, hubs: &[&str]) {
    let mut e = s.service(Method::GET, &format!("/enrollments/{id}"), None).await.body;
    e["iotHubs"] = json!(hubs);
    let a = s.service(Method::PUT, &format!("/enrollments/{id}"), Some(e)).await;
    assert_eq!(a.status, 200, "{}", a.body);
}

#[tokio::test]
async fn a_registered_device_uses_its_broker_credentials_and_loses_them_when_moved() {
    let broker = Broker::start();
    let s = TestService::start().await;
    link_broker(&s, &broker).await;
    let key = s.enroll("sensor-7", json!({ "iotHubs": [HUB] })).await;
    let dev = assigned(&s, "sensor-7", &key, HUB).await;
    assert_eq!(dev, "sensor-7");

    // Two sessions of the device, with the credentials it was given: one subscribes, the other publishes.
    let mut sub = connected(Device::connect(broker.port, "sensor-7-sub", &dev, &key).await, "the device (subscriber)");
    let mut publ = connected(Device::connect(broker.port, "sensor-7-pub", &dev, &key).await, "the device (publisher)");
    let telemetry = format!("devices/{dev}/telemetry");
    assert_eq!(sub.subscribe(&telemetry).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    publ.publish(&telemetry, "{\"t\":21.5}").await;
    assert_eq!(sub.message().await, (telemetry.clone(), "{\"t\":21.5}".to_owned()));
    // Another device's topics: refused in the SUBACK.
    assert_eq!(sub.subscribe("devices/sensor-8/#").await, SubscribeReasonCode::Failure);
    // A wrong password gets nowhere.
    refused(Device::connect(broker.port, "sensor-7-bad", &dev, "bm90LXRoZS1rZXktMDEyMzQ1Njc4OWFiY2RlZg==").await, "a wrong key");
    drop((sub, publ));

    // Re-provisioned to the built-in hub: the service removes the broker client.
    set_hubs(&s, "sensor-7", &[BUILTIN_HUB]).await;
    assert_eq!(assigned(&s, "sensor-7", &key, BUILTIN_HUB).await, dev);
    refused(Device::connect(broker.port, "sensor-7-moved", &dev, &key).await, "the device after moving to the built-in hub");
    let ids = s.service(Method::GET, &format!("/linkedHubs/{BUILTIN_HUB}/devices"), None).await;
    assert!(ids.body.as_array().into_iter().flatten().any(|d| d["deviceId"] == dev.as_str()), "{}", ids.body);
}

#[tokio::test]
async fn a_broker_that_is_down_fails_the_registration_cleanly() {
    let mut broker = Broker::start();
    let s = TestService::start().await;
    link_broker(&s, &broker).await;
    let key = s.enroll("sensor-9", json!({ "iotHubs": [HUB] })).await;

    broker.kill();
    let done = s.provision("sensor-9", &key).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "failed", "{}", done.body);
    assert_eq!(done.body["registrationState"]["errorCode"], 503001, "{}", done.body);
    assert!(done.body["registrationState"]["assignedHub"].is_null(), "{}", done.body);
    let message = done.body["registrationState"]["errorMessage"].as_str().unwrap_or_default();
    // The device learns that the hub failed, not the broker's address or credentials; the trace has the detail.
    assert!(message.contains(HUB) && !message.contains(ADMIN_PASSWORD) && !message.contains("127.0.0.1"), "{message}");
    let trace = s.service(Method::GET, "/registrations/sensor-9/trace", None).await;
    assert!(trace.body["trace"]["connector"]["result"].as_str().is_some_and(|r| r.contains("unreachable")), "{}", trace.body);
    let store = &s.running.as_ref().unwrap_or_else(|| panic!("running")).store;
    let identities = store.list_identities(None).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(identities.iter().all(|i| !i.device_id.eq_ignore_ascii_case("sensor-9")), "an identity was left behind: {identities:?}");

    // The broker is back (same port, same accounts): the device registers and connects.
    broker.start_again();
    let dev = assigned(&s, "sensor-9", &key, HUB).await;
    let mut d = connected(Device::connect(broker.port, "sensor-9", &dev, &key).await, "the device once the broker is back");
    assert_eq!(d.subscribe(&format!("devices/{dev}/#")).await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
}
