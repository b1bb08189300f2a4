//! Service-wide calls: endpoint information, access policies, console sign-in/out and the admin password.

use dps_proto::{AccessPolicyInfo, ConsoleLogin, ConsoleSession, EndpointInfo, LimitsSettings};
use serde_json::json;

use super::{ApiClient, ApiError};

impl ApiClient {
    /// `GET /service/info`: where the service listens and how devices and clients reach it.
    pub async fn service_info(&self) -> Result<EndpointInfo, ApiError> {
        self.get_json("/service/info", &[]).await
    }

    /// `GET /service/ca.pem`: the root CA devices and browsers trust (PEM text).
    pub async fn ca_pem(&self) -> Result<String, ApiError> {
        let r = self.call("GET", "/service/ca.pem", &[], &[("Accept", "application/x-pem-file".into())], None).await?;
        Ok(r.body)
    }

    /// `GET /service/policies`: the shared access policies with their keys and connection strings.
    pub async fn policies(&self) -> Result<Vec<AccessPolicyInfo>, ApiError> {
        self.get_json("/service/policies", &[]).await
    }

    /// `GET /service/limits`: the limits profile in force and the `azure` profile's numbers.
    pub async fn limits(&self) -> Result<LimitsSettings, ApiError> {
        self.get_json("/service/limits", &[]).await
    }

    /// `PUT /service/limits`: switch the profile (`default` or `azure`) at once.
    pub async fn set_limits(&self, profile: &str) -> Result<LimitsSettings, ApiError> {
        self.send_json("PUT", "/service/limits", &json!({ "profile": profile })).await
    }

    /// `POST /console/login` → a session (no token needed).
    pub async fn login(&self, password: &str) -> Result<ConsoleSession, ApiError> {
        self.send_json("POST", "/console/login", &ConsoleLogin { username: None, password: password.to_string() }).await
    }

    /// `POST /console/logout`: ends the session the token names.
    pub async fn logout(&self) -> Result<(), ApiError> {
        self.send_unit("POST", "/console/logout", &[], None).await
    }

    /// `PUT /admin/password`: the console's new admin password (the service needs the current one too).
    pub async fn set_admin_password(&self, current: &str, password: &str) -> Result<(), ApiError> {
        let body = json!({ "currentPassword": current, "password": password }).to_string();
        self.send_unit("PUT", "/admin/password", &[], Some(body)).await
    }
}
