//! The AMQP 1.0 device endpoint (§3): TLS on its own port (default 5671), and over WebSockets on the HTTPS
//! port (`Sec-WebSocket-Protocol: AMQPWSB10`, see `crate::websocket`). Like the MQTT endpoint it is not a
//! broker: it accepts the two DPS links of one device and answers its register and operation-status requests.
//!
//! What is whose:
//! - **fe2o3-amqp** (its `acceptor` side) runs the connection, session and link state machines, flow
//!   control (link credit, session windows), message encoding and dispositions — see `connection.rs`.
//! - **`sasl.rs`** is written here: fe2o3's `SaslAcceptor` answers each SASL frame synchronously and does
//!   not hand the authenticated identity to the connection, while DPS needs both — PLAIN's authcid and
//!   password become the device's credentials, and the `TPM` mechanism (§3.3) asks the registration engine
//!   for a challenge in the middle of the exchange. It still uses fe2o3's SASL frame types and codec.
//! - **`guard.rs`** sits between the peer's bytes and fe2o3: it checks every frame header (size, type, data
//!   offset) before fe2o3 sees it, enforces the frame-size limit, the per-frame and idle deadlines and the
//!   write deadline, and closes a misbehaving connection with an AMQP `close` carrying the error. fe2o3's
//!   frame decoder assumes well-formed headers (a frame shorter than its 8-byte header panics it), so no
//!   unchecked byte reaches it.
//!
//! One task per connection plus its guard; both end when the peer goes, a limit trips or the service stops.

pub mod connection;
pub mod guard;
pub mod header;
pub mod operation_status;
pub mod register;
pub mod response;
pub mod sasl;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info};

use crate::app::App;

/// Limits of the AMQP endpoint (both transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame accepted and advertised (`max-frame-size`).
    pub max_frame_bytes: u32,
    /// Largest message on a link (`max-message-size`; §0.13: the C SDK's receiver limit).
    pub max_message_bytes: u64,
    /// Time from TLS to a complete `open` (protocol headers, SASL, open).
    pub handshake_timeout: Duration,
    /// Time one frame may take to arrive once its first byte did (a peer that drips bytes is closed).
    pub frame_timeout: Duration,
    /// Silence after which a connection is closed; the peer is told it in `open` (`idle-time-out`), so a
    /// live client sends heartbeats (empty frames) at least every half of it.
    pub idle_timeout: Duration,
    /// Time a write may wait for a peer that does not read.
    pub write_timeout: Duration,
    /// Open connections at most; more are closed right after accept.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_message_bytes: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            frame_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(240),
            write_timeout: Duration::from_secs(30),
            max_connections: 20_000,
        }
    }
}

/// The limits plus the count of open connections, shared by the TLS and WebSocket transports.
#[derive(Debug, Clone)]
pub struct Admission {
    pub limits: Limits,
    open: Arc<Semaphore>,
}

impl Admission {
    pub fn new(limits: Limits) -> Self {
        Self { limits, open: Arc::new(Semaphore::new(limits.max_connections)) }
    }

    /// A slot for one more connection, if the cap allows it.
    pub fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.open).try_acquire_owned().ok()
    }
}

/// What a connection knows of its transport.
#[derive(Debug, Clone)]
pub struct Transport {
    pub peer: SocketAddr,
    /// The TLS client certificate chain (DER, leaf first), for X.509 devices.
    pub client_chain: Option<Arc<Vec<Vec<u8>>>>,
    /// `amqp` or `amqp-ws` (metrics, traces).
    pub protocol: &'static str,
}

/// Accepts TLS connections on the AMQP port until `shutdown` turns true.
/// The guard keeps the idle time (`idle-time-out`), so the connection's is off; the write deadline and the
/// caps are the listener's.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    bounds: crate::bounds::ListenerBounds,
    shutdown: watch::Receiver<bool>,
) {
    let handshake_timeout = app.amqp.limits.handshake_timeout;
    let bounds = crate::bounds::ListenerBounds { handshake_timeout, idle_timeout: None, ..bounds };
    crate::tls::accept_bounded("AMQP", listener, tls, bounds, shutdown, |peer| {
        let app = Arc::clone(&app);
        move |stream, chain| run(stream, app, Transport { peer, client_chain: chain, protocol: "amqp" })
    })
    .await;
}

/// Runs one connection (TLS stream or WebSocket byte stream) to its end.
pub async fn run<S>(stream: S, app: Arc<App>, transport: Transport)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = transport.peer;
    let Some(_slot) = app.amqp.admit() else {
        info!(%peer, max = app.amqp.limits.max_connections, "AMQP connection refused: too many open connections");
        return;
    };
    match connection::run(stream, Arc::clone(&app), transport).await {
        Ok(()) => debug!(%peer, "AMQP connection closed"),
        Err(end) => end.log(peer),
    }
}
