//! The HTTPS listeners: device API (§1) and service API (§5) on one port, and the browser console with the
//! service API on another ([`Surface`]). A connection is one task; each request is parsed into a [`Request`]
//! (path segments percent-decoded, body read up to its route's limit), routed, and answered; any error goes
//! through [`error::error_response`]. [`handle_local`] answers the same requests in-process (the desktop shell).
//!
//! What a request may cost before it is authorised is small and fixed: the route and the rights check need only
//! the head, so a service-API body is read only after the check passed (an unauthorised request gets its 401
//! unread); unauthenticated routes (sign-in) take 4 KB at most. Bodies being read count against one global
//! budget of bytes ([`Limits::body_budget_bytes`]): a request that finds it spent is answered at once with
//! 503 and `retry-after` (waiting would hold its connection and its bytes without bound), and a body must
//! arrive within [`Limits::body_timeout`]. The connection itself is bounded by the listener (caps, TLS
//! handshake, write and idle deadlines: `crate::bounds`) and hyper (the HTTP/1 head within the idle time,
//! HTTP/2 stream and header-list limits).

pub mod activity;
pub mod console;
pub mod cross_site;
pub mod device;
pub mod error;
pub mod router;
pub mod routes;
pub mod service;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dps_core::{DpsError, ErrorKind};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use percent_encoding::percent_decode_str;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::app::App;
use router::{Access, Params, Row};

/// Device messages are limited to 96 KB (§9).
pub const DEVICE_BODY_LIMIT: usize = 96 * 1024;
/// Service-API bodies (bulk operations are not capped at 10 items here).
pub const SERVICE_BODY_LIMIT: usize = 16 * 1024 * 1024;
/// Unauthenticated bodies (the console's sign-in): a password and a user name.
pub const OPEN_BODY_LIMIT: usize = 4 * 1024;

/// Bounds of the HTTPS and console listeners' requests (the connection's are `crate::bounds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time from TCP accept to a finished TLS handshake.
    pub handshake_timeout: Duration,
    /// Time a connection may move no byte; also the time an HTTP/1 request head has, counted from when the
    /// connection starts waiting for it (hyper's `header_read_timeout`), so a slow head and an idle
    /// keep-alive connection end alike.
    pub idle_timeout: Duration,
    /// Time a request body has to arrive whole.
    pub body_timeout: Duration,
    /// Bytes of request bodies held at once, across every connection of both listeners.
    pub body_budget_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(60),
            body_budget_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The global budget of request-body bytes (see the module doc).
#[derive(Debug, Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self { bytes: Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))) }
    }

    /// `n` more bytes for a body holding `held`; refused (503, retry-after) when the budget is spent.
    fn take(&self, held: &mut Option<OwnedSemaphorePermit>, n: usize) -> Result<(), DpsError> {
        if n == 0 {
            return Ok(());
        }
        let busy = || DpsError::new(ErrorKind::Unavailable, "the service is reading too many request bodies at once; try again");
        let n = u32::try_from(n).map_err(|_| busy())?;
        let permit = Arc::clone(&self.bytes).try_acquire_many_owned(n).map_err(|_| busy())?;
        match held {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
        Ok(())
    }
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The TLS client certificate chain (DER, leaf first), when the client presented one.
    pub client_chain: Option<Arc<Vec<Vec<u8>>>>,
    /// The connection's deadlines (a WebSocket upgrade hands the idle time to the carried protocol).
    pub deadlines: Option<crate::bounds::DeadlineHandle>,
}

/// A parsed request.
pub struct Request {
    pub method: Method,
    pub segments: Vec<String>,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub peer: Peer,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter, name matched case-insensitively.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The JSON body; `empty` is used when there is none.
    pub fn json_or<T: serde::de::DeserializeOwned>(&self, empty: impl FnOnce() -> Option<T>) -> Result<T, DpsError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return empty().ok_or_else(|| DpsError::bad_request("the request body is empty; a JSON document is required"));
        }
        serde_json::from_slice(&self.body).map_err(|e| DpsError::bad_request(format!("the request body is not valid: {e}")))
    }
}

/// Bodies are boxed: most are whole (`Full`), the live log streams (server-sent events).
pub type HttpResponse = Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> HttpResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    r
}

pub fn empty_response(status: StatusCode) -> HttpResponse {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}

fn split_path(path: &str) -> Result<Vec<String>, DpsError> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| DpsError::invalid("the request path is not valid UTF-8 after percent-decoding"))
        })
        .collect()
}

fn split_query(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |s: &str| percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The HTTPS port: device API, MQTT over WebSockets, service API.
    Device,
    /// The console port: the console's files and the service API (no device API).
    Console,
}

fn body_limit(row: &Row) -> usize {
    match row.access {
        Access::Device => DEVICE_BODY_LIMIT,
        Access::Open => OPEN_BODY_LIMIT,
        Access::Right(_) => SERVICE_BODY_LIMIT,
    }
}

