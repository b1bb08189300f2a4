//! MQTT and AMQP over WebSockets (§0.7, §2.1, §3.1), both ends: [`upgrade`] is a device's side — after TLS to
//! the HTTPS port, the upgrade on `/$iothub/websocket` with the carried protocol as `Sec-WebSocket-Protocol`
//! (`mqtt`, `AMQPWSB10`) — and [`pump`] turns a WebSocket's binary frames into a byte stream, for the device's
//! MQTT or AMQP session here and for the service's WebSocket listener, which carries the same sessions.

use anyhow::{Context, Result};
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The path the SDKs upgrade on.
pub const PATH: &str = "/$iothub/websocket";
/// The bytes a pumped session may have in flight each way.
const PIPE: usize = 16 * 1024;

/// What a WebSocket carries: its `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    Mqtt,
    Amqp,
}

impl Carried {
    pub fn sub_protocol(self) -> &'static str {
        match self {
            Self::Mqtt => "mqtt",
            Self::Amqp => "AMQPWSB10",
        }
    }
}

/// A device's WebSocket upgrade on `stream` (TLS to the HTTPS listener at `authority`, `host:port`), carrying
/// `carried`: the session's byte stream (pumped by a task of its own) and the status the service answered.
pub async fn upgrade<S>(stream: S, authority: &str, carried: Carried) -> Result<(tokio::io::DuplexStream, u16)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut request = format!("wss://{authority}{PATH}").into_client_request()?;
    request.headers_mut().insert("sec-websocket-protocol", http::HeaderValue::from_static(carried.sub_protocol()));
    let (ws, answer) = tokio_tungstenite::client_async(request, stream).await.context("WebSocket upgrade")?;
    let (session, pump_side) = tokio::io::duplex(PIPE);
    tokio::spawn(async move {
        let _ = pump(ws, pump_side).await;
    });
    Ok((session, answer.status().as_u16()))
}

/// The upgrade request as a flow shows it.
pub fn upgrade_shown(authority: &str, carried: Carried) -> String {
    format!("GET {PATH} HTTP/1.1\nHost: {authority}\nUpgrade: websocket\nSec-WebSocket-Protocol: {}", carried.sub_protocol())
}

/// Moves bytes between the WebSocket (binary frames) and the session's byte stream until either ends. The two
/// directions run apart: a peer that does not read blocks only the outbound copy (until the connection's write
/// deadline fails it), a session that does not read blocks only the inbound one. What sits between them is
/// bounded: one WebSocket message inbound, the duplex's buffer, one chunk outbound, four queued pongs. Returns
/// why the peer's side ended when that was not a close (an error, a text frame), for the caller's log.
pub async fn pump<S>(ws: WebSocketStream<S>, session: tokio::io::DuplexStream) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (ws_tx, ws_rx) = ws.split();
    let (rd, wr) = tokio::io::split(session);
    let (pongs_tx, pongs_rx) = tokio::sync::mpsc::channel(4);
    let mut why = None;
    // Inbound's end (the peer closed) reaches outbound as the pong channel closing; outbound's end (the
    // session ended, or the peer stopped reading) ends the pump.
    let inbound = async {
        why = inbound(ws_rx, wr, pongs_tx).await;
        std::future::pending::<()>().await
    };
    tokio::select! {
        () = outbound(rd, ws_tx, pongs_rx) => {}
        () = inbound => {}
    }
    why
}

/// The peer's binary frames into the session; pings queued for outbound to answer.
async fn inbound<S>(
    mut ws_rx: futures_util::stream::SplitStream<WebSocketStream<S>>,
    mut wr: tokio::io::WriteHalf<tokio::io::DuplexStream>,
    pongs: tokio::sync::mpsc::Sender<Bytes>,
) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut why = None;
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
                why = Some("a text frame on a device WebSocket".to_owned());
                break;
            }
            Ok(Message::Close(_)) => break,
            Err(e) => {
                why = Some(format!("WebSocket error: {e}"));
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
    why
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
    use tokio_tungstenite::tungstenite::protocol::Role;

    const OUTCOME: Duration = Duration::from_secs(10);

    /// A pump between a client WebSocket (returned) and a session byte stream (returned), over in-memory pipes.
    async fn pumped() -> (WebSocketStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (client_io, server_io) = tokio::io::duplex(16 * 1024);
        let (session, pump_side) = tokio::io::duplex(1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        tokio::spawn(pump(server, pump_side));
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
