//! One AMQP connection: the protocol header (and SASL, `sasl.rs`) within the handshake deadline, then the
//! frame guard (`guard.rs`) in front of fe2o3's connection engine, one session, and the device's two links
//! (§3.2) — the client's sender link, on which requests arrive (credit is granted by fe2o3 as they are
//! consumed), and its receiver link, on which responses go. Requests are answered in order; a response
//! waits for the receiver link and its credit within the write deadline.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use dps_core::attestation::DeviceCredentials;
use dps_core::DpsError;
use dps_proto::amqp::{
    parse_address, AmqpRequest, RegistrationAddress, FORCE_REGISTRATION, GET_OPERATION_STATUS, OPERATION_ID, OPERATION_TYPE, REGISTER,
};
use fe2o3_amqp::acceptor::{ConnectionAcceptor, LinkAcceptor, LinkEndpoint, ListenerSessionHandle, SessionAcceptor};
use fe2o3_amqp::link::delivery::{Delivery, DeliveryInfo};
use fe2o3_amqp::link::{Receiver, RecvError, Sender};
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorBody, ErrorCondition, Role};
use fe2o3_amqp::types::messaging::{Body, Data, Message, MessageId, Source, Target, TargetArchetype};
use fe2o3_amqp::types::performatives::Attach;
use fe2o3_amqp::types::primitives::{SimpleValue, Symbol, Value};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream};
use tracing::{debug, info};

use super::header::{self, Header};
use super::sasl::{self, Credentials};
use super::{guard, operation_status, register, response, Transport};
use crate::app::App;

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed.
    Closed,
    Io(std::io::Error),
    /// The peer broke the protocol (bad header, malformed SASL frame, …).
    Protocol(String),
    /// SASL refused the client.
    Refused(String),
    Timeout(&'static str),
    /// The guard closed the connection with an AMQP error.
    Violation(String),
}

impl End {
    pub fn log(&self, peer: SocketAddr) {
        match self {
            End::Closed => debug!(%peer, "AMQP connection closed"),
            End::Io(e) => debug!(%peer, error = %e, "AMQP connection I/O error"),
            End::Protocol(why) => info!(%peer, why, "AMQP connection closed: protocol violation"),
            End::Refused(why) => info!(%peer, why, "AMQP connection refused"),
            End::Timeout(why) => debug!(%peer, why, "AMQP connection timed out"),
            End::Violation(why) => info!(%peer, why, "AMQP connection closed with an error"),
        }
    }
}

/// Runs a connection on an established byte stream (after TLS, or a WebSocket's).
pub async fn run<S>(mut stream: S, app: Arc<App>, transport: Transport) -> Result<(), End>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = app.amqp.limits;
    let credentials = tokio::time::timeout(limits.handshake_timeout, handshake(&mut stream, &app))
        .await
        .map_err(|_| End::Timeout("no protocol header and SASL exchange within the handshake deadline"))??;
    let (engine_side, guard_side) = tokio::io::duplex(limits.max_frame_bytes as usize * 2);
    let guard = guard::pump(stream, guard_side, &header::AMQP, limits, app.shutdown.clone());
    let serve = serve(engine_side, app, transport, credentials);
    let (guarded, served) = tokio::join!(guard, serve);
    guarded.and(served)
}

/// The client's protocol header, and the SASL layer when it asks for one.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, app: &App) -> Result<Credentials, End> {
    let first = header::read(stream).await.map_err(End::Io)?;
    let credentials = match Header::of(first) {
        Header::Amqp => return Ok(Credentials::None),
        Header::Sasl => sasl::negotiate(stream, app).await?,
        Header::Unsupported(h) => return Err(unsupported(stream, h).await),
    };
    match Header::of(header::read(stream).await.map_err(End::Io)?) {
        Header::Amqp => Ok(credentials),
        Header::Sasl | Header::Unsupported(_) => Err(unsupported(stream, first).await),
    }
}

/// Answers an unsupported header with the one this server speaks, then closes (AMQP 1.0 §2.2).
async fn unsupported<S: AsyncWrite + Unpin>(stream: &mut S, got: [u8; 8]) -> End {
    let _ = stream.write_all(&header::AMQP).await;
    let _ = stream.shutdown().await;
    End::Protocol(format!("unsupported protocol header {:?}", String::from_utf8_lossy(&got)))
}

