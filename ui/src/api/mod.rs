//! Typed client of the service API (`dps-protocol.md` §5 and DPS Console's extensions), on the `dps-proto`
//! wire types. It is given the base URL and the `Authorization` header value; it does not make tokens.

use dps_proto::{EndpointInfo, ProvisioningServiceErrorDetails};
use gloo_net::http::Request;
use serde::de::DeserializeOwned;

/// The service API version the console speaks (the one the `dps` CLI sends).
pub const API_VERSION: &str = "2021-10-01";

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

/// A client for one service: `base_url` is its origin (empty = the origin that served the console) and
/// `authorization` the `Authorization` header value (a `SharedAccessSignature …`), sent when not empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ApiClient {
    pub base_url: String,
    pub authorization: String,
}

impl ApiClient {
    pub fn new(base_url: impl Into<String>, authorization: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), authorization: authorization.into() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}?api-version={API_VERSION}", self.base_url.trim_end_matches('/'))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let mut request = Request::get(&self.url(path)).header("Accept", "application/json");
        if !self.authorization.is_empty() {
            request = request.header("Authorization", &self.authorization);
        }
        let response = request.send().await.map_err(|e| ApiError::Network(e.to_string()))?;
        let status = response.status();
        if !response.ok() {
            let body = response.text().await.unwrap_or_default();
            return Err(match serde_json::from_str::<ProvisioningServiceErrorDetails>(&body) {
                Ok(details) => ApiError::Service { status, details },
                // Not the service's error body (a proxy's or a file server's page): the status line says enough.
                Err(_) => ApiError::Status { status, text: response.status_text() },
            });
        }
        response.json::<T>().await.map_err(|e| ApiError::Decode(e.to_string()))
    }

    /// `GET /service/info`: where the service listens and how devices and clients reach it.
    pub async fn service_info(&self) -> Result<EndpointInfo, ApiError> {
        self.get("/service/info").await
    }
}
