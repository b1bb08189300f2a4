//! One MQTT connection, as two states: [`AwaitingConnect`] (only CONNECT is valid, within the connect
//! timeout) consumed into [`Connected`] (SUBSCRIBE, the two request topics, PINGREQ, PUBACK, DISCONNECT).
//! Anything else, a malformed or oversized packet, a packet that does not arrive whole within the packet
//! deadline, or silence past 1.5 × keep-alive (capped by the server's maximum, also for keep-alive 0: see
//! [`idle_wait`]) closes this connection only.
//!
//! Ordering (§0.5, §2.6): for a QoS 1 request the PUBACK is written before the response PUBLISH; responses
//! go out at QoS 1 on `$dps/registrations/res/{status}/?$rid={rid}[&retry-after=n]`.
//!
//! Responses go only to a session subscribed to `$dps/registrations/res/#` (§2.3). DPS answers as a broker
//! would: a request from a session without that subscription (never subscribed, or unsubscribed since) is
//! acknowledged and handled — a register starts its operation — but its response is published to nobody,
//! so the device receives nothing and the connection stays open. Every SDK subscribes before its first
//! request (§2.3, §2.8), so only a hand-written client notices; the log says why it got no answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use dps_core::registration::Reply;
use dps_core::DpsError;
use dps_proto::mqtt::{parse_request_topic, response_topic, MqttRequest};
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet, PubAck, Publish};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};

use super::connect::{self, Identity};
use super::{operation_status, register, subscribe, Limits};
use crate::app::App;
use crate::https::error::{details, status_of};

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed or sent DISCONNECT.
    Closed,
    Timeout(&'static str),
    Protocol(String),
    Io(std::io::Error),
    Shutdown,
}

struct Conn<S> {
    stream: S,
    buf: BytesMut,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    peer: SocketAddr,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Reads one packet: its first byte within `wait` (the keep-alive window; `None`: no limit), the rest
    /// within the packet deadline once the first byte came (a peer that drips bytes is closed).
    async fn read_packet(&mut self, wait: Option<Duration>) -> Result<Packet, End> {
        let mut started = (!self.buf.is_empty()).then(Instant::now);
        loop {
            if !self.buf.is_empty() {
                if let Some(p) = self.decode()? {
                    return Ok(p);
                }
            }
            let deadline = match started {
                Some(t) => Some((t + self.limits.packet_timeout, "a packet did not arrive whole within the packet deadline")),
                None => wait.map(|d| (Instant::now() + d, "no packet within the keep-alive window")),
            };
            let n = self.read_some(deadline).await?;
            if n == 0 {
                return Err(if self.buf.is_empty() { End::Closed } else { End::Protocol("connection closed inside a packet".into()) });
            }
            started = started.or_else(|| Some(Instant::now()));
        }
    }

    /// A whole packet cut off the buffer, if one is there.
    fn decode(&mut self) -> Result<Option<Packet>, End> {
        match Packet::read(&mut self.buf, self.limits.max_packet_bytes) {
            Ok(p) => {
                if self.buf.is_empty() {
                    self.buf = BytesMut::new(); // an idle connection keeps no buffer
                }
                Ok(Some(p))
            }
            Err(CodecError::InsufficientBytes(_)) => Ok(None),
            Err(CodecError::PayloadSizeLimitExceeded(n)) => {
                Err(End::Protocol(format!("packet of {n} bytes exceeds the {}-byte limit", self.limits.max_packet_bytes)))
            }
            Err(e) => Err(End::Protocol(format!("malformed packet: {e:?}"))),
        }
    }