/// fe2o3's side: open, one session, the device's links, until the connection ends.
async fn serve(io: DuplexStream, app: Arc<App>, transport: Transport, credentials: Credentials) -> Result<(), End> {
    let limits = app.amqp.limits;
    let acceptor = ConnectionAcceptor::builder()
        .container_id("dps-console")
        .max_frame_size(limits.max_frame_bytes)
        .channel_max(1u16)
        .idle_time_out(u32::try_from(limits.idle_timeout.as_millis()).unwrap_or(u32::MAX))
        .build();
    let mut connection = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(io))
        .await
        .map_err(|_| End::Timeout("no open within the handshake deadline"))?
        .map_err(|e| End::Protocol(format!("the connection did not open: {e}")))?;
    let mut session = match SessionAcceptor::new().accept(&mut connection).await {
        Ok(s) => s,
        Err(e) => {
            let _ = connection.close().await;
            return Err(End::Protocol(format!("no session: {e}")));
        }
    };
    let mut links = Links::new(app, transport, credentials);
    let result = links.serve(&mut session).await;
    links.detach_all().await;
    let _ = session.end().await;
    let _ = connection.close().await;
    result
}

/// Who is asking, once a link names the device.
#[derive(Debug, Clone)]
pub struct Device {
    pub address: RegistrationAddress,
    pub credentials: DeviceCredentials,
    pub transport: Transport,
    /// The link property `com.microsoft:api-version` (§3.2).
    pub api_version: Option<String>,
}

enum Event {
    Attach(Option<Box<Attach>>),
    Delivery(Box<Result<Delivery<Body<Value>>, RecvError>>),
}

type DeviceLinkAcceptor = LinkAcceptor<fn(Source) -> Option<Source>, fn(Target) -> Option<Target>>;

/// The device's two links and the responses waiting for the receiver link.
struct Links {
    app: Arc<App>,
    transport: Transport,
    credentials: Credentials,
    address: Option<RegistrationAddress>,
    api_version: Option<String>,
    requests: Option<Receiver>,
    responses: Option<Sender>,
    queued: VecDeque<Message<Data>>,
    acceptor: DeviceLinkAcceptor,
}

async fn next_delivery(requests: Option<&mut Receiver>) -> Result<Delivery<Body<Value>>, RecvError> {
    match requests {
        Some(r) => r.recv::<Body<Value>>().await,
        None => std::future::pending().await,
    }
}

impl Links {
    fn new(app: Arc<App>, transport: Transport, credentials: Credentials) -> Self {
        let acceptor = LinkAcceptor::builder().max_message_size(app.amqp.limits.max_message_bytes).build();
        Self {
            app,
            transport,
            credentials,
            address: None,
            api_version: None,
            requests: None,
            responses: None,
            queued: VecDeque::new(),
            acceptor,
        }
    }

    async fn serve(&mut self, session: &mut ListenerSessionHandle) -> Result<(), End> {
        loop {
            let event = tokio::select! {
                attach = session.next_incoming_attach() => Event::Attach(attach.map(Box::new)),
                delivery = next_delivery(self.requests.as_mut()) => Event::Delivery(Box::new(delivery)),
            };
            match event {
                Event::Attach(None) => return Ok(()),
                Event::Attach(Some(attach)) => self.attach(*attach, session).await?,
                Event::Delivery(delivery) => match *delivery {
                    Ok(delivery) => self.request(delivery).await?,
                    Err(RecvError::MessageSizeExceeded(e)) => {
                        info!(peer = %self.transport.peer, size = e.size, max = e.max_size, "AMQP request too large; its link was detached");
                        self.requests = None;
                    }
                    Err(e) => return Err(End::Protocol(format!("cannot receive a request: {e}"))),
                },
            }
            self.flush().await?;
        }
    }

