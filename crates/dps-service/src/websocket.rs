//! WebSockets on the HTTPS listener (§0.7, §2.1, §3.1): the upgrade is accepted on any path
//! (`/$iothub/websocket` and `/` are both used) and dispatched on `Sec-WebSocket-Protocol` — `mqtt`/`MQTT` to
//! the MQTT session, `AMQPWSB10` to the AMQP connection; anything else is refused with 400. Binary frames
//! carry the protocol's byte stream: a pump ([`dps_device::ws::pump`], shared with the device side) turns them into a byte stream for the same
//! code as the TLS ports.

use std::sync::Arc;

use http::{HeaderValue, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use dps_device::ws::Carried;

use crate::app::App;
use crate::https::{empty_response, HttpResponse};

/// Whether a request asks for a WebSocket upgrade.
pub fn is_upgrade(req: &hyper::Request<Incoming>) -> bool {
    req.headers().get(http::header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
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
        if let Some(why) = dps_device::ws::pump(ws, pump_side).await {
            debug!(%peer, %why, "device WebSocket ended");
        }
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
