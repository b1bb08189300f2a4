//! Registration records: one page of a search, one record, its decision trace, re-provision, delete.

use dps_proto::DeviceRegistrationState;

use super::enrollments::{if_match, search_query, PAGE_SIZE};
use super::{seg, ApiClient, ApiError, PageOf};

impl ApiClient {
    /// `POST /registrations/{groupId}/query`: the first page of a group's registrations.
    pub async fn group_registrations(&self, id: &str) -> Result<PageOf<DeviceRegistrationState>, ApiError> {
        self.query_page(&format!("/registrations/{}/query", seg(id)), &[], PAGE_SIZE, None).await
    }

    /// `POST /registrations/query?search=`: one page of every record, after `continuation`.
    pub async fn registrations_page(
        &self,
        search: &str,
        continuation: Option<String>,
    ) -> Result<PageOf<DeviceRegistrationState>, ApiError> {
        self.query_page("/registrations/query", &search_query(search), PAGE_SIZE, continuation).await
    }

    /// `GET /registrations/{id}/trace`: `{ registrationState, enrollment, attestation, trace }`.
    pub async fn registration_trace(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        self.get_json(&format!("/registrations/{}/trace", seg(id)), &[]).await
    }

    /// `POST /registrations/{id}/reprovision`: the registration runs again now; the answer is shaped like the trace.
    pub async fn reprovision_registration(&self, id: &str) -> Result<serde_json::Value, ApiError> {
        self.send_json("POST", &format!("/registrations/{}/reprovision", seg(id)), &serde_json::json!({})).await
    }

    /// `DELETE /registrations/{id}`: the device is assigned afresh at its next registration.
    pub async fn delete_registration(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/registrations/{}", seg(id)), &if_match(etag), None).await
    }
}
