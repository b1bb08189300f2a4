//! The `mosquitto` connector against a REAL Mosquitto broker (≥ 2, dynamic-security plugin), started per
//! test on 127.0.0.1 and free ports in a temporary directory, killed when the test ends. Devices then
//! connect as themselves with rumqttc: what the broker lets them do is the proof (§7.4: the device uses
//! the credential it proved to DPS).
//!
//! Needs the `mosquitto` Debian package (`scripts/setup.sh` installs it); without it the tests fail with
//! a message saying so.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_core::ports::{ConnectorError, HubAuthentication, HubConnector, HubDevice};
use dps_crypto::Secret;
use dps_hub::Mosquitto;
use dps_proto::LinkedHub;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, QoS, SubscribeReasonCode, TlsConfiguration, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
const DYNSEC: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
const ADMIN_PASSWORD: &str = "admin-pass-0123";
const WAIT: Duration = Duration::from_secs(10);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap_or_else(|e| panic!("{e}")).port()
}

/// TLS material for the broker: a CA, a server certificate for 127.0.0.1, device certificates by CN.
struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Self {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(DnType::CommonName, "broker test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        Self { ca_pem: ca.pem(), issuer: Issuer::new(params, key) }
    }

    /// (certificate PEM, key PEM).
    fn issue(&self, cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params = CertificateParams::new(sans).unwrap_or_else(|e| panic!("{e}"));
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).unwrap_or_else(|e| panic!("{e}"));
        (cert.pem(), key)
    }
}

/// A running broker. Dropping it kills the process (by its PID) and removes the directory.
struct Broker {
    child: Child,
    dir: tempfile::TempDir,
    /// Plain MQTT: the admin (mqtt://) and password devices.
    port: u16,
    /// TLS, no client certificates: the admin over mqtts://.
    tls_port: u16,
    /// TLS with client certificates, `use_identity_as_username`: X.509 devices.
    x509_port: u16,
    pki: Pki,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- mosquitto's log ---\n{}", self.log());
        }
    }
}

fn require(path: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: these tests drive a real Mosquitto broker with its dynamic-security plugin — `apt-get install mosquitto` (scripts/setup.sh does)"
    );
}

