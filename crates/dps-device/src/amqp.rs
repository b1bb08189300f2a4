//! AMQP device side (§3) with fe2o3-amqp's client: TLS, SASL PLAIN with the device's SAS token, one session,
//! the receiver link then the sender link on `{idScope}/registrations/{registrationId}` (as the Node SDK
//! opens them), register and poll with correlation ids. Used by the load generator, and after its own SASL
//! exchange by the TPM device ([`crate::tpm_amqp`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use dps_proto::amqp::{GET_OPERATION_STATUS, OPERATION_ID, OPERATION_TYPE, REGISTER, RETRY_AFTER_NAMES};
use dps_proto::RegistrationOperationStatus;
use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::link::delivery::Delivery;
use fe2o3_amqp::link::{Receiver, Sender};
use fe2o3_amqp::sasl_profile::SaslProfile;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::messaging::{ApplicationProperties, Body, Data, Message, MessageId, Outcome, Properties};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Connection, Session};
use tokio::io::{AsyncRead, AsyncWrite};

use dps_proto::simulation::FlowKind;

use crate::carrier::Carrier;
use crate::flow::{self, Flow};
use crate::ws::Carried;
use crate::{device_sas, tls_config, Endpoint, Polling, Registration};

/// A device's AMQP connection with its two links.
pub struct AmqpSession {
    connection: ConnectionHandle<()>,
    session: SessionHandle<()>,
    sender: Sender,
    receiver: Receiver,
    next: u64,
    flow: Flow,
    registration: Registration,
}

impl AmqpSession {
    /// Connects (TLS, SASL PLAIN with the SAS, open, begin, attach) as `registration_id` to `host:port`.
    pub async fn connect(endpoint: &Endpoint, port: u16, registration_id: &str, key_b64: &str) -> Result<Self> {
        let sas = device_sas(&endpoint.id_scope, registration_id, key_b64, Duration::from_secs(3600))?;
        Self::connect_with(endpoint, port, registration_id, Arc::new(tls_config(&endpoint.ca_pem)?), Some(sas)).await
    }

    /// Connects with the caller's TLS configuration; SASL PLAIN with `sas`, or none (X.509: the client
    /// certificate of `tls` identifies the device).
    pub async fn connect_with(
        endpoint: &Endpoint,
        port: u16,
        registration_id: &str,
        tls: Arc<rustls::ClientConfig>,
        sas: Option<String>,
    ) -> Result<Self> {
        Self::connect_registering(endpoint, Carrier::Port(port), registration_id, tls, sas, Flow::default(), Registration::default()).await
    }

    /// [`Self::connect_with`] as `carrier` says (the AMQP port or a WebSocket), telling `flow` each step, for a
    /// register with `registration` (a CSR: its api-version is the links' `com.microsoft:api-version` property, the body the registration JSON).
    pub async fn connect_registering(
        endpoint: &Endpoint,
        carrier: Carrier,
        registration_id: &str,
        tls: Arc<rustls::ClientConfig>,
        sas: Option<String>,
        flow: Flow,
        registration: Registration,
    ) -> Result<Self> {
        let connected = async {
            let (host, stream) = crate::carrier::open(endpoint, carrier, Carried::Amqp, tls, &flow).await?;
            let user = address(&endpoint.id_scope, registration_id);
            let shown = match &sas {
                Some(password) => format!("SASL PLAIN\nusername: {user}\npassword: {password}"),
                None => "no SASL layer (X.509: the client certificate identifies the device)".to_owned(),
            };
            flow.send(FlowKind::Login, "SASL, open, begin, attach", Some(shown)).await;
            let profile = sas.map(|password| SaslProfile::Plain { username: user.clone(), password });
            let api_version = registration.api_version();
            let mut s = Self::open_with(stream, &host, &endpoint.id_scope, registration_id, profile, api_version).await?;
            s.registration = registration;
            flow.received(FlowKind::Login, format!("SASL outcome ok; links attached on {user}"), None);
            s.flow = flow.clone();
            Ok(s)
        }
        .await;
        if let Err(e) = &connected {
            flow.failed(e);
        }
        connected
    }

