//! The MQTT endpoint with a hand-driven client (packets from the `mqttbytes` codec): ordering, topics,
//! limits and misbehaving peers (§0.5, §0.6, §2).

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use common::TestService;
use rumqttc::mqttbytes::v4::*;
use rumqttc::mqttbytes::QoS;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

const FILTER: &str = "$dps/registrations/res/#";

struct Client<S> {
    stream: S,
    buf: BytesMut,
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls(s: &TestService, port: u16) -> Tls {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connects");
    let connector = TlsConnector::from(Arc::new(common::tls_client_config(&s.ca_pem)));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("converts");
    connector.connect(name, tcp).await.expect("connects")
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Self { stream, buf: BytesMut::new() }
    }

    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, usize::MAX).unwrap_or_else(|e| panic!("{e:?}"));
        self.raw(&out).await;
    }

    async fn raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write all");
        self.stream.flush().await.expect("flush");
    }

    /// The next packet, or `None` when the server closed the connection.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("bad packet from the server: {e:?}"),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout(Duration::from_secs(10), self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
                Err(_) => panic!("the server neither answered nor closed within 10 s"),
            }
        }
    }

    async fn connect(&mut self, s: &TestService, id: &str, password: &str, keep_alive: u16) -> ConnAck {
        let mut c = Connect::new(id);
        c.keep_alive = keep_alive;
        c.set_login(format!("{}/registrations/{id}/api-version=2019-03-31&ClientVersion=raw%2F1.0", s.scope), password);
        self.send(Packet::Connect(c)).await;
        match self.recv().await {
            Some(Packet::ConnAck(a)) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, pkid: u16) -> SubAck {
        let mut sub = Subscribe::new(FILTER, QoS::AtLeastOnce);
        sub.pkid = pkid;
        self.send(Packet::Subscribe(sub)).await;
        match self.recv().await {
            Some(Packet::SubAck(a)) => a,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn publish(&mut self, topic: &str, qos: QoS, pkid: u16, body: &[u8]) {
        let mut p = Publish::new(topic, qos, body.to_vec());
        p.pkid = pkid;
        self.send(Packet::Publish(p)).await;
    }

    /// Reads a response PUBLISH and acknowledges it.
    async fn response(&mut self) -> (String, Value) {
        match self.recv().await {
            Some(Packet::Publish(p)) => {
                assert_eq!(p.qos, QoS::AtLeastOnce, "§2.5 responses are QoS 1");
                assert!(!p.retain);
                self.send(Packet::PubAck(PubAck::new(p.pkid))).await;
                (p.topic.clone(), serde_json::from_slice(&p.payload).unwrap_or(Value::Null))
            }
            other => panic!("expected a response PUBLISH, got {other:?}"),
        }
    }

    async fn expect_closed(&mut self) {
        assert!(self.recv().await.is_none(), "the server should have closed the connection");
    }
}

async fn enrolled(s: &TestService, id: &str) -> String {
    let key = s.enroll(id, json!({})).await;
    s.device_sas(id, &key, s.now() + 3600)
}

fn query_of(topic: &str) -> Vec<(String, String)> {
    topic
        .split_once("/?")
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
}

/// §2.8 / §2.6: CONNACK sp=0 → SUBACK (pkid echoed, QoS 1) → PUBACK before each response → 202 then 200,
/// `$rid` first and echoed verbatim, `retry-after` on 202 only.
#[tokio::test]
async fn the_documented_sequence_in_order() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-1").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    // Java connects with CleanSession=0: session-present must still be 0 (§0.6).
    let mut connect = Connect::new("mq-1");
    connect.clean_session = false;
    connect.keep_alive = 60;
    connect.set_login(format!("{}/registrations/mq-1/api-version=2019-03-31", s.scope), sas.clone());
    c.send(Packet::Connect(connect)).await;
    assert_eq!(c.recv().await, Some(Packet::ConnAck(ConnAck::new(ConnectReturnCode::Success, false))));
    let ack = c.subscribe(41).await;
    assert_eq!((ack.pkid, ack.return_codes.clone()), (41, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]));

    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=a%2Db-1", QoS::AtLeastOnce, 7, br#"{"registrationId":"mq-1","payload":null}"#)
        .await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(7))), "§0.5 PUBACK comes first");
    let (topic, body) = c.response().await;
    assert!(topic.starts_with("$dps/registrations/res/202/?$rid=a%2Db-1&retry-after="), "{topic}");
    assert_eq!(query_of(&topic)[0].0, "$rid");
    assert_eq!(topic.matches('$').count(), 2, "{topic}");
    assert_eq!(body["status"], "assigning");
    let op = body["operationId"].as_str().unwrap_or_default().to_owned();

    let mut last = Value::Null;
    for rid in 8..40u16 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        c.publish(&format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid={rid}&operationId={op}"), QoS::AtLeastOnce, rid, b" ")
            .await;
        assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(rid))));
        let (topic, body) = c.response().await;
        assert!(topic.contains(&format!("?$rid={rid}")), "{topic}");
        if topic.starts_with("$dps/registrations/res/200/") {
            assert!(!topic.contains("retry-after"), "{topic}");
            last = body;
            break;
        }
        assert!(topic.starts_with("$dps/registrations/res/202/"), "{topic}");
    }
    assert_eq!(last["status"], "assigned", "{last}");
    assert_eq!(last["registrationState"]["assignedHub"], "local-hub.dps.local");
    assert_eq!(last["registrationState"]["deviceId"], "mq-1");
    // PINGREQ is answered; DISCONNECT ends the session.
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
    c.send(Packet::Disconnect).await;
    c.expect_closed().await;
}

