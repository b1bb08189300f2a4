//! Simulated devices started from the console (#16 items 2–4): each run's devices register through the
//! listeners ([`crate::devices::register_with`]), each watched by its own [`Watched`] observer that keeps the
//! steps of its flow (the Simulate page's sequence diagram) and, in step-through, holds the device at the gate
//! of each step until the trainer continues it. Runs live in memory — they are a classroom view, not service
//! state — and are bounded: [`MAX_RUNS`] runs (the oldest finished one goes), [`MAX_DEVICES`] devices each,
//! [`MAX_STEPS`] steps per device.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, Utc};
use dps_device::flow::{Flow, Observer};
use dps_proto::simulation::{Fault, FlowKind, FlowStep, SimDevice, SimState, Simulation, SimulationRequest};
use dps_proto::RegistrationStatus;
use futures_util::stream::{self, StreamExt};
use tokio::sync::{watch, Semaphore};

use base64::Engine;
use dps_device::{Polling, Registration};

use crate::devices::{register_requesting, register_with, Attempt, Credential, DeviceTarget, Outcome};
use crate::scenario::Transport;
use crate::x509::CertificateRequest;

/// Runs kept.
pub const MAX_RUNS: usize = 20;
/// Devices in one run.
pub const MAX_DEVICES: u32 = 1000;
/// Steps kept per device (a device polling for long keeps its first steps and its last).
pub const MAX_STEPS: usize = 200;
/// Devices registering at once within a run.
const AT_ONCE: usize = 16;

/// One device to start: its registration id and credential, the CSR it sends, and how it polls.
pub struct Planned {
    pub registration_id: String,
    pub credential: Credential,
    pub certificate_request: Option<CertificateRequest>,
    pub polling: Polling,
}

impl Planned {
    /// A device that sends no CSR and polls as the service says.
    pub fn new(registration_id: String, credential: Credential) -> Self {
        Self { registration_id, credential, certificate_request: None, polling: Polling::RetryAfter }
    }
}

impl Planned {
    /// Registers; a device whose CSR was answered with a certificate and that attests with X.509 registers again
    /// with the issued certificate (the chain up to, not including, the root) and the CSR's key.
    async fn register(&self, target: &DeviceTarget, transport: Transport, flow: Flow) -> Outcome {
        let registration = Registration { csr: self.certificate_request.as_ref().map(|c| c.csr.clone()) };
        let attempt = Attempt { credential: &self.credential, registration, polling: self.polling };
        let first = register_requesting(target, transport, &self.registration_id, attempt, flow.clone()).await;
        let (Some(chain), Some(request), Credential::X509 { .. }) = (&first.issued_chain, &self.certificate_request, &self.credential)
        else {
            return first;
        };
        let der: Vec<Vec<u8>> = chain.iter().filter_map(|c| base64::engine::general_purpose::STANDARD.decode(c).ok()).collect();
        let issued =
            Credential::X509 { chain: der.iter().take(der.len().saturating_sub(1).max(1)).cloned().collect(), key: request.key.clone() };
        flow.local(FlowKind::Connect, "register again, with the issued certificate").await;
        let mut again = register_with(target, transport, &self.registration_id, &issued, flow).await;
        again.issued_chain = first.issued_chain;
        again
    }
}

/// A device of a run, and the observer of its flow.
pub struct Watched {
    registration_id: String,
    step_through: bool,
    to_end: AtomicBool,
    permits: Semaphore,
    started: Instant,
    view: Mutex<SimDevice>,
}

impl Watched {
    /// A device not started yet; `fault`: what it was given to break (shown with it).
    pub(crate) fn new(registration_id: String, step_through: bool, fault: Fault) -> Self {
        let view = SimDevice {
            registration_id: registration_id.clone(),
            state: SimState::Waiting,
            fault,
            paused_before: None,
            assigned_hub: None,
            device_id: None,
            substatus: None,
            error_code: None,
            message: None,
            millis: 0,
            issued_certificate: None,
            steps: Vec::new(),
        };
        Self {
            registration_id,
            step_through,
            to_end: AtomicBool::new(false),
            permits: Semaphore::new(0),
            started: Instant::now(),
            view: Mutex::new(view),
        }
    }

    fn view(&self) -> MutexGuard<'_, SimDevice> {
        self.view.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lets a paused device take its next step, or run to its end.
    pub fn resume(&self, to_end: bool) {
        if to_end {
            self.to_end.store(true, Ordering::Release);
        }
        self.permits.add_permits(1);
    }

