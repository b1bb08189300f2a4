//! The MQTT 3.1.1 device endpoint (§2): TLS on its own port (default 8883), and over WebSockets on the
//! HTTPS port (see `crate::websocket`). It is not a broker: it accepts exactly the DPS subscription and the two
//! DPS request topics, and answers each request on the response topic.
//!
//! Packets are encoded and decoded with the `mqttbytes` v4 codec of `rumqttc` (the rumqtt project's
//! well-kept, tested codec, used by its broker `rumqttd` too), without its client, TLS or event loop; only
//! the session logic — what a DPS endpoint answers to which packet, in which order — is written here.
//!
//! One task per connection. A connection waiting for its next packet holds no read buffer (it waits on a
//! single byte, then reads what is in flight), and a response is encoded into a buffer dropped once sent.

pub mod connect;
pub mod operation_status;
pub mod register;
pub mod session;
pub mod subscribe;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;

/// Limits of the MQTT endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest packet accepted; a larger one closes the connection (§9: 96 KB messages).
    pub max_packet_bytes: usize,
    /// Time a new connection has to finish TLS, then again to send CONNECT.
    pub connect_timeout: Duration,
    /// The longest keep-alive honoured; keep-alive 0 or above it counts as it (`session::idle_wait`).
    pub max_keep_alive: Duration,
    /// Time a packet may take to arrive whole once its first byte did.
    pub packet_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_bytes: 96 * 1024 + 1024,
            connect_timeout: Duration::from_secs(10),
            max_keep_alive: Duration::from_secs(1200),
            packet_timeout: Duration::from_secs(30),
        }
    }
}

/// Accepts TLS connections on the MQTT port until `shutdown` turns true. The session keeps its own idle
/// time (the keep-alive), so the connection's is off; the write deadline and the caps are the listener's.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    limits: Limits,
    bounds: crate::bounds::ListenerBounds,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    let bounds = crate::bounds::ListenerBounds { handshake_timeout: limits.connect_timeout, idle_timeout: None, ..bounds };
    crate::tls::accept_bounded("MQTT", listener, tls, bounds, shutdown, |peer| {
        let (app, stop) = (Arc::clone(&app), stop.clone());
        move |stream, chain| session::run(stream, app, peer, chain, "mqtt", limits, stop)
    })
    .await;
}