    /// Reads what is in flight (one byte when the buffer is empty, so an idle connection holds no buffer), by
    /// `deadline` when there is one.
    async fn read_some(&mut self, deadline: Option<(Instant, &'static str)>) -> Result<usize, End> {
        let (stream, buf, shutdown) = (&mut self.stream, &mut self.buf, &mut self.shutdown);
        let read = async {
            if buf.is_empty() {
                let mut first = [0u8; 1];
                let n = stream.read(&mut first).await?;
                if n == 1 {
                    buf.reserve(256);
                    buf.put_u8(first[0]);
                }
                Ok::<usize, std::io::Error>(n)
            } else {
                buf.reserve(1024);
                stream.read_buf(buf).await
            }
        };
        let timed = async {
            match deadline {
                Some((at, why)) => tokio::time::timeout_at(at, read).await.map_err(|_| End::Timeout(why))?.map_err(End::Io),
                None => read.await.map_err(End::Io),
            }
        };
        tokio::select! {
            r = timed => r,
            _ = shutdown.changed() => Err(End::Shutdown),
        }
    }

    async fn write(&mut self, p: Packet) -> Result<(), End> {
        let mut out = BytesMut::with_capacity(p.size() + 5);
        p.write(&mut out, usize::MAX).map_err(|e| End::Protocol(format!("cannot encode {e:?}")))?;
        self.stream.write_all(&out).await.map_err(End::Io)?;
        self.stream.flush().await.map_err(End::Io)
    }
}

/// The first state: only CONNECT.
struct AwaitingConnect<S> {
    conn: Conn<S>,
    client_chain: Option<Arc<Vec<Vec<u8>>>>,
    protocol: &'static str,
}

impl<S: AsyncRead + AsyncWrite + Unpin> AwaitingConnect<S> {
    async fn connect(mut self) -> Result<Connected<S>, End> {
        let timeout = self.conn.limits.connect_timeout;
        let packet = match tokio::time::timeout(timeout, self.conn.read_packet(Some(timeout))).await {
            Ok(r) => r?,
            Err(_) => return Err(End::Timeout("no CONNECT within the connect timeout")),
        };
        let Packet::Connect(c) = packet else {
            return Err(End::Protocol("the first packet must be CONNECT".into()));
        };
        match connect::accept(&c, self.client_chain.take()) {
            Ok(mut who) => {
                who.source = Some(self.conn.peer.ip());
                who.protocol = self.protocol;
                // Session-present is always 0: DPS keeps no sessions, even for CleanSession=0 (§0.6).
                self.conn.write(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))).await?;
                debug!(peer = %self.conn.peer, registration_id = %who.registration_id, client = ?who.client_version, "MQTT connected");
                Ok(Connected { conn: self.conn, who, next_pkid: 0, subscribed: false })
            }
            Err((code, why)) => {
                info!(peer = %self.conn.peer, ?code, why, "MQTT CONNECT refused");
                self.conn.write(Packet::ConnAck(ConnAck::new(code, false))).await?;
                Err(End::Protocol(why))
            }
        }
    }
}

