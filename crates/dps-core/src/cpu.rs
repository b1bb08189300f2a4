//! The CPU budget of device requests: work that costs milliseconds of CPU per request (X.509 chain
//! verification, the TPM challenge's RSA wrapping) runs on tokio's blocking threads, never on the async
//! workers that serve every connection, and at most [`CpuBudget::permits`] such jobs run at once. A request
//! that finds every permit taken waits up to [`CpuBudget::wait`]; then it is refused with 503001 and a
//! retry-after (transient: every SDK retries), so a flood of unauthenticated chains queues a bounded time
//! instead of growing the blocking pool or starving the listeners.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::error::{DpsError, ErrorKind};

/// How long a request waits for a permit before 503001 (well below every SDK's request timeout).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);

/// Bounded concurrency for CPU-heavy steps of device requests.
#[derive(Debug, Clone)]
pub struct CpuBudget {
    permits: Arc<Semaphore>,
    count: usize,
    wait: Duration,
}

impl Default for CpuBudget {
    /// As many jobs as the machine has cores (at least 2), waiting [`DEFAULT_WAIT`].
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self::new(cores.max(2), DEFAULT_WAIT)
    }
}

impl CpuBudget {
    /// `permits` jobs at once (at least 1); a request waits up to `wait` for one.
    pub fn new(permits: usize, wait: Duration) -> Self {
        let count = permits.clamp(1, Semaphore::MAX_PERMITS);
        Self { permits: Arc::new(Semaphore::new(count)), count, wait }
    }

    pub fn permits(&self) -> usize {
        self.count
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// Runs `job` on a blocking thread once a permit is free; 503001 if none frees within the wait. The
    /// permit is held by the job itself, so a caller that goes away does not free it before the job ends.
    pub async fn run<T, F>(&self, what: &'static str, job: F) -> Result<T, DpsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permit = match tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                tracing::warn!(job = what, permits = self.count, "CPU budget exhausted: device request refused with 503001");
                return Err(DpsError::new(
                    ErrorKind::Unavailable,
                    "the service is busy verifying other devices; try again after the retry-after interval",
                ));
            }
        };
        tokio::task::spawn_blocking(move || {
            let _held = permit;
            job()
        })
        .await
        .map_err(|e| DpsError::internal(format!("{what} failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_off_the_async_workers_and_returns_its_value() {
        let budget = CpuBudget::new(1, Duration::from_secs(5));
        let here = std::thread::current().id();
        let there = budget.run("test", || std::thread::current().id()).await.expect("runs");
        assert_ne!(here, there, "the job ran on a blocking thread, not on the (current-thread) async worker");
        assert_eq!(budget.run("test", || 41 + 1).await.expect("runs"), 42);
    }

    #[tokio::test]
    async fn excess_jobs_wait_a_bounded_time_then_get_503001() {
        let budget = CpuBudget::new(1, Duration::from_millis(50));
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let holder = {
            let budget = budget.clone();
            tokio::spawn(async move {
                budget
                    .run("holder", move || {
                        let _ = started_tx.send(());
                        let _ = held.recv();
                    })
                    .await
            })
        };
        started.await.expect("the first job started");
        let refused = budget.run("second", || ()).await.expect_err("no permit within the wait");
        assert_eq!(refused.code(), 503001);
        assert!(refused.retry_after.is_some(), "transient: a retry-after is sent");
        release.send(()).expect("the holder waits");
        holder.await.expect("joined").expect("the first job ran");
        budget.run("third", || ()).await.expect("the permit is free again");
    }
}
