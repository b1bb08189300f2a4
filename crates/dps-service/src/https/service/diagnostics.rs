//! `GET /metrics` (Prometheus text), `GET /diagnostics/metrics` (per-minute series), `GET /diagnostics/quarantine`.

use bytes::Bytes;
use dps_core::DpsError;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};

use crate::app::App;
use crate::https::{json_response, HttpResponse, Request};

/// `GET /metrics`: Prometheus text — open like any exporter, or behind `Authorization: Bearer <metrics_token>`
/// when the configuration sets one (compared as SHA-256 digests, so the comparison's time says nothing of the
/// token).
pub fn prometheus(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    if let Some(token) = &app.metrics_token {
        let given = req.header("authorization").and_then(|a| a.strip_prefix("Bearer ")).map(str::trim).unwrap_or_default();
        if Sha256::digest(given.as_bytes()) != Sha256::digest(token.expose().as_bytes()) {
            return Err(DpsError::unauthorized("GET /metrics needs Authorization: Bearer <metrics_token>"));
        }
    }
    let mut text = app.metrics.prometheus();
    text.push_str(&connection_metrics(&app.connection_caps));
    text.push_str(&admission_metrics(&app.engine));
    let mut r = Response::new(Full::new(Bytes::from(text)).boxed());
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(r)
}

/// Open and refused connections per listener (the caps of `bounds.rs`).
fn connection_metrics(caps: &[std::sync::Arc<crate::bounds::ConnectionCaps>]) -> String {
    use std::fmt::Write;
    let mut out = String::from("# HELP dps_connections_open Connections open now, per listener.\n# TYPE dps_connections_open gauge\n");
    for c in caps {
        let _ = writeln!(out, "dps_connections_open{{listener=\"{}\"}} {}", c.listener(), c.open());
    }
    out.push_str("# HELP dps_connections_refused_total Connections closed at accept over a cap (total or per address), per listener.\n");
    out.push_str("# TYPE dps_connections_refused_total counter\n");
    for c in caps {
        let _ = writeln!(out, "dps_connections_refused_total{{listener=\"{}\"}} {}", c.listener(), c.refused());
    }
    out
}

/// Registrations in flight against their limit (the admission of `registration/mod.rs`): a limit reached
/// answers 429001.
fn admission_metrics(engine: &dps_core::registration::RegistrationEngine) -> String {
    format!(
        "# HELP dps_registrations_in_flight Registrations admitted and not finished (register to written assignment).\n\
         # TYPE dps_registrations_in_flight gauge\ndps_registrations_in_flight {}\n\
         # HELP dps_registrations_in_flight_limit Registrations in flight at most; beyond it a register is answered 429001.\n\
         # TYPE dps_registrations_in_flight_limit gauge\ndps_registrations_in_flight_limit {}\n",
        engine.in_flight(),
        engine.config().max_in_flight
    )
}

/// `GET /diagnostics/metrics?minutes=N`: the last N minutes of series (default 60).
pub fn metric_series(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let minutes = req.query("minutes").and_then(|m| m.parse::<u32>().ok()).unwrap_or(60);
    Ok(json_response(StatusCode::OK, &app.metrics.series(minutes)))
}

/// `GET /diagnostics/quarantine`: stored rows that could not be read, moved aside.
pub async fn quarantine(app: &App) -> Result<HttpResponse, DpsError> {
    let rows = app.quarantine.quarantined().await.map_err(|e| {
        tracing::warn!(error = %e, "cannot list the quarantine");
        DpsError::new(dps_core::ErrorKind::Unavailable, "could not read the quarantine; try again")
    })?;
    Ok(json_response(StatusCode::OK, &rows))
}

/// `GET /health`: a load balancer's check (HAProxy `option httpchk`). 200 while this instance serves and its
/// database answers; 503 while it stops (so the balancer drains it) or cannot reach its database.
pub async fn health(app: &App) -> Result<HttpResponse, DpsError> {
    if *app.shutdown.borrow() {
        return Err(DpsError::new(dps_core::ErrorKind::Unavailable, "the service is stopping"));
    }
    app.settings.get_setting("id_scope").await.map_err(|e| {
        tracing::warn!(error = %e, "health check: the database does not answer");
        DpsError::new(dps_core::ErrorKind::Unavailable, "the database is unavailable")
    })?;
    Ok(json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
}