/// After a successful CONNECT.
struct Connected<S> {
    conn: Conn<S>,
    who: Identity,
    next_pkid: u16,
    /// Whether `$dps/registrations/res/#` is subscribed: responses are published only then.
    subscribed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connected<S> {
    async fn serve(mut self, app: &App) -> Result<(), End> {
        let wait = Some(idle_wait(self.who.keep_alive, self.conn.limits.max_keep_alive));
        loop {
            match self.conn.read_packet(wait).await? {
                // Boxed: the request's future (engine, store) is allocated only while it runs, so an idle
                // connection's task stays small.
                Packet::Publish(p) => Box::pin(self.publish(app, p)).await?,
                Packet::Subscribe(s) => {
                    let (ack, subscribed) = subscribe::answer(&s);
                    self.subscribed |= subscribed;
                    self.conn.write(Packet::SubAck(ack)).await?;
                }
                Packet::Unsubscribe(u) => {
                    let (ack, unsubscribed) = subscribe::unsubscribe(&u);
                    self.subscribed &= !unsubscribed;
                    self.conn.write(Packet::UnsubAck(ack)).await?;
                }
                Packet::PingReq => self.conn.write(Packet::PingResp).await?,
                Packet::PubAck(_) => {}
                Packet::Disconnect => return Err(End::Closed),
                Packet::Connect(_) => return Err(End::Protocol("a second CONNECT".into())),
                other => return Err(End::Protocol(format!("unexpected {other:?}"))),
            }
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1).max(1);
        self.next_pkid
    }

    async fn publish(&mut self, app: &App, p: Publish) -> Result<(), End> {
        if p.qos == QoS::ExactlyOnce {
            return Err(End::Protocol("QoS 2 publishes are not supported".into()));
        }
        let Some(request) = parse_request_topic(&p.topic) else {
            return Err(End::Protocol(format!(
                "'{}' is not a DPS request topic (or its $rid or operationId is longer than 128 characters)",
                dps_proto::truncate_for_display(&p.topic).escape_debug()
            )));
        };
        if p.qos == QoS::AtLeastOnce {
            self.conn.write(Packet::PubAck(PubAck::new(p.pkid))).await?;
        }
        let (rid, result, is_register) = match &request {
            MqttRequest::Register { rid } => (rid, register::handle(app, &self.who, &p.payload).await, true),
            MqttRequest::OperationStatus { rid, operation_id } => {
                (rid, operation_status::handle(app, &self.who, operation_id).await, false)
            }
        };
        let (topic, body) = response(app, rid, result, is_register);
        if !self.subscribed {
            info!(
                peer = %self.conn.peer,
                registration_id = %self.who.registration_id,
                topic,
                "MQTT response not delivered: the session has not subscribed to $dps/registrations/res/#"
            );
            return Ok(());
        }
        let pkid = self.pkid();
        let mut out = Publish::new(topic, QoS::AtLeastOnce, body);
        out.pkid = pkid;
        self.conn.write(Packet::Publish(out)).await
    }
}

/// How long a connected session may stay silent: 1.5 × its keep-alive (§2.2), where a keep-alive of 0 (the C
/// SDK and .NET v1 send it: no pings) or one above the server's maximum counts as the maximum — the server
/// decides how long a silent connection is kept, not the client.
pub fn idle_wait(keep_alive_secs: u16, max_keep_alive: Duration) -> Duration {
    let asked = Duration::from_secs(u64::from(keep_alive_secs));
    let keep_alive = if asked.is_zero() || asked > max_keep_alive { max_keep_alive } else { asked };
    keep_alive.saturating_mul(3) / 2
}

/// The one mapping of an answer (or a `DpsError`) to a response topic and body for MQTT.
fn response(app: &App, rid: &str, result: Result<Reply, DpsError>, is_register: bool) -> (String, Vec<u8>) {
    match result {
        Ok(reply) => {
            let status = if is_register || reply.in_progress() { 202 } else { 200 };
            (response_topic(status, rid, reply.retry_after), serde_json::to_vec(&reply.status).unwrap_or_default())
        }
        Err(e) => {
            let tracking_id = uuid::Uuid::new_v4().to_string();
            info!(code = e.code(), tracking_id, error = %e.message, "MQTT request refused");
            let status = status_of(e.kind).as_u16();
            (
                response_topic(status, rid, e.retry_after),
                serde_json::to_vec(&details(&e, &tracking_id, app.clock.now())).unwrap_or_default(),
            )
        }
    }
}

/// Runs one connection to its end.
///
/// Memory of an idle connection (measured with `dps bench --idle-connections 5000`, see README): the
/// rustls session with its 4 KiB read buffer, the socket, and this task's state; request handling is boxed.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    app: Arc<App>,
    peer: SocketAddr,
    client_chain: Option<Arc<Vec<Vec<u8>>>>,
    protocol: &'static str,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) {
    let conn = Conn { stream, buf: BytesMut::new(), limits, shutdown, peer };
    let end = match Box::pin((AwaitingConnect { conn, client_chain, protocol }).connect()).await {
        Ok(connected) => connected.serve(&app).await,
        Err(e) => Err(e),
    };
    match end {
        Err(End::Closed) | Err(End::Shutdown) | Ok(()) => debug!(%peer, "MQTT connection closed"),
        Err(End::Protocol(why)) => info!(%peer, why, "MQTT connection closed: protocol violation"),
        Err(End::Timeout(why)) => debug!(%peer, why, "MQTT connection timed out"),
        Err(End::Io(e)) => debug!(%peer, error = %e, "MQTT connection I/O error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_wait_is_one_and_a_half_keep_alives_capped_by_the_server() {
        let max = Duration::from_secs(1200);
        assert_eq!(idle_wait(60, max), Duration::from_secs(90));
        assert_eq!(idle_wait(0, max), Duration::from_secs(1800), "keep-alive 0 still has a limit");
        assert_eq!(idle_wait(u16::MAX, max), Duration::from_secs(1800), "a huge keep-alive is capped");
    }
}