/// C and Java publish at QoS 0: no PUBACK, just the response; .NET sends no body at all (§0.12, §2.4).
#[tokio::test]
async fn qos0_requests_and_empty_bodies() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-qos0").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    assert_eq!(c.connect(&s, "mq-qos0", &sas, 0).await.code, ConnectReturnCode::Success);
    c.subscribe(1).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", QoS::AtMostOnce, 0, b"").await;
    let (topic, body) = c.response().await;
    assert!(topic.starts_with("$dps/registrations/res/202/?$rid=1&retry-after="), "{topic}");
    assert_eq!(body["registrationState"]["registrationId"], "mq-qos0");
}

/// Errors come back on the response topic with the DPS body (§2.5, §2.7); the connection stays usable.
#[tokio::test]
async fn errors_are_answered_on_error_topics() {
    let s = TestService::start().await;
    let key = s.enroll("mq-err", json!({})).await;
    let wrong = s.device_sas("mq-err", &dps_crypto::generate_key(), s.now() + 3600);
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    assert_eq!(c.connect(&s, "mq-err", &wrong, 30).await.code, ConnectReturnCode::Success);
    c.subscribe(1).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=e1", QoS::AtLeastOnce, 2, b"{}").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(2))));
    let (topic, body) = c.response().await;
    assert_eq!(topic, "$dps/registrations/res/401/?$rid=e1");
    assert_eq!(body["errorCode"], 401002);
    for m in ["trackingId", "message", "timestampUtc"] {
        assert!(body[m].as_str().is_some_and(|v| !v.is_empty()), "{m}: {body}");
    }
    // A malformed body and a mismatched id are 400s; an unknown operation is a 404.
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=e2", QoS::AtLeastOnce, 3, b"{nope").await;
    c.recv().await;
    let (topic, body) = c.response().await;
    assert_eq!((topic.as_str(), &body["errorCode"]), ("$dps/registrations/res/400/?$rid=e2", &json!(400001)));
    drop(c);

    let good = s.device_sas("mq-err", &key, s.now() + 3600);
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-err", &good, 30).await;
    c.subscribe(1).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=e3", QoS::AtLeastOnce, 4, br#"{"registrationId":"someone-else"}"#).await;
    c.recv().await;
    let (topic, body) = c.response().await;
    assert_eq!((topic.as_str(), &body["errorCode"]), ("$dps/registrations/res/400/?$rid=e3", &json!(400004)));
    c.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=e4&operationId=4.0.nope", QoS::AtLeastOnce, 5, b"").await;
    c.recv().await;
    let (topic, body) = c.response().await;
    assert_eq!((topic.as_str(), &body["errorCode"]), ("$dps/registrations/res/404/?$rid=e4", &json!(404203)));
    // Still serving on the same connection.
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=e5", QoS::AtLeastOnce, 6, b"").await;
    c.recv().await;
    assert!(c.response().await.0.starts_with("$dps/registrations/res/202/"));
}

/// §2.3: only the DPS filter; others get 0x80, also in a second SUBSCRIBE.
#[tokio::test]
async fn unsupported_filters_are_refused() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-sub").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-sub", &sas, 0).await;
    assert_eq!(c.subscribe(1).await.return_codes, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]);
    let mut other = Subscribe::new("devices/mq-sub/messages/#", QoS::AtLeastOnce);
    other.pkid = 2;
    other.filters.push(SubscribeFilter::new(FILTER.into(), QoS::ExactlyOnce));
    c.send(Packet::Subscribe(other)).await;
    assert_eq!(
        c.recv().await,
        Some(Packet::SubAck(SubAck::new(2, vec![SubscribeReasonCode::Failure, SubscribeReasonCode::Success(QoS::AtLeastOnce)])))
    );
}