fn too_large(len: usize, limit: usize) -> DpsError {
    DpsError::new(ErrorKind::PayloadTooLarge, format!("the request body ({len} bytes) exceeds the {limit}-byte limit"))
}

/// A routed request: its row, the path's parameters, the request, and the body budget it holds.
struct Routed {
    row: &'static Row,
    params: Params,
    request: Request,
    _budget: Option<OwnedSemaphorePermit>,
}

/// Routes the head, checks the rights it asks for, and only then reads the body.
async fn read_request(app: &App, surface: Surface, req: hyper::Request<Incoming>, peer: Peer) -> Result<Routed, DpsError> {
    let (parts, body) = req.into_parts();
    let segments = split_path(parts.uri.path())?;
    let (row, params) = router::route(&parts.method, &segments)?;
    if surface == Surface::Console && row.access == Access::Device {
        return Err(DpsError::new(
            ErrorKind::NotFound,
            "the device API is not served on the console port; devices use the HTTPS port (GET /service/info)",
        ));
    }
    let query = split_query(parts.uri.query());
    let mut request = Request { method: parts.method, segments, query, headers: parts.headers, body: Bytes::new(), peer };
    if let Access::Right(right) = row.access {
        service::admit_head(app, &request, right).await?;
    }
    let (bytes, budget) = read_body(app, body, &request.headers, body_limit(row)).await?;
    request.body = bytes;
    if let Access::Right(_) = row.access {
        app.limits.check_message(request.body.len())?;
    }
    Ok(Routed { row, params, request, _budget: budget })
}

fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
}

/// Reads a body up to `limit` bytes within the body deadline, each chunk taken from the global budget.
async fn read_body(
    app: &App,
    mut body: Incoming,
    headers: &HeaderMap,
    limit: usize,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), DpsError> {
    if let Some(len) = content_length(headers).filter(|&len| len > limit) {
        return Err(too_large(len, limit));
    }
    let timeout = app.http_limits.body_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let (mut buf, mut held) = (bytes::BytesMut::new(), None);
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(DpsError::bad_request(format!("the request body did not arrive within {} s", timeout.as_secs()))),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(DpsError::bad_request(format!("the request body could not be read: {e}"))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else { continue };
        if buf.len().saturating_add(data.len()) > limit {
            return Err(DpsError::new(ErrorKind::PayloadTooLarge, format!("the request body exceeds the {limit}-byte limit")));
        }
        app.body_budget.take(&mut held, data.len())?;
        buf.extend_from_slice(&data);
    }
    Ok((buf.freeze(), held))
}

/// Runs a row's handler after what its access asks for (a service-API right: [`service::admit`]).
async fn dispatch(app: &App, row: &Row, params: &Params, req: &Request) -> Result<HttpResponse, DpsError> {
    if let Access::Right(right) = row.access {
        service::admit(app, req, right).await?;
    }
    (row.handler)(app, req, params).await
}

/// The registration id of a device-API path (`/{idScope}/registrations/{id}/…`), so a refused device's log line
/// can be found by its id (the console's log filter, `?registrationId=`).
fn device_of(path: &str) -> Option<String> {
    let mut segs = path.split('/').filter(|s| !s.is_empty());
    let (_, kind, id) = (segs.next()?, segs.next()?, segs.next()?);
    kind.eq_ignore_ascii_case("registrations").then(|| percent_decode_str(id).decode_utf8_lossy().into_owned())
}

fn error_answer(app: &App, e: &DpsError, method: &Method, path: &str, addr: SocketAddr) -> HttpResponse {
    let tracking_id = uuid::Uuid::new_v4().to_string();
    let registration_id = device_of(path);
    if e.status() >= 500 {
        warn!(%method, %path, peer = %addr, registration_id, code = e.code(), tracking_id, error = %e.message, "request failed");
    } else {
        info!(%method, %path, peer = %addr, registration_id, code = e.code(), tracking_id, error = %e.message, "request refused");
    }
    error::error_response(e, &tracking_id, app.clock.now())
}

/// The console port's cross-site check ([`cross_site`]) of a request that is not one of the console's files.
fn console_admits(app: &App, req: &hyper::Request<Incoming>) -> Result<(), DpsError> {
    use hyper::body::Body as _;
    let host = req.headers().get(http::header::HOST).and_then(|h| h.to_str().ok());
    let request = cross_site::Request {
        method: req.method(),
        headers: req.headers(),
        authority: req.uri().authority().map(|a| a.as_str()).or(host),
        has_body: !req.body().is_end_stream(),
    };
    cross_site::check(&request, &cross_site::Own { host_names: &app.host_names, port: app.info.ports.console.unwrap_or_default() })
}

