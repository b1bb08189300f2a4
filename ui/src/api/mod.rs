//! Client of the service API (`dps-protocol.md` §5 and DPS Console's extensions), on the `dps-proto` wire types.
//!
//! One generic [`ApiClient::send`] over two transports: in a browser, `fetch` to the origin that served the page
//! (the service's console port) with `Authorization: Bearer <session token>`; in the desktop shell, the Tauri
//! command `api_request`, which hands the request to the embedded service in-process and signs it in. The typed
//! calls of each area live in the submodules.

pub mod certificates;
pub mod diagnostics;
pub mod documents;
pub mod enrollments;
pub mod hubs;
pub mod registrations;
pub mod service;
pub mod simulations;

use dps_proto::{LocalRequest, LocalResponse, ProvisioningServiceErrorDetails};
use gloo_net::http::{Method, Request};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::desktop;

/// The service API version the console speaks (the one the `dps` CLI sends).
pub const API_VERSION: &str = "2021-10-01";

/// The window event sent when the service refuses the browser session's token (HTTP 401): the app goes back to
/// the sign-in page.
pub const UNAUTHORIZED_EVENT: &str = "dps-console-unauthorized";

/// Why a call failed, in the words the pages show.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The request did not reach the service (no connection, refused, CORS, TLS).
    Network(String),
    /// The service answered with its error body (`ProvisioningServiceErrorDetails`, §1.8).
    Service { status: u16, details: ProvisioningServiceErrorDetails },
    /// The service answered with a status and a body that is not an error body.
    Status { status: u16, text: String },
    /// The answer did not have the expected shape.
    Decode(String),
    /// Desktop shell: the embedded service is not running (it failed to start; the message says why).
    Unavailable(String),
}

impl ApiError {
    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Service { status, .. } | ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Network(e) => write!(f, "cannot reach the service: {e}"),
            ApiError::Service { status, details } => {
                write!(f, "{} (error {}, HTTP {status}, tracking id {})", details.message, details.error_code, details.tracking_id)
            }
            ApiError::Status { status, text } => write!(f, "the service answered HTTP {status}: {text}"),
            ApiError::Decode(e) => write!(f, "unexpected answer: {e}"),
            ApiError::Unavailable(e) => write!(f, "the service is not running: {e}"),
        }
    }
}

/// How requests reach the service.
#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    /// `fetch` to the page's origin; `token` is the console session's (empty before sign-in).
    Browser { token: String },
    /// The desktop shell's `api_request` command (already signed in).
    Desktop,
}

/// A client for the service API. Pages read it from the context (`RwSignal<ApiClient>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiClient {
    pub transport: Transport,
}

/// One page of a query: the items, the continuation token of the next page (`x-ms-continuation`) and the number
/// of matching items (`x-dps-total-count`), when the service sent them.
pub type PageOf<T> = (Vec<T>, Option<String>, Option<u64>);

