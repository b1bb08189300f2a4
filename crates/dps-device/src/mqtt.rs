//! MQTT device side (§2.8) with the same `mqttbytes` codec the service uses: CONNECT, SUBSCRIBE, register,
//! poll. Used by the load generator (registrations per second, idle connections).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use bytes::BytesMut;
use dps_proto::mqtt::{operation_status_topic, register_topic, RESPONSE_FILTER};
use dps_proto::RegistrationOperationStatus;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use dps_proto::simulation::FlowKind;

use crate::carrier::{ByteStream, Carrier};
use crate::flow::{self, Flow};
use crate::ws::Carried;
use crate::{device_sas, tls_config, Endpoint, Polling, Registration};

/// A connected, subscribed MQTT session of one device.
pub struct MqttSession {
    stream: Box<dyn ByteStream>,
    buf: BytesMut,
    next: u16,
    flow: Flow,
    registration: Registration,
}

impl MqttSession {
    /// Connects (TLS, CONNECT with the SAS, SUBSCRIBE) as `registration_id` to `host:port`.
    pub async fn connect(endpoint: &Endpoint, port: u16, registration_id: &str, key_b64: &str) -> Result<Self> {
        let sas = device_sas(&endpoint.id_scope, registration_id, key_b64, Duration::from_secs(3600))?;
        Self::connect_with(endpoint, port, registration_id, Arc::new(tls_config(&endpoint.ca_pem)?), Some(sas)).await
    }

    /// Connects with the caller's TLS configuration (an X.509 device's certificate, resumption off) and
    /// `password` (the SAS; none for X.509).
    pub async fn connect_with(
        endpoint: &Endpoint,
        port: u16,
        registration_id: &str,
        tls: Arc<rustls::ClientConfig>,
        password: Option<String>,
    ) -> Result<Self> {
        Self::connect_registering(endpoint, Carrier::Port(port), registration_id, tls, password, Flow::default(), Registration::default())
            .await
    }

    /// [`Self::connect_with`] as `carrier` says (the MQTT port or a WebSocket), telling `flow` each step, for a
    /// register with `registration` (a CSR: its api-version is in the CONNECT username).
    pub async fn connect_registering(
        endpoint: &Endpoint,
        carrier: Carrier,
        registration_id: &str,
        tls: Arc<rustls::ClientConfig>,
        password: Option<String>,
        flow: Flow,
        registration: Registration,
    ) -> Result<Self> {
        let connected = async {
            let (_, stream) = crate::carrier::open(endpoint, carrier, Carried::Mqtt, tls, &flow).await?;
            let mut s = Self { stream, buf: BytesMut::new(), next: 0, flow: flow.clone(), registration };
            s.login(&endpoint.id_scope, registration_id, password).await?;
            Ok(s)
        }
        .await;
        if let Err(e) = &connected {
            flow.failed(e);
        }
        connected
    }

