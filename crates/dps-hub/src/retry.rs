//! Retries with exponential back-off, shared by the connectors: 3 attempts, 200 ms then 800 ms apart.

use std::future::Future;
use std::time::Duration;

use dps_core::ports::ConnectorError;
use tracing::debug;

pub(crate) const ATTEMPTS: u32 = 3;
const FIRST_DELAY: Duration = Duration::from_millis(200);
const FACTOR: u32 = 4;

/// How one attempt ended.
pub(crate) enum Failure {
    /// Worth another attempt (connection error, 429, 5xx); the message ends as `Unavailable`.
    Transient(String),
    /// Final, returned as is.
    Final(ConnectorError),
}

impl From<ConnectorError> for Failure {
    fn from(e: ConnectorError) -> Self {
        Failure::Final(e)
    }
}

/// Runs `attempt` until it succeeds, fails finally, or [`ATTEMPTS`] transient failures happened
/// (→ [`ConnectorError::Unavailable`] with the last message).
pub(crate) async fn with_backoff<T, F, Fut>(what: &str, mut attempt: F) -> Result<T, ConnectorError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut delay = FIRST_DELAY;
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::Transient(msg)) if n >= ATTEMPTS => {
                return Err(ConnectorError::Unavailable(format!("{what}: {msg} (after {ATTEMPTS} attempts)")));
            }
            Err(Failure::Transient(msg)) => {
                debug!(attempt = n, ?delay, reason = %msg, "{what}: retrying");
                tokio::time::sleep(delay).await;
                delay *= FACTOR;
                n += 1;
            }
        }
    }
}