    /// Accepts one of the two links if its address names this connection's device (§3.2).
    async fn attach(&mut self, attach: Attach, session: &mut ListenerSessionHandle) -> Result<(), End> {
        let address = link_address(&attach).and_then(|a| parse_address(&a));
        let api_version = link_api_version(&attach);
        let role = attach.role.clone();
        let link = self.acceptor.accept_incoming_attach(attach, session).await.map_err(|e| End::Protocol(format!("attach failed: {e}")))?;
        let refusal = match &address {
            None => Some((AmqpError::InvalidField, "the link address is not {idScope}/registrations/{registrationId}".to_owned())),
            Some(a) if self.credentials.identity().is_some_and(|id| !id.same_device(a)) => {
                Some((AmqpError::UnauthorizedAccess, "the link address names another device than the SASL identity".to_owned()))
            }
            Some(a) if self.address.as_ref().is_some_and(|known| !known.same_device(a)) => {
                Some((AmqpError::NotAllowed, "both links must name the same device".to_owned()))
            }
            Some(_) if (role == Role::Sender && self.requests.is_some()) || (role == Role::Receiver && self.responses.is_some()) => {
                Some((AmqpError::NotAllowed, "a device has one sender and one receiver link".to_owned()))
            }
            Some(_) => None,
        };
        if let Some((condition, why)) = refusal {
            info!(peer = %self.transport.peer, why, "AMQP link refused");
            close_link(link, condition, why).await;
            return Ok(());
        }
        self.address = address;
        self.api_version = api_version.or(self.api_version.take());
        match link {
            LinkEndpoint::Receiver(r) => self.requests = Some(r),
            LinkEndpoint::Sender(s) => self.responses = Some(s),
        }
        Ok(())
    }

    fn device(&self) -> Option<Device> {
        let credentials = match &self.credentials {
            Credentials::Plain { sas, .. } | Credentials::Tpm { sas, .. } => DeviceCredentials::Sas(sas.clone()),
            Credentials::None => match &self.transport.client_chain {
                Some(chain) => DeviceCredentials::X509(Arc::clone(chain)),
                None => DeviceCredentials::None,
            },
        };
        Some(Device {
            address: self.address.clone()?,
            credentials,
            transport: self.transport.clone(),
            api_version: self.api_version.clone(),
        })
    }

    /// Answers one request: accepted + a response message, or rejected with the DPS error (`response.rs`).
    async fn request(&mut self, delivery: Delivery<Body<Value>>) -> Result<(), End> {
        let (info, message) = delivery.into_parts();
        let Some(device) = self.device() else {
            return Err(End::Protocol("a request before the link named a device".into()));
        };
        let correlation_id = correlation_of(&message);
        let result = match check_correlation(correlation_id.as_ref()).and_then(|()| request_of(&message)) {
            Ok(AmqpRequest::Register { force_registration }) => {
                Box::pin(register::handle(&self.app, &device, &body_of(&message), force_registration)).await
            }
            Ok(AmqpRequest::OperationStatus { operation_id }) => {
                Box::pin(operation_status::handle(&self.app, &device, &operation_id)).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(reply) => {
                self.dispose(info, None).await?;
                self.queued.push_back(response::message(&reply, correlation_id));
            }
            Err(e) => {
                let error = response::rejection(&self.app, &e, &device.address.registration_id);
                self.dispose(info, Some(error)).await?;
            }
        }
        Ok(())
    }

    async fn dispose(&self, info: DeliveryInfo, rejection: Option<AmqpErrorBody>) -> Result<(), End> {
        let Some(requests) = &self.requests else { return Ok(()) };
        let sent = match rejection {
            None => requests.accept(info).await,
            Some(error) => requests.reject(info, error).await,
        };
        sent.map_err(|e| End::Protocol(format!("cannot settle a request: {e}")))
    }

    /// Sends the queued responses once the receiver link exists, each within the write deadline.
    async fn flush(&mut self) -> Result<(), End> {
        let Some(responses) = self.responses.as_mut() else { return Ok(()) };
        let deadline = self.app.amqp.limits.write_timeout;
        while let Some(message) = self.queued.pop_front() {
            match tokio::time::timeout(deadline, responses.send_batchable(message)).await {
                Ok(Ok(settled)) => drop(tokio::spawn(settled)),
                Ok(Err(e)) => return Err(End::Protocol(format!("cannot send a response: {e}"))),
                Err(_) => return Err(End::Timeout("the device granted no credit for its response")),
            }
        }
        Ok(())
    }

    async fn detach_all(&mut self) {
        if let Some(r) = self.requests.take() {
            let _ = r.close().await;
        }
        if let Some(s) = self.responses.take() {
            let _ = s.close().await;
        }
    }
}

async fn close_link(link: LinkEndpoint, condition: AmqpError, why: String) {
    let error = AmqpErrorBody { condition: ErrorCondition::AmqpError(condition), description: Some(why), info: None };
    let _ = match link {
        LinkEndpoint::Receiver(r) => r.close_with_error(error).await,
        LinkEndpoint::Sender(s) => s.close_with_error(error).await,
    };
}

/// The node address of a link: the target of the client's sender, the source of its receiver.
fn link_address(attach: &Attach) -> Option<String> {
    match attach.role {
        Role::Sender => match attach.target.as_deref()? {
            TargetArchetype::Target(t) => t.address.clone(),
        },
        Role::Receiver => attach.source.as_ref()?.address.clone(),
    }
}

fn link_api_version(attach: &Attach) -> Option<String> {
    match attach.properties.as_ref()?.get(&Symbol::from("com.microsoft:api-version"))? {
        Value::String(v) => Some(v.clone()),
        Value::Symbol(v) => Some(v.0.clone()),
        _ => None,
    }
}

fn application_property<'a>(message: &'a Message<Body<Value>>, name: &str) -> Option<&'a SimpleValue> {
    message.application_properties.as_ref()?.0.get(name)
}

