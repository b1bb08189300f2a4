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
    // The carried protocol keeps its own idle time (MQTT keep-alive, AMQP idle-time-out).
    if let Some(d) = &who.deadlines {
        d.set_idle(None);
    }
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

/// Moves bytes between the WebSocket (binary frames) and the session's byte stream until either ends. The two
/// directions run apart: a peer that does not read blocks only the outbound copy (until the connection's write
/// deadline fails it), a session that does not read blocks only the inbound one. What sits between them is
/// bounded: one WebSocket message inbound, the duplex's buffer, one chunk outbound, four queued pongs.
async fn pump<S>(ws: WebSocketStream<S>, session: tokio::io::DuplexStream, peer: std::net::SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (ws_tx, ws_rx) = ws.split();
    let (rd, wr) = tokio::io::split(session);
    let (pongs_tx, pongs_rx) = tokio::sync::mpsc::channel(4);
    // Inbound's end (the peer closed) reaches outbound as the pong channel closing; outbound's end (the
    // session ended, or the peer stopped reading) ends the pump.
    let inbound = async {
        inbound(ws_rx, wr, pongs_tx, peer).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = outbound(rd, ws_tx, pongs_rx) => {}
        () = inbound => {}
    }
}

/// The peer's binary frames into the session; pings queued for outbound to answer.
async fn inbound<S>(
    mut ws_rx: futures_util::stream::SplitStream<WebSocketStream<S>>,
    mut wr: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    pongs: tokio::sync::mpsc::Sender<Bytes>,
    peer: std::net::SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    while let Some(msg) = ws_rx.next().await {
        match msg {
            Ok(Message::Binary(b)) => {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
            }
            // A peer that pings faster than it reads loses pongs, not memory.
            Ok(Message::Ping(p)) => {
                let _ = pongs.try_send(p);
            }
            Ok(Message::Pong(_)) | Ok(Message::Frame(_)) => {}
            Ok(Message::Text(_)) => {
                debug!(%peer, "text frame on a device WebSocket; closing");
                break;
            }
            Ok(Message::Close(_)) => break,
            Err(e) => {
                debug!(%peer, error = %e, "WebSocket error");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

/// The session's bytes to the peer as binary frames, and the pongs; a close when the session ends.
async fn outbound<S>(
    mut rd: tokio::io::ReadHalf<tokio::io::DuplexStream>,
    mut ws_tx: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut pongs: tokio::sync::mpsc::Receiver<Bytes>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(4096);
        let msg = tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) | Err(_) => break,
                Ok(_) => Message::Binary(buf.split().freeze()),
            },
            p = pongs.recv() => match p {
                Some(p) => Message::Pong(p),
                None => break,
            },
        };
        if ws_tx.send(msg).await.is_err() {
            return;
        }
    }
    let _ = ws_tx.send(Message::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    const OUTCOME: Duration = Duration::from_secs(10);

    /// A pump between a client WebSocket (returned) and a session byte stream (returned), over in-memory pipes.
    async fn pumped() -> (WebSocketStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let (session, pump_side) = tokio::io::duplex(1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        tokio::spawn(pump(server, pump_side, std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
        (client, session)
    }

    use std::time::Duration;

    /// Waits until `count` reaches `n` (the other side is blocked by then).
    async fn until(count: &std::sync::atomic::AtomicUsize, n: usize) {
        tokio::time::timeout(OUTCOME, async {
            while count.load(std::sync::atomic::Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the other side never got that far");
    }

    #[tokio::test]
    async fn a_session_that_does_not_read_does_not_stop_its_output() {
        let (client, mut session) = pumped().await;
        let (mut tx, mut rx) = client.split();
        // The peer sends more than the session's pipe holds; the session reads nothing.
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&sent);
        tokio::spawn(async move {
            for _ in 0..200 {
                if tx.send(Message::Binary(Bytes::from(vec![7u8; 1024]))).await.is_err() {
                    break;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            std::future::pending::<()>().await
        });
        until(&sent, 8).await;
        session.write_all(b"answer").await.expect("write");
        let got = tokio::time::timeout(OUTCOME, async {
            loop {
                match rx.next().await {
                    Some(Ok(Message::Binary(b))) => return b,
                    Some(Ok(_)) => continue,
                    other => panic!("the WebSocket ended: {other:?}"),
                }
            }
        })
        .await
        .expect("the session's output was held up by its unread input");
        assert_eq!(&got[..], b"answer");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_read_does_not_stop_its_input() {
        let (client, session) = pumped().await;
        let (mut tx, _rx_never_read) = client.split();
        let (mut session_rd, mut session_wr) = tokio::io::split(session);
        // The session sends more than the peer's pipe holds; the peer reads nothing.
        let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = std::sync::Arc::clone(&written);
        tokio::spawn(async move {
            for _ in 0..512 {
                if session_wr.write_all(&[9u8; 1024]).await.is_err() {
                    break;
                }
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            std::future::pending::<()>().await
        });
        until(&written, 17).await;
        tx.send(Message::Binary(Bytes::from_static(b"request"))).await.expect("send");
        let mut got = [0u8; 7];
        tokio::time::timeout(OUTCOME, session_rd.read_exact(&mut got))
            .await
            .expect("the peer's input was held up by its unread output")
            .expect("read");
        assert_eq!(&got, b"request");
    }
}
