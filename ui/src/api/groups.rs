//! Enrollment groups: one page of a search, one document, write, delete, key renewal, bulk operations, and the
//! registrations of a group.

use dps_proto::{
    AttestationMechanism, BulkEnrollmentGroupOperation, BulkEnrollmentOperationResult, DeviceRegistrationState, EnrollmentGroup,
};
use serde_json::json;

use super::enrollments::{if_match, search_query, PAGE_SIZE};
use super::{seg, ApiClient, ApiError, PageOf};

impl ApiClient {
    /// `POST /enrollmentGroups/query?search=`: one page after `continuation`.
    pub async fn groups_page(&self, search: &str, continuation: Option<String>) -> Result<PageOf<EnrollmentGroup>, ApiError> {
        self.query_page("/enrollmentGroups/query", &search_query(search), PAGE_SIZE, continuation).await
    }

    /// Every enrollment group (all pages), for an export.
    pub async fn all_groups(&self) -> Result<Vec<EnrollmentGroup>, ApiError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let (items, cont, _) = self.query_page("/enrollmentGroups/query", &[], 1000, next).await?;
            all.extend(items);
            match cont {
                Some(c) => next = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// `GET /enrollmentGroups/{id}`.
    pub async fn group(&self, id: &str) -> Result<EnrollmentGroup, ApiError> {
        self.get_json(&format!("/enrollmentGroups/{}", seg(id)), &[]).await
    }

    /// `PUT /enrollmentGroups/{id}`, with `If-Match` when the document carries an etag (an edit).
    pub async fn put_group(&self, g: &EnrollmentGroup) -> Result<EnrollmentGroup, ApiError> {
        let body = serde_json::to_string(g).map_err(|x| ApiError::Decode(x.to_string()))?;
        let path = format!("/enrollmentGroups/{}", seg(&g.enrollment_group_id));
        super::decode(&self.call("PUT", &path, &[], &if_match(g.etag.as_deref()), Some(body)).await?)
    }

    /// `DELETE /enrollmentGroups/{id}`.
    pub async fn delete_group(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/enrollmentGroups/{}", seg(id)), &if_match(etag), None).await
    }

    /// `POST /enrollmentGroups/{id}/renewKey`.
    pub async fn renew_group_keys(&self, id: &str, key_type: &str) -> Result<AttestationMechanism, ApiError> {
        self.send_json("POST", &format!("/enrollmentGroups/{}/renewKey", seg(id)), &json!({ "keyType": key_type })).await
    }

    /// `POST /enrollmentGroups`: a bulk operation.
    pub async fn bulk_groups(&self, op: &BulkEnrollmentGroupOperation) -> Result<BulkEnrollmentOperationResult, ApiError> {
        self.send_json("POST", "/enrollmentGroups", op).await
    }

    /// `POST /registrations/{groupId}/query`: the first page of a group's registrations.
    pub async fn group_registrations(&self, id: &str) -> Result<PageOf<DeviceRegistrationState>, ApiError> {
        self.query_page(&format!("/registrations/{}/query", seg(id)), &[], PAGE_SIZE, None).await
    }
}
