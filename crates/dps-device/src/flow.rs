//! A device's flow as it happens (#16 item 2): the clients tell a [`Flow`] each step they take — connect, TLS,
//! sign-in, register, the service's answers, waits, polls — with the message as sent (secrets masked), and
//! wait at its gate before each one (the console's step-through). A flow without an observer costs nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use dps_proto::simulation::{mask_secrets, Direction, FlowKind, FlowStep};

/// Who watches a device's flow.
pub trait Observer: Send + Sync {
    /// Waits until the device may take the step `kind` (returns at once unless someone is stepping through).
    fn gate(&self, kind: FlowKind) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
    /// A step taken.
    fn record(&self, step: FlowStep);
}

/// The flow of one device: its observer (if any) and when it started.
#[derive(Clone)]
pub struct Flow {
    observer: Option<Arc<dyn Observer>>,
    started: Instant,
}

impl Default for Flow {
    fn default() -> Self {
        Self { observer: None, started: Instant::now() }
    }
}

impl Flow {
    pub fn new(observer: Arc<dyn Observer>) -> Self {
        Self { observer: Some(observer), started: Instant::now() }
    }

    /// Waits at the gate of `kind`, then records the step (the device is about to send `message`).
    pub async fn send(&self, kind: FlowKind, title: impl Into<String>, message: Option<String>) {
        if let Some(o) = &self.observer {
            o.gate(kind).await;
            self.record(o.as_ref(), kind, Direction::Out, title.into(), message);
        }
    }

    /// Waits at the gate of `kind`, then records a step at the device (a wait, a connection).
    pub async fn local(&self, kind: FlowKind, title: impl Into<String>) {
        if let Some(o) = &self.observer {
            o.gate(kind).await;
            self.record(o.as_ref(), kind, Direction::Local, title.into(), None);
        }
    }

    /// Records what the service answered.
    pub fn received(&self, kind: FlowKind, title: impl Into<String>, message: Option<String>) {
        if let Some(o) = &self.observer {
            self.record(o.as_ref(), kind, Direction::In, title.into(), message);
        }
    }

    /// Records that the device gave up (`error`).
    pub fn failed(&self, error: &anyhow::Error) {
        if let Some(o) = &self.observer {
            if error.chain().any(|c| c.is::<crate::Refused>()) {
                return;
            }
            self.record(o.as_ref(), FlowKind::Error, Direction::Local, format!("{error:#}"), None);
        }
    }

    /// Whether anyone watches (skip building messages when not).
    pub fn watched(&self) -> bool {
        self.observer.is_some()
    }

    fn record(&self, o: &dyn Observer, kind: FlowKind, direction: Direction, title: String, message: Option<String>) {
        let at_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        o.record(FlowStep { kind, direction, at_ms, title: mask_secrets(&title), message: message.map(|m| mask_secrets(&m)) });
    }
}

/// The TLS step's title: the service's certificate checked, and whether the device presents one of its own.
pub fn tls_title(tls: &rustls::ClientConfig) -> String {
    let cert = if tls.client_auth_cert_resolver.has_certs() { "the device's certificate sent" } else { "no client certificate" };
    format!("TLS: the service's certificate checked against the trusted CA; {cert}")
}

/// The title of an answer: `202 Accepted — assigning, operation 4.abc…, retry after 3 s`, or the final state.
pub fn answer_title(status: u16, body: &dps_proto::RegistrationOperationStatus, retry_after: Option<u64>) -> (FlowKind, String) {
    let state = format!("{:?}", body.status).to_ascii_lowercase();
    if !body.status.is_terminal() {
        let wait = retry_after.map(|s| format!(", retry after {s} s")).unwrap_or_default();
        return (FlowKind::Accepted, format!("{status} — {state}, operation {}{wait}", body.operation_id));
    }
    let where_ = body
        .registration_state
        .as_ref()
        .and_then(|r| Some(format!(" to {} as {}", r.assigned_hub.as_deref()?, r.device_id.as_deref()?)))
        .unwrap_or_default();
    (FlowKind::Answer, format!("{status} — {state}{where_}"))
}

/// Pretty JSON of a body for showing (the bytes as they are when they are not JSON).
pub fn shown(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(4000).collect())
}