/// §2.3 (issue 13 fix 6): the response filter is granted QoS 1 whatever QoS the SUBSCRIBE asked for —
/// responses are QoS 1 publishes (§2.5), so a QoS 0 grant would be a lie.
#[tokio::test]
async fn suback_grants_qos_1_for_a_qos_0_request() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-sub0").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-sub0", &sas, 0).await;
    let mut sub = Subscribe::new(FILTER, QoS::AtMostOnce);
    sub.pkid = 5;
    c.send(Packet::Subscribe(sub)).await;
    assert_eq!(c.recv().await, Some(Packet::SubAck(SubAck::new(5, vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]))));
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=q0", QoS::AtMostOnce, 0, b"").await;
    assert!(c.response().await.0.starts_with("$dps/registrations/res/202/?$rid=q0&retry-after="));
}

/// §2.3/§2.5 (issue 13 fix 6): responses are published only to a session subscribed to
/// `$dps/registrations/res/#`. Without the subscription a request is acknowledged and handled but its
/// response goes to nobody, and the connection stays open (the choice is written in `mqtt/session.rs`).
/// PINGREQ shows that nothing was queued: the server writes a response before it reads the next packet.
#[tokio::test]
async fn responses_go_only_to_a_subscribed_session() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-nosub").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-nosub", &sas, 0).await;

    // Not subscribed: PUBACK for QoS 1, no response for QoS 1 or QoS 0, and the session stays usable.
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=n1", QoS::AtLeastOnce, 1, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(1))));
    c.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=n2&operationId=4.0.nope", QoS::AtMostOnce, 0, b"").await;
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp), "no response may reach an unsubscribed session");

    // A refused filter does not count as the subscription.
    let mut other = Subscribe::new("$dps/registrations/res/202/#", QoS::AtLeastOnce);
    other.pkid = 2;
    c.send(Packet::Subscribe(other)).await;
    assert_eq!(c.recv().await, Some(Packet::SubAck(SubAck::new(2, vec![SubscribeReasonCode::Failure]))));
    c.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=n3&operationId=4.0.nope", QoS::AtLeastOnce, 3, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(3))));
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));

    // Subscribed: answered.
    c.subscribe(4).await;
    c.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=n4&operationId=4.0.nope", QoS::AtLeastOnce, 5, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(5))));
    assert_eq!(c.response().await.0, "$dps/registrations/res/404/?$rid=n4");

    // Unsubscribed again: silent again.
    let mut u = Unsubscribe::new(FILTER);
    u.pkid = 6;
    c.send(Packet::Unsubscribe(u)).await;
    assert_eq!(c.recv().await, Some(Packet::UnsubAck(UnsubAck::new(6))));
    c.publish("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=n5&operationId=4.0.nope", QoS::AtLeastOnce, 7, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(7))));
    c.send(Packet::PingReq).await;
    assert_eq!(c.recv().await, Some(Packet::PingResp));
}

/// CONNECT refusals carry the documented return codes (§2.2).
#[tokio::test]
async fn bad_connects_are_refused() {
    let s = TestService::start().await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    let mut connect = Connect::new("dev-a");
    connect.set_login(format!("{}/registrations/dev-b/api-version=2019-03-31", s.scope), "x");
    c.send(Packet::Connect(connect)).await;
    assert_eq!(c.recv().await, Some(Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadClientId, false))));
    c.expect_closed().await;

    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.send(Packet::Connect(Connect::new("dev-a"))).await;
    assert_eq!(c.recv().await, Some(Packet::ConnAck(ConnAck::new(ConnectReturnCode::BadUserNamePassword, false))));
    c.expect_closed().await;
}

