//! Linked hubs: list, add/edit, delete, connector status and the allocation (devices per hub).

use dps_proto::{HubAllocation, HubStatus, LinkedHub};

use super::{seg, ApiClient, ApiError};

impl ApiClient {
    /// `GET /linkedHubs`.
    pub async fn hubs(&self) -> Result<Vec<LinkedHub>, ApiError> {
        self.get_json("/linkedHubs", &[]).await
    }

    /// `PUT /linkedHubs/{host}`: adds or replaces a hub (a connection string, when set, is write-only).
    pub async fn put_hub(&self, hub: &LinkedHub) -> Result<LinkedHub, ApiError> {
        self.send_json("PUT", &format!("/linkedHubs/{}", seg(&hub.host_name)), hub).await
    }

    /// `DELETE /linkedHubs/{host}`.
    pub async fn delete_hub(&self, host: &str) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/linkedHubs/{}", seg(host)), &[], None).await
    }

    /// `GET /linkedHubs/{host}/status`: whether the hub's connector reaches it.
    pub async fn hub_status(&self, host: &str) -> Result<HubStatus, ApiError> {
        self.get_json(&format!("/linkedHubs/{}/status", seg(host)), &[]).await
    }

    /// `GET /diagnostics/allocation`: every hub with its weight and the devices assigned to it.
    pub async fn allocation(&self) -> Result<Vec<HubAllocation>, ApiError> {
        self.get_json("/diagnostics/allocation", &[]).await
    }
}
