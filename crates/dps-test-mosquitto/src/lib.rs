//! Test support shared by `dps-hub`'s connector tests and `dps-service`'s end-to-end tests: a REAL Mosquitto
//! broker (≥ 2, dynamic-security plugin) in a temporary directory — plain MQTT, TLS, and TLS with client
//! certificates (`use_identity_as_username`) on free loopback ports, a test PKI, kill and restart by PID — and
//! an MQTT device session (rumqttc) that connects with a password or a certificate, subscribes, publishes and
//! reads messages. Needs the `mosquitto` Debian package (`scripts/setup.sh` installs it); without it the tests
//! fail with a message saying so.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer};
pub use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use rumqttc::{AsyncClient, ConnectionError, Event, MqttOptions, Packet, TlsConfiguration, Transport};
pub use rumqttc::{QoS, SubscribeReasonCode};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::sync::mpsc;

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const MOSQUITTO_CTRL: &str = "/usr/bin/mosquitto_ctrl";
const DYNSEC: &str = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so";
pub const ADMIN_PASSWORD: &str = "admin-pass-0123";
pub const WAIT: Duration = Duration::from_secs(10);

/// A port nothing listens on now (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("and then").port()
}

/// TLS material for the broker: a CA, a server certificate for 127.0.0.1, device certificates by CN.
pub struct Pki {
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generates a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("constructs");
        params.distinguished_name.push(DnType::CommonName, "broker test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).expect("self-signs");
        Self { ca_pem: ca.pem(), issuer: Issuer::new(params, key) }
    }

    /// (certificate PEM, key PEM).
    pub fn issue(&self, cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> (String, KeyPair) {
        let key = KeyPair::generate().expect("generates a key");
        let mut params = CertificateParams::new(sans).expect("constructs");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("signs");
        (cert.pem(), key)
    }
}

/// A running broker. Dropping it kills the process (by its PID) and removes the directory.
pub struct Broker {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// Plain MQTT: the admin (mqtt://) and password devices.
    pub port: u16,
    /// TLS, no client certificates: the admin over mqtts://.
    pub tls_port: u16,
    /// TLS with client certificates, `use_identity_as_username`: X.509 devices.
    pub x509_port: u16,
    pub pki: Pki,
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
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
    pub fn start() -> Self {
        for p in [MOSQUITTO, MOSQUITTO_CTRL, DYNSEC] {
            require(p);
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
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
        std::fs::write(file("ca.pem"), &pki.ca_pem).expect("writes");
        std::fs::write(file("server.pem"), server_pem).expect("writes");
        std::fs::write(file("server.key"), server_key.serialize_pem()).expect("writes");

        let tls = |p: &Path| {
            format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                p.join("ca.pem").display(),
                p.join("server.pem").display(),
                p.join("server.key").display()
            )
        };
        // A free port is only free until someone else takes it (tests run in parallel): a broker that finds one
        // of its ports taken starts again on three new ones.
        let mut broker = Self { child: None, dir, port: 0, tls_port: 0, x509_port: 0, pki };
        for _ in 0..5 {
            let (port, tls_port, x509_port) = (free_port(), free_port(), free_port());
            (broker.port, broker.tls_port, broker.x509_port) = (port, tls_port, x509_port);
            // `user root`: when the tests run as root, mosquitto would otherwise switch to the `mosquitto`
            // user, who cannot read this directory (has no effect when not root).
            let conf = format!(
                "per_listener_settings false\nallow_anonymous false\npersistence false\nuser root\nlog_dest stderr\nlog_type all\n\
             plugin {DYNSEC}\nplugin_opt_config_file {}\n\
             listener {port} 127.0.0.1\n\
             listener {tls_port} 127.0.0.1\n{}\
             listener {x509_port} 127.0.0.1\n{}require_certificate true\nuse_identity_as_username true\n",
                dynsec.display(),
                tls(broker.dir.path()),
                tls(broker.dir.path()),
            );
            std::fs::write(broker.dir.path().join("mosquitto.conf"), conf).expect("writes");
            match broker.launch() {
                Ok(()) => return broker,
                Err(e) if e.contains("Address already in use") => {
                    let _ = std::fs::remove_file(broker.dir.path().join("mosquitto.log"));
                }
                Err(e) => panic!("{e}"),
            }
        }
        panic!("mosquitto found its ports taken five times:\n{}", broker.log())
    }

    /// (Re)starts the process on the same configuration, ports and dynamic-security file.
    pub fn start_again(&mut self) {
        self.launch().expect("launch");
    }

    /// Starts the process and waits until it listens; `Err` with its log if it exits first.
    fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("mosquitto.log")).expect("opens");
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(self.dir.path().join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{MOSQUITTO}: {e}"));
        self.child = Some(child);
        self.wait_until_listening()
    }

    /// Kills the process by its PID and reaps it (the broker is down until [`Broker::start_again`]).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + WAIT;
        for port in [self.port, self.tls_port, self.x509_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                    self.child = None;
                    return Err(format!("mosquitto exited ({status}):\n{}", self.log()));
                }
                assert!(Instant::now() < deadline, "mosquitto is not listening on {port}:\n{}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// The admin's connection string over plain MQTT (the `mosquitto` connector's `connectionString`).
    pub fn connection_string(&self) -> String {
        format!("mqtt://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// The admin's connection string over TLS (server certificate by [`Broker::ca_pem`]).
    pub fn tls_connection_string(&self) -> String {
        format!("mqtts://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.tls_port)
    }

    /// The broker's CA (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// A device's MQTT session; its event loop runs in a task aborted on drop.
pub struct Device {
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
pub type Connected = Result<Device, Box<ConnectionError>>;

impl Device {
    pub async fn connect(port: u16, client_id: &str, user: &str, password: &str) -> Connected {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_credentials(user, password);
        Self::open(opts).await
    }

    /// Over TLS with a client certificate, no user name (the broker takes the certificate's CN).
    pub async fn connect_x509(port: u16, client_id: &str, ca: &Path, cert_pem: &str, key: &KeyPair) -> Connected {
        let mut roots = rustls::RootCertStore::empty();
        let ca_pem = std::fs::read(ca).expect("reads");
        for c in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            roots.add(c.expect("c")).expect("add");
        }
        let chain = rustls_pemfile::certs(&mut cert_pem.as_bytes()).collect::<Result<Vec<CertificateDer<'static>>, _>>().expect("collect");
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("with safe default protocol versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .expect("with client auth cert");
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

    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.expect("subscribe");
        self.next("SUBACK", |p| match p {
            Packet::SubAck(a) => a.return_codes.first().copied(),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK (the broker has routed it by then).
    pub async fn publish(&mut self, topic: &str, payload: &str) {
        self.client.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.expect("publish");
        self.next("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await;
    }

    /// (topic, payload) of the next message delivered.
    pub async fn message(&mut self) -> (String, String) {
        self.next("PUBLISH", |p| match p {
            Packet::Publish(m) => Some((m.topic.clone(), String::from_utf8_lossy(&m.payload).into_owned())),
            _ => None,
        })
        .await
    }
}

pub fn connected(r: Connected, who: &str) -> Device {
    r.unwrap_or_else(|e| panic!("{who} cannot connect: {e}"))
}

pub fn refused(r: Connected, who: &str) {
    match r {
        Err(e) if matches!(*e, ConnectionError::ConnectionRefused(_)) => {}
        Err(e) => panic!("{who}: expected CONNACK refusal, got {e}"),
        Ok(_) => panic!("{who} connected"),
    }
}
