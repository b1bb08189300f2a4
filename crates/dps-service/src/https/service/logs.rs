//! `GET /diagnostics/logs` (extension): the live log. Query: `level` (minimum: error, warn, info, debug,
//! trace), `registrationId`, `protocol`, `q` (text), `limit` (default 200), `after` (only entries whose `seq` is
//! greater: how a poller asks for what is new). Without `follow=true` the answer
//! is the recent matching entries as JSON; with it, a server-sent-event stream: the recent entries, then each
//! new one as it happens (`data: {json}`), with a comment line every 15 s to keep proxies from closing it.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use dps_core::DpsError;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::diagnostics::{LogEntry, LogFilter, LogHub};
use crate::https::{json_response, HttpResponse, Request};

fn filter_of(req: &Request) -> Result<LogFilter, DpsError> {
    let min_level = match req.query("level") {
        None | Some("") => None,
        Some(l) => Some(
            l.parse::<tracing::Level>()
                .map_err(|_| DpsError::invalid(format!("level '{}' is not error, warn, info, debug or trace", l.escape_debug())))?,
        ),
    };
    let opt = |k: &str| req.query(k).filter(|v| !v.is_empty()).map(str::to_owned);
    Ok(LogFilter { min_level, registration_id: opt("registrationId"), protocol: opt("protocol"), text: opt("q") })
}

fn event(e: &LogEntry) -> Bytes {
    Bytes::from(format!("data: {}\n\n", serde_json::to_string(e).unwrap_or_default()))
}

pub fn handle(app: &App, req: &Request) -> Result<HttpResponse, DpsError> {
    let filter = filter_of(req)?;
    let limit = req.query("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(200).min(2000);
    let hub = LogHub::global();
    let after = match req.query("after") {
        None | Some("") => 0,
        Some(a) => a.parse::<u64>().map_err(|_| DpsError::invalid(format!("after '{}' is not a sequence number", a.escape_debug())))?,
    };
    let recent = hub.since(&filter, after, limit);
    if !req.query("follow").is_some_and(|f| f.eq_ignore_ascii_case("true")) {
        return Ok(json_response(StatusCode::OK, &recent));
    }
    let rx = hub.subscribe();
    let shutdown = app.shutdown.clone();
    let backlog: std::collections::VecDeque<Bytes> = recent.iter().map(event).collect();
    let stream = futures_util::stream::unfold((rx, shutdown, backlog, filter), |(mut rx, mut shutdown, mut backlog, filter)| async move {
        if let Some(b) = backlog.pop_front() {
            return Some((Ok::<_, Infallible>(Frame::data(b)), (rx, shutdown, backlog, filter)));
        }
        loop {
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) if filter.matches(&e) => return Some((Ok(Frame::data(event(&e))), (rx, shutdown, backlog, filter))),
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(Duration::from_secs(15)) => {
                    return Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), (rx, shutdown, backlog, filter)));
                }
                _ = shutdown.changed() => return None,
            }
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}