    /// Opens the AMQP connection on `stream` — after fe2o3's SASL exchange with `sasl`, or right away with the
    /// plain AMQP header when `None` (the SASL layer already ran, or X.509) — begins the session and attaches
    /// the receiver link then the sender link on `{idScope}/registrations/{registrationId}`.
    pub async fn open<S>(stream: S, host: &str, id_scope: &str, registration_id: &str, sasl: Option<SaslProfile>) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        Self::open_with(stream, host, id_scope, registration_id, sasl, Registration::default().api_version()).await
    }

    /// [`Self::open`] with the links' `com.microsoft:api-version` property (§3.2).
    pub async fn open_with<S>(
        stream: S,
        host: &str,
        id_scope: &str,
        registration_id: &str,
        sasl: Option<SaslProfile>,
        api_version: &str,
    ) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        let mut builder = Connection::builder().container_id(registration_id.to_owned()).hostname(host);
        if let Some(profile) = sasl {
            builder = builder.sasl_profile(profile);
        }
        let mut connection = builder.open_with_stream(stream).await.context("AMQP open")?;
        let mut session = Session::begin(&mut connection).await.context("AMQP begin")?;
        let address = address(id_scope, registration_id);
        let properties = || {
            let mut fields = fe2o3_amqp::types::definitions::Fields::new();
            fields.insert(Symbol::from("com.microsoft:api-version"), Value::String(api_version.to_owned()));
            fields
        };
        let receiver = Receiver::builder()
            .name("recv_link")
            .source(address.clone())
            .properties(properties())
            .attach(&mut session)
            .await
            .context("attach the receiver link")?;
        let sender = Sender::builder()
            .name("sender_link")
            .target(address)
            .properties(properties())
            .attach(&mut session)
            .await
            .context("attach the sender link")?;
        Ok(Self { connection, session, sender, receiver, next: 0, flow: Flow::default(), registration: Registration::default() })
    }

    /// Tells `flow` the steps from here on.
    pub fn observe(&mut self, flow: Flow) {
        self.flow = flow;
    }

    /// Sends one request and waits for its response; returns the status and the retry-after it carried.
    async fn request(
        &mut self,
        operation: &str,
        operation_id: Option<&str>,
        body: Vec<u8>,
    ) -> Result<(RegistrationOperationStatus, Option<u64>)> {
        self.next += 1;
        let mut props = ApplicationProperties::builder().insert(OPERATION_TYPE, operation.to_owned());
        if let Some(id) = operation_id {
            props = props.insert(OPERATION_ID, id.to_owned());
        }
        let message: Message<Data> = Message::builder()
            .properties(Properties::builder().correlation_id(MessageId::Ulong(self.next)).build())
            .application_properties(props.build())
            .data(Binary::from(body))
            .build();
        match self.sender.send(message).await? {
            Outcome::Accepted(_) => {}
            Outcome::Rejected(r) => {
                let description = r.error.and_then(|e| e.description).unwrap_or_default();
                match crate::Refused::from_body(description.as_bytes()) {
                    Some(refused) => {
                        self.flow.received(FlowKind::Refused, format!("rejected — {refused}"), Some(flow::shown(description.as_bytes())));
                        return Err(refused.into());
                    }
                    None => bail!("rejected: {description}"),
                }
            }
            other => bail!("unexpected outcome {other:?}"),
        }
        let delivery: Delivery<Body<Value>> = tokio::time::timeout(Duration::from_secs(30), self.receiver.recv()).await??;
        self.receiver.accept(&delivery).await?;
        let message = delivery.into_message();
        let retry_after = message.application_properties.as_ref().and_then(|p| {
            RETRY_AFTER_NAMES.iter().find_map(|n| match p.0.get(*n) {
                Some(SimpleValue::Int(v)) => u64::try_from(*v).ok(),
                _ => None,
            })
        });
        let body: Vec<u8> = match message.body {
            Body::Data(batch) => batch.into_iter().flat_map(|d| d.0.into_vec()).collect(),
            other => bail!("the response is not a data section: {other:?}"),
        };
        let status: RegistrationOperationStatus = serde_json::from_slice(&body)?;
        let (kind, title) = flow::answer_title(200, &status, retry_after);
        self.flow.received(kind, format!("message: {}", title.trim_start_matches("200 — ")), Some(flow::shown(&body)));
        Ok((status, retry_after))
    }

    /// Registers and polls to the end (the register body is empty, as .NET sends it, unless there is a CSR).
    pub async fn provision(&mut self, registration_id: &str, polling: Polling) -> Result<RegistrationOperationStatus> {
        let body = match self.registration.csr {
            Some(_) => serde_json::to_vec(&self.registration.body(registration_id))?,
            None => Vec::new(),
        };
        self.provision_with_body(registration_id, body, polling).await
    }

    /// Registers with `body` in the register message's data section (the registration JSON, §3.4) and polls to
    /// the end.
    pub async fn provision_with_body(
        &mut self,
        registration_id: &str,
        body: Vec<u8>,
        polling: Polling,
    ) -> Result<RegistrationOperationStatus> {
        let answer = self.provision_flow(registration_id, body, polling).await;
        if let Err(e) = &answer {
            self.flow.failed(e);
        }
        answer
    }

    async fn provision_flow(&mut self, registration_id: &str, body: Vec<u8>, polling: Polling) -> Result<RegistrationOperationStatus> {
        let shown = format!("operation-type: {REGISTER}\n\n{}", flow::shown(&body));
        self.flow.send(FlowKind::Register, "message on the sender link", Some(shown)).await;
        let (mut status, mut retry_after) = self.request(REGISTER, None, body).await?;
        let (started, mut polls) = (std::time::Instant::now(), 0);
        while polling.again(polls, started) {
            polls += 1;
            if polling.ends_at(&status) {
                return Ok(status);
            }
            let secs = retry_after.unwrap_or(2);
            self.flow.local(FlowKind::Wait, format!("wait {secs} s")).await;
            polling.wait(Duration::from_secs(secs)).await;
            let shown = format!("operation-type: {GET_OPERATION_STATUS}\noperation-id: {}", status.operation_id);
            self.flow.send(FlowKind::Poll, "message on the sender link", Some(shown)).await;
            (status, retry_after) = self.request(GET_OPERATION_STATUS, Some(&status.operation_id), Vec::new()).await?;
        }
        polling.after_polls(registration_id, status)
    }

    /// Detaches, ends the session and closes the connection.
    pub async fn close(mut self) -> Result<()> {
        let _ = self.sender.close().await;
        let _ = self.receiver.close().await;
        let _ = self.session.end().await;
        self.connection.close().await?;
        Ok(())
    }
}

/// The node address of both links (§3.2).
fn address(id_scope: &str, registration_id: &str) -> String {
    format!("{id_scope}/registrations/{registration_id}")
}