    /// CONNECT (the SAS as password; none for X.509) and SUBSCRIBE to the response topics.
    async fn login(&mut self, id_scope: &str, registration_id: &str, password: Option<String>) -> Result<()> {
        let mut c = Connect::new(registration_id);
        c.keep_alive = 0;
        let user =
            format!("{id_scope}/registrations/{registration_id}/api-version={}&ClientVersion=dps-device", self.registration.api_version());
        let shown = format!("client id: {registration_id}\nusername: {user}\npassword: {}", password.as_deref().unwrap_or("(none: X.509)"));
        self.flow.send(FlowKind::Login, "CONNECT", Some(shown)).await;
        c.set_login(user, password.unwrap_or_default());
        self.send(Packet::Connect(c)).await?;
        match self.recv().await? {
            Packet::ConnAck(a) if a.code == ConnectReturnCode::Success => self.flow.received(FlowKind::Login, "CONNACK accepted", None),
            other => bail!("CONNECT refused: {other:?}"),
        }
        let mut sub = Subscribe::new(RESPONSE_FILTER, QoS::AtLeastOnce);
        sub.pkid = self.pkid();
        self.send(Packet::Subscribe(sub)).await?;
        match self.recv().await? {
            Packet::SubAck(_) => {
                self.flow.received(FlowKind::Login, format!("SUBACK {RESPONSE_FILTER}"), None);
                Ok(())
            }
            other => bail!("expected SUBACK, got {other:?}"),
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next = self.next.checked_add(1).unwrap_or(1).max(1);
        self.next
    }

    async fn send(&mut self, p: Packet) -> Result<()> {
        let mut out = BytesMut::new();
        p.write(&mut out, usize::MAX).map_err(|e| anyhow!("{e:?}"))?;
        self.stream.write_all(&out).await?;
        Ok(self.stream.flush().await?)
    }

    async fn recv(&mut self) -> Result<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Ok(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => bail!("bad packet: {e:?}"),
            }
            self.buf.reserve(4096);
            if tokio::time::timeout(Duration::from_secs(30), self.stream.read_buf(&mut self.buf)).await?? == 0 {
                bail!("the service closed the connection");
            }
        }
    }

    /// Sends a request and returns the response topic and body (acknowledging both ways).
    async fn request(&mut self, topic: String, body: &[u8]) -> Result<(String, Vec<u8>)> {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, body.to_vec());
        p.pkid = self.pkid();
        self.send(Packet::Publish(p)).await?;
        loop {
            match self.recv().await? {
                Packet::PubAck(_) => {}
                Packet::Publish(r) => {
                    self.send(Packet::PubAck(PubAck::new(r.pkid))).await?;
                    return Ok((r.topic, r.payload.to_vec()));
                }
                other => bail!("unexpected {other:?}"),
            }
        }
    }

    /// Registers and polls to the end.
    pub async fn provision(&mut self, registration_id: &str, polling: Polling) -> Result<RegistrationOperationStatus> {
        let answer = self.provision_flow(registration_id, polling).await;
        if let Err(e) = &answer {
            self.flow.failed(e);
        }
        answer
    }

    async fn provision_flow(&mut self, registration_id: &str, polling: Polling) -> Result<RegistrationOperationStatus> {
        let body = serde_json::to_vec(&self.registration.body(registration_id))?;
        let mut rid = 0u32;
        let topic = register_topic("0");
        self.flow.send(FlowKind::Register, format!("PUBLISH {topic}"), Some(flow::shown(&body))).await;
        let (mut topic, mut payload) = self.request(topic, &body).await?;
        let (started, mut polls) = (std::time::Instant::now(), 0);
        let mut status = self.answer(&topic, &payload)?;
        while polling.again(polls, started) {
            polls += 1;
            if polling.ends_at(&status) {
                return Ok(status);
            }
            let secs = topic.split("retry-after=").nth(1).and_then(|v| v.split('&').next()?.parse().ok()).unwrap_or(2);
            self.flow.local(FlowKind::Wait, format!("wait {secs} s")).await;
            polling.wait(Duration::from_secs(secs)).await;
            rid += 1;
            let poll = operation_status_topic(&rid.to_string(), &status.operation_id);
            self.flow.send(FlowKind::Poll, format!("PUBLISH {poll}"), None).await;
            (topic, payload) = self.request(poll, b"").await?;
            status = self.answer(&topic, &payload)?;
        }
        polling.after_polls(registration_id, status)
    }

    /// The operation status a response carries, or the refusal its `res/{status}` topic says.
    fn answer(&self, topic: &str, payload: &[u8]) -> Result<RegistrationOperationStatus> {
        let code: u16 = topic.split('/').nth(3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if code >= 300 {
            let refused = crate::Refused::of(code, payload);
            self.flow.received(FlowKind::Refused, format!("PUBLISH {topic} — {refused}"), Some(flow::shown(payload)));
            return Err(refused.into());
        }
        let status: RegistrationOperationStatus = serde_json::from_slice(payload)?;
        let retry_after = topic.split("retry-after=").nth(1).and_then(|v| v.split('&').next()?.parse().ok());
        let (kind, title) = flow::answer_title(code, &status, retry_after);
        self.flow.received(kind, format!("{title} · PUBLISH {topic}"), Some(flow::shown(payload)));
        Ok(status)
    }
}
