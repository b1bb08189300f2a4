//! How registrations are coordinated through the store, so that nothing lives only in this process:
//! - one operation `assigning` per device is a store constraint (a second register gets 409203);
//! - the operation is leased to this instance ([`LEASE`]) and the lease is renewed while the assignment runs;
//! - the sweeper takes over operations whose lease expired — the instance stopped, or a task ended without
//!   finishing — every [`SWEEP_EVERY`], without a restart;
//! - a register's durable write and the start of its assignment run in a task of their own, so a request
//!   whose future is dropped (client gone, connection reset) still starts the assignment it wrote;
//! - a poll of an assignment this instance runs waits for its outcome for a moment ([`POLL_WAIT`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::{info, info_span, warn, Instrument};

use super::{store_err, RegistrationEngine};
use crate::error::{DpsError, ErrorKind};
use crate::model::{Operation, RegistrationRecord};
use crate::ports::{Lease, StoreError};

/// How long an operation stays with the instance that runs it without a renewal.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a running assignment renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often the sweeper looks for expired leases.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// Operations taken over per sweep.
const SWEEP_BATCH: usize = 100;
/// How long a poll of an operation this instance is running waits for its outcome before it answers
/// `assigning` (the device polls again after `retry-after`). An assignment normally takes a few
/// milliseconds, so a device's first poll normally gets the outcome — one round trip instead of many.
pub const POLL_WAIT: Duration = Duration::from_secs(1);

/// An assignment this instance is running; polls of it wait on [`RegistrationEngine::wait_for_outcome`]. Dropped
/// when the assignment ends, however it ends, which wakes them.
pub(super) struct Running {
    engine: Arc<RegistrationEngine>,
    operation_id: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.engine.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.operation_id);
    }
}

type DeviceKeys = Option<(dps_crypto::Secret, dps_crypto::Secret)>;

impl RegistrationEngine {
    fn track(self: &Arc<Self>, operation_id: &str) -> Running {
        let (tx, _) = tokio::sync::watch::channel(());
        self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(operation_id.to_owned(), tx);
        Running { engine: Arc::clone(self), operation_id: operation_id.to_owned() }
    }

    /// Waits (at most [`POLL_WAIT`]) until this instance's assignment of the operation ends; returns at once
    /// when it runs none.
    pub(super) async fn wait_for_outcome(&self, operation_id: &str) {
        let rx = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(operation_id).map(|tx| tx.subscribe());
        if let Some(mut rx) = rx {
            // Nothing is ever sent: `changed` ends when the sender is dropped with the `Running`.
            let _ = tokio::time::timeout(POLL_WAIT, rx.changed()).await;
        }
    }

    fn lease(&self) -> Lease {
        let ttl = chrono::Duration::from_std(LEASE).unwrap_or(chrono::Duration::MAX);
        Lease { owner: self.instance.clone(), until: self.ports.clock.now() + ttl }
    }