/// The request a message carries (§3.4).
fn request_of(message: &Message<Body<Value>>) -> Result<AmqpRequest, DpsError> {
    let operation = match application_property(message, OPERATION_TYPE) {
        Some(SimpleValue::String(s)) => s.as_str(),
        _ => return Err(DpsError::bad_request(format!("the request has no '{OPERATION_TYPE}' application property"))),
    };
    match operation {
        REGISTER => {
            let force_registration = matches!(application_property(message, FORCE_REGISTRATION), Some(SimpleValue::Bool(true)));
            Ok(AmqpRequest::Register { force_registration })
        }
        GET_OPERATION_STATUS => match application_property(message, OPERATION_ID) {
            Some(SimpleValue::String(id)) => Ok(AmqpRequest::OperationStatus { operation_id: id.clone() }),
            _ => Err(DpsError::bad_request(format!("an operation-status request needs '{OPERATION_ID}'"))),
        },
        other => Err(DpsError::bad_request(format!("'{}' is not a DPS operation type", other.escape_debug()))),
    }
}

/// The bytes of the `data` sections (the registration JSON); nothing for other bodies (§3.4: ignored).
fn body_of(message: &Message<Body<Value>>) -> Vec<u8> {
    match &message.body {
        Body::Data(batch) => batch.iter().flat_map(|d| d.0.iter().copied()).collect(),
        _ => Vec::new(),
    }
}

/// A string or binary correlation-id longer than `dps_proto::MAX_REQUEST_ID_CHARS` (it is echoed and kept
/// while the response is queued) is refused with 400004.
fn check_correlation(id: Option<&MessageId>) -> Result<(), DpsError> {
    let len = match id {
        Some(MessageId::String(s)) => s.chars().count(),
        Some(MessageId::Binary(b)) => b.len(),
        _ => 0,
    };
    if len > dps_proto::MAX_REQUEST_ID_CHARS {
        return Err(DpsError::invalid(format!(
            "the correlation-id has {len} characters or bytes; at most {} are accepted",
            dps_proto::MAX_REQUEST_ID_CHARS
        )));
    }
    Ok(())
}

/// The correlation-id to echo (same AMQP type, §0.8); a request without one is answered with its
/// message-id, as request/response AMQP peers expect.
fn correlation_of(message: &Message<Body<Value>>) -> Option<MessageId> {
    let p = message.properties.as_ref()?;
    p.correlation_id.clone().or_else(|| p.message_id.clone())
}