impl Broker {
    fn start() -> Self {
        for p in [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC] {
            require(p);
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = |name: &str| dir.path().join(name);
        let dynsec = file("dynsec.json");
        let init = Command::new(MOSQUITTO_CTRL)
            .args(["dynsec", "init"])
            .arg(&dynsec)
            .args(["admin", ADMIN_PASSWORD])
            .output()
            .unwrap_or_else(|e| panic!("{MOSQUITTO_CTRL}: {e}"));
        assert!(init.status.success(), "mosquitto_ctrl dynsec init: {}", String::from_utf8_lossy(&init.stderr));

        let pki = Pki::new();
        let (server_pem, server_key) = pki.issue("127.0.0.1", vec!["127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth);
        std::fs::write(file("ca.pem"), &pki.ca_pem).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(file("server.pem"), server_pem).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(file("server.key"), server_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));

        let (port, tls_port, x509_port) = (free_port(), free_port(), free_port());
        let tls = |p: &Path| {
            format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                p.join("ca.pem").display(),
                p.join("server.pem").display(),
                p.join("server.key").display()
            )
        };
        // `user root`: when the tests run as root, mosquitto would otherwise switch to the `mosquitto`
        // user, who cannot read this directory (has no effect when not root).
        let conf = format!(
            "per_listener_settings false\nallow_anonymous false\npersistence false\nuser root\nlog_dest stderr\nlog_type all\n\
             plugin {DYNSEC}\nplugin_opt_config_file {}\n\
             listener {port} 127.0.0.1\n\
             listener {tls_port} 127.0.0.1\n{}\
             listener {x509_port} 127.0.0.1\n{}require_certificate true\nuse_identity_as_username true\n",
            dynsec.display(),
            tls(dir.path()),
            tls(dir.path()),
        );
        std::fs::write(file("mosquitto.conf"), conf).unwrap_or_else(|e| panic!("{e}"));
        let log = std::fs::File::create(file("mosquitto.log")).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(file("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{MOSQUITTO}: {e}"));
        let mut broker = Self { child, dir, port, tls_port, x509_port, pki };
        broker.wait_until_listening();
        broker
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + WAIT;
        for port in [self.port, self.tls_port, self.x509_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    panic!("mosquitto exited ({status}):\n{}", self.log());
                }
                assert!(Instant::now() < deadline, "mosquitto is not listening on {port}:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn hub(&self) -> LinkedHub {
        LinkedHub {
            host_name: format!("127.0.0.1:{}", self.port),
            connector: "mosquitto".into(),
            connection_string: Some(format!("mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.port)),
            ..LinkedHub::default()
        }
    }

    fn tls_hub(&self) -> LinkedHub {
        LinkedHub {
            connection_string: Some(format!("mqtts://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.tls_port)),
            ca_certificate: Some(self.pki.ca_pem.clone()),
            ..self.hub()
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn sas_device(id: &str, key: &str) -> HubDevice {
    HubDevice {
        device_id: id.into(),
        registration_id: id.into(),
        authentication: HubAuthentication::Sas { primary_key: Secret::new(key), secondary_key: Secret::new(format!("{key}-2")) },
        iot_edge: false,
        initial_twin: None,
    }
}

/// A device's MQTT session; its event loop runs in a task aborted on drop.
struct Device {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Packet>,
    /// Packets received while waiting for another kind, in order.
    backlog: VecDeque<Packet>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How a connection attempt ended.
type Connected = Result<Device, Box<ConnectionError>>;

impl Device {
    async fn connect(port: u16, client_id: &str, user: &str, password: &str) -> Connected {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_credentials(user, password);
        Self::open(opts).await
    }

    /// Over TLS with a client certificate, no user name (the broker takes the certificate's CN).
    async fn connect_x509(port: u16, client_id: &str, ca: &Path, cert_pem: &str, key: &KeyPair) -> Connected {
        let mut roots = rustls::RootCertStore::empty();
        let ca_pem = std::fs::read(ca).unwrap_or_else(|e| panic!("{e}"));
        for c in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            roots.add(c.unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        }
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<CertificateDer<'static>>, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap_or_else(|e| panic!("{e}"))
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(config))));
        Self::open(opts).await
    }

    async fn open(mut opts: MqttOptions) -> Connected {
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
        Ok(Self { client, events, backlog: VecDeque::new(), task })
    }

    /// The first incoming packet that `pick` selects; the others stay in the backlog, in order.
    async fn next<T>(&mut self, what: &str, pick: impl Fn(&Packet) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|p| pick(p).is_some()) {
            if let Some(v) = self.backlog.remove(i).and_then(|p| pick(&p)) {
                return v;
            }
        }
        tokio::time::timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(p) => match pick(&p) {
                        Some(v) => return v,
                        None => self.backlog.push_back(p),
                    },
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

    /// Publishes at QoS 1 and waits for the broker's PUBACK (the broker has routed it by then).
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

const KEY_A: &str = "a2V5LW9mLWRldmljZS1hLTAxMjM0NTY3ODlhYmNkZWY=";
const KEY_A2: &str = "bmV3LWtleS1vZi1kZXZpY2UtYS0wMTIzNDU2Nzg5YWI=";
const KEY_B: &str = "a2V5LW9mLWRldmljZS1iLTAxMjM0NTY3ODlhYmNkZWY=";

#[tokio::test]
async fn a_provisioned_device_is_confined_to_its_own_topics() {
    let broker = Broker::start();
    let hub = broker.hub();
    let c = Mosquitto::new();
    c.check(&hub).unwrap_or_else(|e| panic!("{e}"));
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.unwrap_or_else(|e| panic!("{e}"));
    c.provision(&hub, &sas_device("dev-b", KEY_B)).await.unwrap_or_else(|e| panic!("{e}"));

    // Two sessions of device A: one subscribes to its telemetry, the other publishes there.
    let mut a1 = connected(Device::connect(broker.port, "a1", "dev-a", KEY_A).await, "dev-a");
    let mut a2 = connected(Device::connect(broker.port, "a2", "dev-a", KEY_A).await, "dev-a");
    assert_eq!(a1.subscribe("devices/dev-a/telemetry").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    a2.publish("devices/dev-a/telemetry", "21.5").await;
    assert_eq!(a1.message().await, ("devices/dev-a/telemetry".to_owned(), "21.5".to_owned()));

    // Another device's topics: the subscription is refused in the SUBACK…
    assert_eq!(a1.subscribe("devices/dev-b/#").await, SubscribeReasonCode::Failure);
    assert_eq!(a1.subscribe("#").await, SubscribeReasonCode::Failure);
    // …and a publish there reaches nobody. B subscribes; A publishes into B's topics (the broker has
    // routed, or dropped, it once A has the PUBACK); then B publishes a marker: the first message B
    // receives must be its own marker.
    let mut b = connected(Device::connect(broker.port, "b1", "dev-b", KEY_B).await, "dev-b");
    assert_eq!(b.subscribe("devices/dev-b/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    a2.publish("devices/dev-b/telemetry", "forged by A").await;
    b.publish("devices/dev-b/telemetry", "marker").await;
    assert_eq!(b.message().await, ("devices/dev-b/telemetry".to_owned(), "marker".to_owned()));

    // Wrong password, unknown user: refused at CONNECT.
    refused(Device::connect(broker.port, "a3", "dev-a", KEY_B).await, "dev-a with B's key");
    refused(Device::connect(broker.port, "z", "dev-z", KEY_A).await, "an unprovisioned device");
}

#[tokio::test]
async fn provisioning_again_updates_the_key_and_deprovisioning_locks_the_device_out() {
    let broker = Broker::start();
    let hub = broker.hub();
    let c = Mosquitto::new();
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.unwrap_or_else(|e| panic!("{e}"));
    drop(connected(Device::connect(broker.port, "a1", "dev-a", KEY_A).await, "dev-a"));

    // Re-provisioned with a new key (modifyClient / modifyRole): only the new key works.
    c.provision(&hub, &sas_device("dev-a", KEY_A2)).await.unwrap_or_else(|e| panic!("{e}"));
    refused(Device::connect(broker.port, "a2", "dev-a", KEY_A).await, "dev-a with its old key");
    let mut a = connected(Device::connect(broker.port, "a3", "dev-a", KEY_A2).await, "dev-a with its new key");
    assert_eq!(a.subscribe("devices/dev-a/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    drop(a);

    c.deprovision(&hub, "dev-a").await.unwrap_or_else(|e| panic!("{e}"));
    refused(Device::connect(broker.port, "a4", "dev-a", KEY_A2).await, "a deprovisioned device");
    // Already gone: still fine.
    c.deprovision(&hub, "dev-a").await.unwrap_or_else(|e| panic!("{e}"));
    // The role went with the client: provisioning from scratch works again.
    c.provision(&hub, &sas_device("dev-a", KEY_A)).await.unwrap_or_else(|e| panic!("{e}"));
    drop(connected(Device::connect(broker.port, "a5", "dev-a", KEY_A).await, "dev-a provisioned again"));
}

#[tokio::test]
async fn broker_accounts_it_did_not_create_are_left_alone() {
    let broker = Broker::start();
    let hub = broker.hub();
    let c = Mosquitto::new();
    let e = c.provision(&hub, &sas_device("admin", KEY_A)).await.err().unwrap_or_else(|| panic!("took over the admin user"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("did not create")), "{e}");
    let e = c.deprovision(&hub, "admin").await.err().unwrap_or_else(|| panic!("deleted the admin user"));
    assert!(matches!(e, ConnectorError::Refused(_)), "{e}");
    // The admin still works.
    c.provision(&hub, &sas_device("dev-c", KEY_A)).await.unwrap_or_else(|e| panic!("{e}"));
    // Device ids that would escape devices/<id>/# are refused before any MQTT.
    let e = c.provision(&hub, &sas_device("dev/+", KEY_A)).await.err().unwrap_or_else(|| panic!("accepted a wildcard id"));
    assert!(matches!(e, ConnectorError::Refused(_)), "{e}");
}

#[tokio::test]
async fn a_bad_admin_password_is_refused_and_a_dead_broker_unavailable() {
    let broker = Broker::start();
    let mut hub = broker.hub();
    hub.connection_string = Some(format!("mqtt://admin:wrong@127.0.0.1:{}", broker.port));
    let e = Mosquitto::new().provision(&hub, &sas_device("dev-a", KEY_A)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Refused(m) if m.contains("refused the admin user") && !m.contains("wrong")), "{e}");

    hub.connection_string = Some(format!("mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", free_port()));
    let e = Mosquitto::new().provision(&hub, &sas_device("dev-a", KEY_A)).await.err().unwrap_or_else(|| panic!("provisioned"));
    assert!(matches!(&e, ConnectorError::Unavailable(m) if m.contains("after 3 attempts")), "{e}");
}

#[tokio::test]
async fn over_mqtts_an_x509_device_connects_with_its_certificate_only() {
    let broker = Broker::start();
    let hub = broker.tls_hub();
    let c = Mosquitto::new();
    c.check(&hub).unwrap_or_else(|e| panic!("{e}"));
    let thumb = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08";
    let device = HubDevice {
        device_id: "dev-x".into(),
        registration_id: "dev-x".into(),
        authentication: HubAuthentication::SelfSigned { primary_thumbprint: thumb.into(), secondary_thumbprint: thumb.into() },
        iot_edge: false,
        initial_twin: None,
    };
    c.provision(&hub, &device).await.unwrap_or_else(|e| panic!("{e}"));

    let (cert, key) = broker.pki.issue("dev-x", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth);
    let mut x = connected(Device::connect_x509(broker.x509_port, "x1", &broker.ca_path(), &cert, &key).await, "dev-x (certificate)");
    assert_eq!(x.subscribe("devices/dev-x/#").await, SubscribeReasonCode::Success(QoS::AtLeastOnce));
    assert_eq!(x.subscribe("devices/dev-y/#").await, SubscribeReasonCode::Failure);
    x.publish("devices/dev-x/telemetry", "from a certificate").await;
    assert_eq!(x.message().await.1, "from a certificate");
    // No password was set: the user name alone gets nowhere.
    refused(Device::connect(broker.port, "x2", "dev-x", "").await, "dev-x without a certificate");
    refused(Device::connect(broker.port, "x3", "dev-x", thumb).await, "dev-x with a guessed password");

    // A device that had a key and now proves a certificate loses its password.
    c.provision(&hub, &sas_device("dev-s", KEY_A)).await.unwrap_or_else(|e| panic!("{e}"));
    c.provision(&hub, &HubDevice { device_id: "dev-s".into(), registration_id: "dev-s".into(), ..device.clone() })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    refused(Device::connect(broker.port, "s1", "dev-s", KEY_A).await, "dev-s with its old key");
    drop(x);

    // Deprovisioned: the broker itself accepts any certificate of its CA at CONNECT (the plugin is not
    // asked with use_identity_as_username), but without its client and role the device may do nothing.
    c.deprovision(&hub, "dev-x").await.unwrap_or_else(|e| panic!("{e}"));
    let mut x = connected(Device::connect_x509(broker.x509_port, "x4", &broker.ca_path(), &cert, &key).await, "dev-x after deprovision");
    assert_eq!(x.subscribe("devices/dev-x/#").await, SubscribeReasonCode::Failure);
}