    /// Its view; with `steps` the flow, else a summary.
    pub fn snapshot(&self, steps: bool) -> SimDevice {
        let mut v = self.view().clone();
        if !v.state.is_final() {
            v.millis = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        }
        if !steps {
            v.steps = Vec::new();
        }
        v
    }

    pub(crate) fn finish(&self, o: &Outcome) {
        let mut v = self.view();
        v.state = match (o.status, o.error_code) {
            (Some(RegistrationStatus::Assigned), _) => SimState::Assigned,
            (Some(RegistrationStatus::Disabled), _) => SimState::Disabled,
            (Some(_), _) => SimState::Failed,
            (None, Some(_)) => SimState::Refused,
            (None, None) => SimState::Error,
        };
        (v.assigned_hub, v.device_id, v.error_code, v.message, v.millis) =
            (o.assigned_hub.clone(), o.device_id.clone(), o.error_code, o.message.clone(), o.millis);
        v.substatus = o.substatus.map(|s| format!("{s:?}"));
        v.issued_certificate = o.issued_chain.as_ref().and_then(|c| c.first()).and_then(|leaf| issued_summary(leaf));
        v.paused_before = None;
    }
}

impl Observer for Watched {
    fn gate(&self, kind: FlowKind) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if !self.step_through || self.to_end.load(Ordering::Acquire) {
                self.view().state = SimState::Running;
                return;
            }
            {
                let mut v = self.view();
                (v.state, v.paused_before) = (SimState::Paused, Some(kind));
            }
            if let Ok(p) = self.permits.acquire().await {
                p.forget();
            }
            let mut v = self.view();
            (v.state, v.paused_before) = (SimState::Running, None);
        })
    }

    fn record(&self, step: FlowStep) {
        let mut v = self.view();
        if v.steps.len() >= MAX_STEPS {
            v.steps.remove(MAX_STEPS / 2);
        }
        v.steps.push(step);
    }
}

/// A run: what was asked, and its devices.
pub struct Run {
    pub id: String,
    pub started: DateTime<Utc>,
    pub request: SimulationRequest,
    pub target: String,
    pub devices: Vec<Arc<Watched>>,
}

impl Run {
    /// The run's view: counts per state, and with `devices` each device's summary — the first `flows` of them
    /// with every step of their flow (a run's transcript).
    pub fn snapshot(&self, devices: bool, flows: usize) -> Simulation {
        let all: Vec<SimDevice> = self.devices.iter().enumerate().map(|(i, d)| d.snapshot(i < flows)).collect();
        let mut counts = BTreeMap::new();
        for d in &all {
            *counts.entry(format!("{:?}", d.state).to_ascii_lowercase()).or_insert(0) += 1;
        }
        Simulation {
            id: self.id.clone(),
            started: self.started,
            request: self.request.clone(),
            target: self.target.clone(),
            counts,
            devices: if devices { all } else { Vec::new() },
        }
    }

    pub fn device(&self, registration_id: &str) -> Option<&Arc<Watched>> {
        self.devices.iter().find(|d| d.registration_id.eq_ignore_ascii_case(registration_id))
    }

    /// Whether every device has ended.
    pub fn finished(&self) -> bool {
        self.devices.iter().all(|d| d.view().state.is_final())
    }
}

/// `CN=… · serial …` of an issued certificate (base64 DER).
fn issued_summary(leaf_b64: &str) -> Option<String> {
    use x509_parser::prelude::FromDer;
    let der = base64::engine::general_purpose::STANDARD.decode(leaf_b64).ok()?;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).ok()?;
    let serial: String = cert.raw_serial().iter().map(|b| format!("{b:02X}")).collect();
    Some(format!("{} · serial {serial}", cert.subject()))
}

/// The runs of this service.
#[derive(Default)]
pub struct Simulations {
    runs: Mutex<VecDeque<Arc<Run>>>,
    next: AtomicU64,
}