    /// Writes the operation and its `assigning` record in one durable write, then starts the assignment; both
    /// in a task of their own (see the module doc). Answers once the write is on disk.
    pub(super) async fn start(
        self: &Arc<Self>,
        op: Operation,
        device_keys: DeviceKeys,
        admitted: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<(), DpsError> {
        let (tx, rx) = oneshot::channel();
        let engine = Arc::clone(self);
        // The task carries the register's span (registration id, protocol) into every log line it writes.
        let task = async move {
            let _admitted = admitted;
            let begun = engine.begin(&op).await;
            let running = begun.is_ok().then(|| {
                engine.known.insert(op.operation_id.clone(), Arc::new(op.clone()));
                engine.track(&op.operation_id)
            });
            let _ = tx.send(begun.as_ref().map(|_| ()).map_err(Clone::clone));
            if let Ok(record) = begun {
                let _running = running;
                crate::failpoint::hit("engine.accepted").await;
                info!(operation_id = %op.operation_id, enrollment = ?op.enrollment, "registration accepted");
                engine.run_leased(op, device_keys, Some(record)).await;
            }
        };
        tokio::spawn(task.instrument(tracing::Span::current()));
        rx.await.map_err(|_| DpsError::internal("the registration task ended before it answered"))?
    }

    /// The same, with the assignment run to its end before answering (the console's re-provisioning).
    pub(super) async fn start_inline(self: &Arc<Self>, op: Operation) -> Result<(), DpsError> {
        let record = self.begin(&op).await?;
        self.run_leased(op, None, Some(record)).await;
        Ok(())
    }

    /// The durable write of a register; returns the record it wrote.
    async fn begin(&self, op: &Operation) -> Result<RegistrationRecord, DpsError> {
        let record = self.assigning_record(op).await?;
        match self.ports.operations.begin_registration(op, &record, &self.lease()).await {
            Ok(()) => Ok(record),
            Err(StoreError::Conflict) => Err(DpsError::new(
                ErrorKind::ConcurrentRegistration,
                format!(
                    "Precondition failed: a registration of '{}' is already in progress; poll its operation or retry later",
                    op.registration_id
                ),
            )),
            Err(e) => Err(store_err("could not record the operation")(e)),
        }
    }

    /// Runs the assignment while renewing its lease. `record`: the device's record, when the caller just
    /// wrote it (else it is read).
    async fn run_leased(self: &Arc<Self>, op: Operation, device_keys: DeviceKeys, record: Option<RegistrationRecord>) {
        let operation_id = op.operation_id.clone();
        let work = self.assign(op, device_keys, record);
        tokio::pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        loop {
            tokio::select! {
                () = &mut work => return,
                _ = renew.tick() => match self.ports.operations.renew_lease(&operation_id, &self.lease()).await {
                    Ok(true) => {}
                    Ok(false) => {
                        self.known.remove(&operation_id);
                        warn!(operation_id, "the lease of this assignment was taken over; its outcome will be dropped");
                    }
                    Err(e) => {
                        // The lease may run out: polls read the store from now on.
                        self.known.remove(&operation_id);
                        warn!(operation_id, error = %e, "cannot renew the lease of this assignment");
                    }
                },
            }
        }
    }

    /// At start-up: takes over every operation still `assigning`, whoever held it, and resumes it. Only for a
    /// store this process owns alone (the data directory's lock); returns how many.
    pub async fn resume_pending(self: &Arc<Self>) -> Result<usize, DpsError> {
        let mut n = 0;
        loop {
            let claimed = self
                .ports
                .operations
                .claim_operations(&self.lease(), chrono::DateTime::<chrono::Utc>::MAX_UTC, SWEEP_BATCH)
                .await
                .map_err(store_err("could not resume pending operations"))?;
            if claimed.is_empty() {
                break;
            }
            n += claimed.len();
            self.spawn_all(claimed);
        }
        if n > 0 {
            info!(count = n, "resumed pending registrations");
        }
        Ok(n)
    }

    /// One sweep: takes over operations whose lease expired and resumes them; returns how many.
    pub async fn sweep(self: &Arc<Self>) -> Result<usize, DpsError> {
        let now = self.ports.clock.now();
        let claimed = self
            .ports
            .operations
            .claim_operations(&self.lease(), now, SWEEP_BATCH)
            .await
            .map_err(store_err("could not look for stalled operations"))?;
        let n = claimed.len();
        if n > 0 {
            info!(count = n, "took over stalled registrations whose lease expired");
        }
        self.spawn_all(claimed);
        Ok(n)
    }

    /// Sweeps every [`SWEEP_EVERY`] until `shutdown` changes.
    pub async fn run_sweeper(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.sweep().await {
                        warn!(error = %e.message, "sweep failed; next one in {SWEEP_EVERY:?}");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    fn spawn_all(self: &Arc<Self>, ops: Vec<Operation>) {
        for op in ops {
            let engine = Arc::clone(self);
            let span = info_span!("resume", registration_id = %op.registration_id, operation_id = %op.operation_id);
            let running = engine.track(&op.operation_id);
            tokio::spawn(
                async move {
                    let _running = running;
                    engine.run_leased(op, None, None).await;
                }
                .instrument(span),
            );
        }
    }
}
