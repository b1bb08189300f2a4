//! WebSockets on the HTTPS listener (§0.7, §2.1, §3.1): the upgrade is accepted on any path
//! (`/$iothub/websocket` and `/` are both used) and dispatched on `Sec-WebSocket-Protocol` — `mqtt`/`MQTT` to
//! the MQTT session, `AMQPWSB10` to the AMQP connection; anything else is refused with 400. Binary frames
//! carry the protocol's byte stream: a pump turns them into a byte stream for the same code as the TLS ports.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::app::App;
use crate::https::{empty_response, HttpResponse};

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(req: &hyper::Request<Incoming>) -> bool {
    req.headers().get(http::header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The protocol a WebSocket carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carried {
    Mqtt,
    Amqp,
}

/// The sub-protocol exactly as the client wrote it (it is echoed), if it offered one this service speaks.
fn sub_protocol(req: &hyper::Request<Incoming>) -> Option<(Carried, String)> {
    req.headers()
        .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find_map(|p| {
            let carried = if p.eq_ignore_ascii_case("mqtt") {
                Carried::Mqtt
            } else if p.eq_ignore_ascii_case("AMQPWSB10") {
                Carried::Amqp
            } else {
                return None;
            };
            Some((carried, p.to_owned()))
        })
}

/// Answers an upgrade request: `101` and a pumped MQTT session or AMQP connection, or a plain refusal.
pub fn upgrade(req: hyper::Request<Incoming>, app: Arc<App>, who: crate::https::Peer) -> HttpResponse {
    let peer = who.addr;
    let Some((carried, protocol)) = sub_protocol(&req) else {
        let mut r = empty_response(StatusCode::BAD_REQUEST);
        r.headers_mut().insert("x-ms-error-code", HeaderValue::from_static("400004"));
        return r;
    };
    let Some(key) = req.headers().get(http::header::SEC_WEBSOCKET_KEY).map(|k| derive_accept_key(k.as_bytes())) else {
        return empty_response(StatusCode::BAD_REQUEST);
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                debug!(%peer, error = %e, "WebSocket upgrade failed");
                return;
            }
        };
        let max = match carried {
            Carried::Mqtt => app.mqtt_limits.max_packet_bytes * 2,
            Carried::Amqp => app.amqp.limits.max_frame_bytes as usize * 2,
        };
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(max);
        config.max_frame_size = Some(max);
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
        let (session_side, pump_side) = tokio::io::duplex(16 * 1024);
        match carried {
            Carried::Mqtt => {
                let (limits, shutdown) = (app.mqtt_limits, app.shutdown.clone());
                tokio::spawn(crate::mqtt::session::run(session_side, app, peer, who.client_chain, "mqtt-ws", limits, shutdown));
            }
            Carried::Amqp => {
                let transport = crate::amqp::Transport { peer, client_chain: who.client_chain, protocol: "amqp-ws" };
                tokio::spawn(crate::amqp::run(session_side, app, transport));
            }
        }
        pump(ws, pump_side, peer).await;
    });
    let mut r = empty_response(StatusCode::SWITCHING_PROTOCOLS);
    let h = r.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&key) {
        h.insert(http::header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&protocol) {
        h.insert(http::header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    r
}

/// Moves bytes between the WebSocket (binary frames) and the session's byte stream until either ends.
async fn pump<S>(ws: WebSocketStream<S>, session: tokio::io::DuplexStream, peer: std::net::SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut ws_tx, mut ws_rx) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(session);
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(4096);
        tokio::select! {
            msg = ws_rx.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(p))) => {
                    if ws_tx.send(Message::Pong(p)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Pong(_))) | Some(Ok(Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    debug!(%peer, "text frame on a device WebSocket; closing");
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    debug!(%peer, error = %e, "WebSocket error");
                    break;
                }
            },
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let out: Bytes = buf.split().freeze();
                    if ws_tx.send(Message::Binary(out)).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    let _ = ws_tx.send(Message::Close(None)).await;
    let _ = wr.shutdown().await;
}
