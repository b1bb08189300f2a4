//! How an MQTT or AMQP session reaches the service: the protocol's own TLS port, or a WebSocket on the HTTPS
//! port ([`crate::ws`]) — the SDKs' `MqttWs` / `AmqpWs` transports, for networks that only let 443 out. Either
//! way the session above sees one byte stream, and the flow shows the connection, TLS and upgrade steps.

use std::sync::Arc;

use anyhow::{bail, Context, Result};
use dps_proto::simulation::FlowKind;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::flow::{self, Flow};
use crate::ws::{self, Carried};
use crate::Endpoint;

/// The port a session goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// The protocol's TLS port (MQTT 8883, AMQP 5671 on Azure).
    Port(u16),
    /// A WebSocket on the endpoint's HTTPS port.
    WebSocket,
}

/// A session's byte stream.
pub trait ByteStream: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + std::fmt::Debug + 'static> ByteStream for T {}

/// Connects to `endpoint` as `carrier` says, for `carried`, over `tls`, telling `flow` each step: the host name
/// (the TLS server name, AMQP's hostname) and the stream.
pub async fn open(
    endpoint: &Endpoint,
    carrier: Carrier,
    carried: Carried,
    tls: Arc<rustls::ClientConfig>,
    flow: &Flow,
) -> Result<(String, Box<dyn ByteStream>)> {
    let host = endpoint.host.rsplit_once(':').map_or(endpoint.host.as_str(), |(h, _)| h).to_owned();
    let name = match carried {
        Carried::Mqtt => "MQTT",
        Carried::Amqp => "AMQP",
    };
    let (port, label) = match carrier {
        Carrier::Port(p) => (p, name.to_owned()),
        Carrier::WebSocket => (https_port(&endpoint.host)?, format!("{name} over WebSockets")),
    };
    flow.local(FlowKind::Connect, format!("TCP to {host}:{port} ({label})")).await;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.with_context(|| format!("{host}:{port}"))?;
    let _ = tcp.set_nodelay(true);
    let server = rustls::pki_types::ServerName::try_from(host.clone())?;
    flow.local(FlowKind::Tls, flow::tls_title(&tls)).await;
    let stream = tokio_rustls::TlsConnector::from(tls).connect(server, tcp).await.with_context(|| format!("{label} TLS"))?;
    if carrier != Carrier::WebSocket {
        return Ok((host, Box::new(stream)));
    }
    let authority = format!("{host}:{port}");
    flow.send(FlowKind::Connect, "WebSocket upgrade", Some(ws::upgrade_shown(&authority, carried))).await;
    let (session, status) = ws::upgrade(stream, &authority, carried).await?;
    flow.received(FlowKind::Connect, format!("{status} Switching Protocols: {} in binary frames", carried.sub_protocol()), None);
    Ok((host, Box::new(session)))
}

/// The HTTPS port of `host[:port]` (443 when it names none).
fn https_port(host: &str) -> Result<u16> {
    match host.rsplit_once(':') {
        None => Ok(443),
        Some((_, p)) => match p.parse() {
            Ok(p) => Ok(p),
            Err(_) => bail!("'{host}': the port is not a number"),
        },
    }
}