/// Misbehaving peers lose their own connection only; the endpoint keeps serving.
#[tokio::test]
async fn misbehaving_peers_are_disconnected() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-bad").await;

    // Garbage bytes instead of CONNECT.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.raw(b"GET / HTTP/1.1\r\n\r\n").await;
    c.expect_closed().await;
    // A client that never sends CONNECT (the test config gives it 1 s).
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.expect_closed().await;
    // A packet before CONNECT.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.send(Packet::PingReq).await;
    c.expect_closed().await;
    // An oversized packet (the header announces > 96 KB).
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 0).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=big", QoS::AtLeastOnce, 9, &vec![b'x'; 200 * 1024]).await;
    c.expect_closed().await;
    // A publish on a topic DPS does not serve, and QoS 2.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 0).await;
    c.publish("devices/mq-bad/messages/events/", QoS::AtLeastOnce, 1, b"{}").await;
    c.expect_closed().await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 0).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=1", QoS::ExactlyOnce, 1, b"{}").await;
    c.expect_closed().await;
    // A second CONNECT.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 0).await;
    let mut again = Connect::new("mq-bad");
    again.set_login(format!("{}/registrations/mq-bad/api-version=2019-03-31", s.scope), sas.clone());
    c.send(Packet::Connect(again)).await;
    c.expect_closed().await;
    // Keep-alive: silence past 1.5 × 1 s closes the connection.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 1).await;
    c.expect_closed().await;

    // Still serving.
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-bad", &sas, 0).await;
    c.subscribe(1).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=ok", QoS::AtLeastOnce, 1, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(1))));
    assert!(c.response().await.0.starts_with("$dps/registrations/res/202/?$rid=ok"));
}

/// §0.7: the WebSocket upgrade is accepted on any path and dispatched on the sub-protocol.
#[tokio::test]
async fn mqtt_over_websockets_on_any_path() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = TestService::start().await;
    let https_port: u16 = s.base.rsplit(':').next().and_then(|p| p.parse().ok()).unwrap_or_default();
    for (path, proto, id) in [("/$iothub/websocket", "mqtt", "mq-ws-1"), ("/", "MQTT", "mq-ws-2")] {
        let sas = enrolled(&s, id).await;
        let mut req = format!("wss://127.0.0.1:{https_port}{path}").into_client_request().expect("into client request");
        req.headers_mut().insert("sec-websocket-protocol", proto.parse().unwrap_or_else(|e| panic!("{e:?}")));
        let (ws, resp) = tokio_tungstenite::client_async(req, tls(&s, https_port).await).await.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(resp.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()), Some(proto));
        let mut c = Client::new(ws_stream::WsBytes::new(ws));
        assert_eq!(c.connect(&s, id, &sas, 30).await.code, ConnectReturnCode::Success);
        c.subscribe(1).await;
        c.publish("$dps/registrations/PUT/iotdps-register/?$rid=w1", QoS::AtLeastOnce, 2, b"").await;
        assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(2))));
        assert!(c.response().await.0.starts_with("$dps/registrations/res/202/?$rid=w1&retry-after="));
    }
    // Another sub-protocol is refused.
    let mut req = format!("wss://127.0.0.1:{https_port}/").into_client_request().expect("into client request");
    req.headers_mut().insert("sec-websocket-protocol", "chat".parse().unwrap_or_else(|e| panic!("{e:?}")));
    assert!(tokio_tungstenite::client_async(req, tls(&s, https_port).await).await.is_err());
}