/// A path segment (an id, a host name), percent-encoded.
pub fn seg(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

impl ApiClient {
    pub fn browser(token: impl Into<String>) -> Self {
        Self { transport: Transport::Browser { token: token.into() } }
    }

    pub fn desktop() -> Self {
        Self { transport: Transport::Desktop }
    }

    pub fn is_desktop(&self) -> bool {
        self.transport == Transport::Desktop
    }

    /// Sends one request and returns the answer whatever its status; only a transport failure is an error.
    /// `path` has no query (encode ids with [`seg`]); `query` values are not encoded; `api-version` is added.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<LocalResponse, ApiError> {
        let mut query: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if !query.iter().any(|(k, _)| k == "api-version") {
            query.push(("api-version".into(), API_VERSION.into()));
        }
        let mut headers: Vec<(String, String)> = headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let request = LocalRequest { method: method.to_ascii_uppercase(), path: path.to_string(), query, headers, body };
        match &self.transport {
            Transport::Desktop => desktop::api_request(&request).await,
            Transport::Browser { token } => {
                let response = fetch(&request, token).await?;
                if response.status == 401 && !token.is_empty() {
                    notify_unauthorized();
                }
                Ok(response)
            }
        }
    }

    /// Sends one request; a status outside 2xx becomes an [`ApiError`].
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Option<String>,
    ) -> Result<LocalResponse, ApiError> {
        let response = self.send(method, path, query, headers, body).await?;
        if (200..300).contains(&response.status) {
            Ok(response)
        } else {
            Err(error_of(&response))
        }
    }

    /// `GET path?query` → `T`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ApiError> {
        decode(&self.call("GET", path, query, &[], None).await?)
    }

    /// `method path` with `body` as JSON → `T`.
    pub async fn send_json<B: Serialize + ?Sized, T: DeserializeOwned>(&self, method: &str, path: &str, body: &B) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).map_err(|e| ApiError::Decode(e.to_string()))?;
        decode(&self.call(method, path, &[], &[], Some(body)).await?)
    }

    /// `method path` with an optional JSON body, the answer's body ignored (`DELETE`, 204 answers).
    pub async fn send_unit(&self, method: &str, path: &str, headers: &[(&str, String)], body: Option<String>) -> Result<(), ApiError> {
        self.call(method, path, &[], headers, body).await.map(|_| ())
    }

    /// `POST path` (a `…/query` endpoint) for one page: at most `max_items`, after `continuation`.
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        max_items: u32,
        continuation: Option<String>,
    ) -> Result<PageOf<T>, ApiError> {
        let mut headers = vec![("x-ms-max-item-count", max_items.to_string())];
        if let Some(c) = continuation.filter(|c| !c.is_empty()) {
            headers.push(("x-ms-continuation", c));
        }
        // `*` lists everything on every query endpoint (the service refuses a collection name it does not serve).
        let body = Some(r#"{"query":"*"}"#.to_string());
        let response = self.call("POST", path, query, &headers, body).await?;
        page_of(&response)
    }
}

/// Reads a query answer: the items and the paging headers.
#[allow(clippy::result_large_err)] // ApiError is the pages' error type; it is not on a hot path
pub fn page_of<T: DeserializeOwned>(response: &LocalResponse) -> Result<PageOf<T>, ApiError> {
    let items = decode(response)?;
    let continuation = response.header("x-ms-continuation").filter(|c| !c.is_empty()).map(str::to_string);
    let total = response.header("x-dps-total-count").and_then(|t| t.trim().parse().ok());
    Ok((items, continuation, total))
}

/// Decodes a 2xx answer's JSON body.
#[allow(clippy::result_large_err)] // as above
pub fn decode<T: DeserializeOwned>(response: &LocalResponse) -> Result<T, ApiError> {
    serde_json::from_str(&response.body).map_err(|e| ApiError::Decode(e.to_string()))
}

/// The error a non-2xx answer stands for.
pub fn error_of(response: &LocalResponse) -> ApiError {
    let status = response.status;
    match serde_json::from_str::<ProvisioningServiceErrorDetails>(&response.body) {
        Ok(details) => ApiError::Service { status, details },
        // Not the service's error body (a proxy's or a file server's page): the status and the start of the body.
        Err(_) => {
            let text: String = response.body.chars().take(200).collect();
            ApiError::Status { status, text: if text.trim().is_empty() { status_text(status).into() } else { text } }
        }
    }
}

fn status_text(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "(no body)",
    }
}

async fn fetch(request: &LocalRequest, token: &str) -> Result<LocalResponse, ApiError> {
    let method = Method::from_bytes(request.method.as_bytes()).map_err(|e| ApiError::Network(e.to_string()))?;
    let mut builder = Request::get(&request.path)
        .method(method)
        .query(request.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .header("Accept", "application/json");
    for (k, v) in &request.headers {
        builder = builder.header(k, v);
    }
    if !token.is_empty() {
        builder = builder.header("Authorization", &format!("Bearer {token}"));
    }
    let built = match &request.body {
        Some(b) => builder.body(b.as_str()),
        None => builder.build(),
    }
    .map_err(|e| ApiError::Network(e.to_string()))?;
    let response = built.send().await.map_err(|e| ApiError::Network(e.to_string()))?;
    let status = response.status();
    let headers = response.headers().entries().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let body = response.text().await.map_err(|e| ApiError::Network(e.to_string()))?;
    Ok(LocalResponse { status, headers, body })
}

fn notify_unauthorized() {
    if let Some(w) = web_sys::window() {
        if let Ok(ev) = web_sys::Event::new(UNAUTHORIZED_EVENT) {
            let _ = w.dispatch_event(&ev);
        }
    }
}