impl Simulations {
    fn runs(&self) -> MutexGuard<'_, VecDeque<Arc<Run>>> {
        self.runs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new run's id (`sim-1`, `sim-2`, …).
    pub fn next_id(&self) -> String {
        format!("sim-{}", self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Starts `devices` of `request` against `target`; they stop when `shutdown` turns true. Refuses when
    /// [`MAX_RUNS`] runs are still going.
    pub fn start(
        &self,
        id: String,
        (request, target_name): (SimulationRequest, String),
        devices: Vec<Planned>,
        target: DeviceTarget,
        now: DateTime<Utc>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Run>, &'static str> {
        let watched: Vec<Arc<Watched>> = (1..)
            .zip(&devices)
            .map(|(n, p)| Arc::new(Watched::new(p.registration_id.clone(), request.step_through, request.fault_of(n))))
            .collect();
        let run = Arc::new(Run { id, started: now, request, target: target_name, devices: watched });
        self.keep(Arc::clone(&run))?;
        tokio::spawn(drive(Arc::clone(&run), devices, target, shutdown));
        Ok(run)
    }

    fn keep(&self, run: Arc<Run>) -> Result<(), &'static str> {
        let mut runs = self.runs();
        if runs.len() >= MAX_RUNS {
            let done = runs.iter().position(|r| r.finished()).ok_or("20 simulations are still running: wait, or delete one")?;
            runs.remove(done);
        }
        runs.push_back(run);
        Ok(())
    }

    pub fn list(&self) -> Vec<Simulation> {
        self.runs().iter().rev().map(|r| r.snapshot(false, 0)).collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.runs().iter().find(|r| r.id == id).cloned()
    }

    /// Forgets a run (its devices still going are let run to their end without a gate).
    pub fn remove(&self, id: &str) -> bool {
        let mut runs = self.runs();
        let Some(at) = runs.iter().position(|r| r.id == id) else { return false };
        if let Some(run) = runs.remove(at) {
            run.devices.iter().for_each(|d| d.resume(true));
        }
        true
    }
}

/// Registers the run's devices, [`AT_ONCE`] at a time, until they end or the service stops.
async fn drive(run: Arc<Run>, devices: Vec<Planned>, target: DeviceTarget, mut shutdown: watch::Receiver<bool>) {
    let transport = run.request.transport;
    let work = stream::iter(devices.into_iter().zip(run.devices.iter().cloned()))
        .map(|(p, watched)| {
            let target = &target;
            async move {
                let flow = Flow::new(Arc::clone(&watched) as Arc<dyn Observer>);
                let outcome = p.register(target, transport, flow).await;
                watched.finish(&outcome);
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect::<Vec<()>>();
    tokio::select! {
        _ = work => {}
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dps_proto::simulation::Direction;

    fn step(kind: FlowKind) -> FlowStep {
        FlowStep { kind, direction: Direction::Out, at_ms: 0, title: String::new(), message: None }
    }

    #[tokio::test]
    async fn a_stepped_device_waits_at_each_gate_until_continued() {
        let d = Arc::new(Watched::new("d1".into(), true, Fault::None));
        let gate = tokio::spawn({
            let d = Arc::clone(&d);
            async move { d.gate(FlowKind::Register).await }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!((d.snapshot(false).state, d.snapshot(false).paused_before), (SimState::Paused, Some(FlowKind::Register)));
        d.resume(false);
        gate.await.expect("the gate opens");
        assert_eq!(d.snapshot(false).state, SimState::Running);
        d.resume(true);
        d.gate(FlowKind::Poll).await;
        assert_eq!(d.snapshot(false).paused_before, None, "to the end: no more pauses");
    }

    #[test]
    fn a_long_flow_keeps_its_first_and_last_steps() {
        let d = Watched::new("d1".into(), false, Fault::None);
        d.record(step(FlowKind::Connect));
        for _ in 0..MAX_STEPS + 50 {
            d.record(step(FlowKind::Poll));
        }
        d.record(step(FlowKind::Answer));
        let steps = d.snapshot(true).steps;
        assert_eq!(steps.len(), MAX_STEPS);
        assert_eq!((steps.first().map(|s| s.kind), steps.last().map(|s| s.kind)), (Some(FlowKind::Connect), Some(FlowKind::Answer)));
    }

    #[test]
    fn an_outcome_sets_the_final_state() {
        let d = Watched::new("d1".into(), false, Fault::None);
        let refused = Outcome {
            registration_id: "d1".into(),
            transport: "https".into(),
            status: None,
            assigned_hub: None,
            device_id: None,
            substatus: None,
            error_code: Some(401002),
            message: Some("no".into()),
            millis: 5,
            issued_chain: None,
        };
        d.finish(&refused);
        let v = d.snapshot(false);
        assert_eq!((v.state, v.error_code, v.millis), (SimState::Refused, Some(401002), 5));
    }
}