/// A byte-stream view of a client WebSocket (binary frames), for the test client.
mod ws_stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_util::{Sink, Stream};
    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::WebSocketStream;

    pub struct WsBytes<S> {
        ws: WebSocketStream<S>,
        pending: bytes::Bytes,
    }

    impl<S> WsBytes<S> {
        pub fn new(ws: WebSocketStream<S>) -> Self {
            Self { ws, pending: bytes::Bytes::new() }
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
        fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
            loop {
                if !self.pending.is_empty() {
                    let n = self.pending.len().min(buf.remaining());
                    let chunk = self.pending.split_to(n);
                    buf.put_slice(&chunk);
                    return Poll::Ready(Ok(()));
                }
                match Pin::new(&mut self.ws).poll_next(cx) {
                    Poll::Ready(Some(Ok(Message::Binary(b)))) => self.pending = b,
                    Poll::Ready(Some(Ok(Message::Close(_)))) | Poll::Ready(None) | Poll::Ready(Some(Err(_))) => return Poll::Ready(Ok(())),
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Pending => return Poll::Pending,
                }
            }
        }
    }

    impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
        fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(std::io::Error::other(e))),
                Poll::Pending => return Poll::Pending,
            }
            Pin::new(&mut self.ws).start_send(Message::Binary(bytes::Bytes::copy_from_slice(data))).map_err(std::io::Error::other)?;
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.ws).poll_flush(cx).map_err(std::io::Error::other)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.ws).poll_close(cx).map_err(std::io::Error::other)
        }
    }
}

/// Azure limits profile (§1.9, §8): a sixth poll within 10 s is answered on `res/429` with `retry-after`,
/// the connection stays usable, and the device's next poll after the window is answered.
#[tokio::test]
async fn a_sixth_poll_within_ten_seconds_is_429_on_the_response_topic() {
    let limits = dps_service::config::Overrides { limits: Some("azure".into()), ..Default::default() };
    let s = TestService::start_with(limits).await;
    let sas = enrolled(&s, "mq-lim").await;
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-lim", &sas, 30).await;
    c.subscribe(1).await;
    c.publish("$dps/registrations/PUT/iotdps-register/?$rid=r", QoS::AtLeastOnce, 2, b"").await;
    c.recv().await;
    let (_, body) = c.response().await;
    let op = body["operationId"].as_str().unwrap_or_default().to_owned();
    for i in 0..6u16 {
        c.publish(
            &format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p{i}&operationId={op}"),
            QoS::AtLeastOnce,
            10 + i,
            b" ",
        )
        .await;
        assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(10 + i))));
        let (topic, body) = c.response().await;
        if i < 5 {
            assert!(topic.starts_with("$dps/registrations/res/20"), "poll {i}: {topic}");
        } else {
            assert_eq!(topic, format!("$dps/registrations/res/429/?$rid=p{i}&retry-after=10"), "§2.5: $rid first, then retry-after");
            assert_eq!(body["errorCode"], 429001, "{body}");
        }
    }
    s.clock.advance(chrono::Duration::seconds(10));
    c.publish(&format!("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=p9&operationId={op}"), QoS::AtLeastOnce, 30, b" ").await;
    c.recv().await;
    assert!(c.response().await.0.starts_with("$dps/registrations/res/20"));
}

/// A `$rid` (echoed in the response topic) or `operationId` longer than 128 characters is not a request: the
/// session is disconnected, no PUBACK; the bound itself is served.
#[tokio::test]
async fn over_long_request_ids_disconnect_the_session() {
    let s = TestService::start().await;
    let sas = enrolled(&s, "mq-long-rid").await;
    let long = "1".repeat(dps_proto::MAX_REQUEST_ID_CHARS + 1);
    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-long-rid", &sas, 0).await;
    c.subscribe(1).await;
    c.publish(&dps_proto::mqtt::register_topic(&long), QoS::AtLeastOnce, 2, b"").await;
    c.expect_closed().await;

    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-long-rid", &sas, 0).await;
    c.subscribe(1).await;
    let op = "o".repeat(dps_proto::MAX_OPERATION_ID_CHARS + 1);
    c.publish(&dps_proto::mqtt::operation_status_topic("1", &op), QoS::AtLeastOnce, 2, b"").await;
    c.expect_closed().await;

    let mut c = Client::new(tls(&s, s.mqtt_port).await);
    c.connect(&s, "mq-long-rid", &sas, 0).await;
    c.subscribe(1).await;
    let rid = "1".repeat(dps_proto::MAX_REQUEST_ID_CHARS);
    c.publish(&dps_proto::mqtt::register_topic(&rid), QoS::AtLeastOnce, 2, b"").await;
    assert_eq!(c.recv().await, Some(Packet::PubAck(PubAck::new(2))));
    assert!(c.response().await.0.starts_with(&format!("$dps/registrations/res/202/?$rid={rid}")));
}
