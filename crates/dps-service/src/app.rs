//! The application state every transport shares.

use std::sync::Arc;

use dps_core::management::Management;
use dps_core::model::Right;
use dps_core::ports::{DeviceRegistryStore, PolicyStore};
use dps_core::registration::RegistrationEngine;
use dps_core::{Clock, DpsError, ErrorKind};
use dps_proto::EndpointInfo;

pub struct App {
    pub engine: Arc<RegistrationEngine>,
    pub management: Management,
    pub policies: Arc<dyn PolicyStore>,
    pub registry: Arc<dyn DeviceRegistryStore>,
    pub clock: Arc<dyn Clock>,
    /// Every name the service answers to (service-API SAS audiences).
    pub host_names: Vec<String>,
    pub info: EndpointInfo,
    pub mqtt_limits: crate::mqtt::Limits,
    /// The HTTPS listeners' request bounds and the global budget of request-body bytes.
    pub http_limits: crate::https::Limits,
    pub body_budget: crate::https::BodyBudget,
    /// AMQP limits and the count of open AMQP connections (TLS and WebSockets share it).
    pub amqp: crate::amqp::Admission,
    pub metrics: dps_core::metrics::Metrics,
    /// The limits profile (the console's Settings switch it) and whether the configuration names one.
    pub limits: dps_core::limits::Limits,
    pub limits_configured: bool,
    /// Service-wide settings (the admin password's hash).
    pub settings: Arc<dyn dps_store::Settings>,
    /// Rows the store moved aside because they could not be read (`GET /diagnostics/quarantine`).
    pub quarantine: Arc<dyn dps_store::Quarantine>,
    pub sessions: crate::admin::Sessions,
    pub login_throttle: crate::admin::LoginThrottle,
    /// Argon2 off the async workers, a few at a time.
    pub passwords: crate::admin::PasswordWork,
    /// What `GET /metrics` requires as a Bearer token, when configured.
    pub metrics_token: Option<dps_crypto::Secret>,
    /// Each listener's connection caps (HTTPS, console, MQTT, AMQP), for `/metrics`.
    pub connection_caps: Vec<Arc<crate::bounds::ConnectionCaps>>,
    /// The data directory (the initial admin password file).
    pub data_dir: std::path::PathBuf,
    /// Master-key rotation (`POST /service/keys/rotate`).
    pub rotation: Arc<crate::keys::Rotation>,
    /// How long the webhook client waits for a custom allocation webhook (the demo webhook's `slow` mode waits
    /// longer).
    pub webhook_timeout: std::time::Duration,
    /// Simulated devices started from the console (`/simulations`), and the scenarios run from it.
    /// Credential policies and the certificates issued from devices' CSRs.
    pub credentials: dps_core::credentials::Credentials,
    pub simulations: Arc<dps_sim::live::Simulations>,
    pub scenarios: Arc<dps_sim::scenario_runs::ScenarioRuns>,
    /// This `App` itself, for work that outlives the request that started it (a scenario run goes through the
    /// service API in-process, `LocalApi`).
    pub me: std::sync::Weak<App>,
    /// Turns true when the service stops (sessions that outlive a request watch it).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl App {
    /// Service-API authorisation (§5.1) for an operation needing `right`.
    pub async fn authorize(&self, authorization: Option<&str>, right: Right) -> Result<String, DpsError> {
        // A console session (the admin signed in) has every right.
        if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
            self.sessions.check(token.trim(), self.clock.now()).await?;
            return Ok(crate::admin::ADMIN_USER.to_owned());
        }
        let policies = self.policies.list_policies().await.map_err(|e| {
            tracing::error!(error = %e, "cannot read access policies");
            DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
        })?;
        dps_core::access::authorize(authorization, &policies, &self.host_names, right, self.clock.as_ref())
    }
}