/// Answers one request; never fails.
pub async fn handle(
    app: Arc<App>,
    surface: Surface,
    peer: Peer,
    req: hyper::Request<Incoming>,
) -> Result<HttpResponse, std::convert::Infallible> {
    match surface {
        Surface::Console => {
            let upgrade = crate::websocket::is_upgrade(&req);
            if let Some(file) = console::asset(req.method(), req.uri().path()).filter(|_| !upgrade) {
                return Ok(file);
            }
            if let Err(e) = console_admits(&app, &req) {
                return Ok(error_answer(&app, &e, req.method(), req.uri().path(), peer.addr));
            }
        }
        Surface::Device => {
            if crate::websocket::is_upgrade(&req) {
                return Ok(crate::websocket::upgrade(req, app, peer));
            }
        }
    }
    let started = Instant::now();
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let addr = peer.addr;
    let result = match read_request(&app, surface, req, peer).await {
        Ok(routed) => (routed.row.handler)(&app, &routed.request, &routed.params).await,
        Err(e) => Err(e),
    };
    let response = match result {
        Ok(r) => {
            debug!(%method, %path, status = r.status().as_u16(), ms = started.elapsed().as_millis() as u64, "request");
            r
        }
        Err(e) => error_answer(&app, &e, &method, &path, addr),
    };
    Ok(response)
}

/// Answers a service-API request made in-process (the desktop shell's window): the same routing, checks and
/// errors as over HTTPS, without the device API. `peer` is loopback.
pub async fn handle_local(app: &App, req: dps_proto::LocalRequest, authorization: &str) -> dps_proto::LocalResponse {
    let peer = Peer { addr: SocketAddr::from(([127, 0, 0, 1], 0)), client_chain: None, deadlines: None };
    let method = Method::from_bytes(req.method.as_bytes()).unwrap_or(Method::GET);
    let path = req.path.clone();
    let result = async {
        let segments = split_path(&req.path)?;
        let (row, params) = router::route(&method, &segments)?;
        if row.access == Access::Device {
            return Err(DpsError::new(ErrorKind::NotFound, "the device API is not served in-process"));
        }
        let body = Bytes::from(req.body.unwrap_or_default());
        let limit = body_limit(row);
        if body.len() > limit {
            return Err(too_large(body.len(), limit));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &req.headers {
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
                headers.append(k, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(authorization) {
            headers.insert(http::header::AUTHORIZATION, v);
        }
        let r = Request { method: method.clone(), segments, query: req.query, headers, body, peer: peer.clone() };
        dispatch(app, row, &params, &r).await
    }
    .await;
    let response = match result {
        Ok(r) => r,
        Err(e) => error_answer(app, &e, &method, &path, peer.addr),
    };
    let (parts, body) = response.into_parts();
    // Streams (the live log's follow mode) are not for in-process callers; they poll with `after`.
    let body = match tokio::time::timeout(Duration::from_secs(30), body.collect()).await {
        Ok(Ok(b)) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Ok(Err(never)) => match never {},
        Err(_) => String::new(),
    };
    let headers = parts.headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect();
    dps_proto::LocalResponse { status: parts.status.as_u16(), headers, body }
}

/// hyper's side of the bounds: the HTTP/1 head within the idle time (its timer starts when the connection
/// waits for a request) and a 128 KiB read buffer (a longer head is 431; a request line past hyper's 64 KiB URI
/// limit still fits, so it gets its 414); HTTP/2: 100 concurrent streams, 16 KiB of headers.
fn http_builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.idle_timeout).max_buf_size(128 * 1024);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(100)
        .max_header_list_size(16 * 1024)
        .max_send_buf_size(256 * 1024);
    builder
}

/// Accepts TLS connections until `shutdown` turns true, then lets open requests finish (5 s at most).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
    surface: Surface,
    bounds: crate::bounds::ListenerBounds,
    shutdown: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let name = match surface {
        Surface::Device => "HTTPS",
        Surface::Console => "console",
    };
    let limits = app.http_limits;
    let bounds =
        crate::bounds::ListenerBounds { handshake_timeout: limits.handshake_timeout, idle_timeout: Some(limits.idle_timeout), ..bounds };
    crate::tls::accept_bounded(name, listener, tls, bounds, shutdown, |peer| {
        let (app, watcher) = (Arc::clone(&app), graceful.watcher());
        move |stream, client_chain| async move {
            let who = Peer { addr: peer, client_chain, deadlines: Some(stream.get_ref().0.handle()) };
            let requests = activity::Activity::new();
            let counted = Arc::clone(&requests);
            let svc = hyper::service::service_fn(move |req| {
                let in_flight = counted.begin();
                let answer = handle(Arc::clone(&app), surface, who.clone(), req);
                async move { answer.await.map(|r| r.map(|body| activity::tracked(body, in_flight))) }
            });
            let builder = http_builder(limits);
            let conn = watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).into_owned());
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    debug!(%peer, error = %e, "connection ended with an error");
                },
                () = requests.quiet_for(limits.idle_timeout) => debug!(%peer, "no request within the idle time; closed"),
            }
        }
    })
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
}
