//! Diagnostics: per-minute metric series and the live log.

use dps_proto::{LogRecord, SeriesPoint};

use super::{ApiClient, ApiError};

/// What `GET /diagnostics/logs` is asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogQuery {
    /// Only entries with a larger `seq`.
    pub after: Option<u64>,
    pub limit: Option<u32>,
    /// Minimum level (`INFO` includes `WARN` and `ERROR`).
    pub level: Option<String>,
    pub registration_id: Option<String>,
}

impl ApiClient {
    /// `GET /diagnostics/metrics?minutes=N`.
    pub async fn metrics(&self, minutes: u32) -> Result<Vec<SeriesPoint>, ApiError> {
        self.get_json("/diagnostics/metrics", &[("minutes", minutes.to_string())]).await
    }

    /// `GET /diagnostics/logs`: entries in ascending `seq`.
    pub async fn logs(&self, q: &LogQuery) -> Result<Vec<LogRecord>, ApiError> {
        let mut query = Vec::new();
        if let Some(a) = q.after {
            query.push(("after", a.to_string()));
        }
        if let Some(l) = q.limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(l) = q.level.as_ref().filter(|l| !l.is_empty()) {
            query.push(("level", l.clone()));
        }
        if let Some(r) = q.registration_id.as_ref().filter(|r| !r.is_empty()) {
            query.push(("registrationId", r.clone()));
        }
        self.get_json("/diagnostics/logs", &query).await
    }
}
