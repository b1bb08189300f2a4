//! Individual enrollments: one page of a search, one document, write, delete, key renewal and bulk operations.

use dps_proto::{AttestationMechanism, BulkEnrollmentOperation, BulkEnrollmentOperationResult, IndividualEnrollment};
use serde_json::json;

use super::{seg, ApiClient, ApiError, PageOf};

/// Items per page of the console's lists.
pub const PAGE_SIZE: u32 = 50;

/// `?search=` when there is something to search for.
pub(crate) fn search_query(search: &str) -> Vec<(&'static str, String)> {
    let s = search.trim();
    if s.is_empty() {
        Vec::new()
    } else {
        vec![("search", s.to_string())]
    }
}

/// `If-Match` with the document's etag, when it has one.
pub(crate) fn if_match(etag: Option<&str>) -> Vec<(&'static str, String)> {
    etag.map(|e| vec![("If-Match", e.to_string())]).unwrap_or_default()
}

impl ApiClient {
    /// `POST /enrollments/query?search=`: one page (`PAGE_SIZE` items) after `continuation`.
    pub async fn enrollments_page(&self, search: &str, continuation: Option<String>) -> Result<PageOf<IndividualEnrollment>, ApiError> {
        self.query_page("/enrollments/query", &search_query(search), PAGE_SIZE, continuation).await
    }

    /// Every enrollment (all pages), for an export.
    pub async fn all_enrollments(&self) -> Result<Vec<IndividualEnrollment>, ApiError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let (items, cont, _) = self.query_page("/enrollments/query", &[], 1000, next).await?;
            all.extend(items);
            match cont {
                Some(c) => next = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// `GET /enrollments/{id}`: the document with its etag and registration state.
    pub async fn enrollment(&self, id: &str) -> Result<IndividualEnrollment, ApiError> {
        self.get_json(&format!("/enrollments/{}", seg(id)), &[]).await
    }

    /// `PUT /enrollments/{id}`, with `If-Match` when the document carries an etag (an edit).
    pub async fn put_enrollment(&self, e: &IndividualEnrollment) -> Result<IndividualEnrollment, ApiError> {
        let body = serde_json::to_string(e).map_err(|x| ApiError::Decode(x.to_string()))?;
        let path = format!("/enrollments/{}", seg(&e.registration_id));
        super::decode(&self.call("PUT", &path, &[], &if_match(e.etag.as_deref()), Some(body)).await?)
    }

    /// `DELETE /enrollments/{id}` (with `If-Match` when an etag is given).
    pub async fn delete_enrollment(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        self.send_unit("DELETE", &format!("/enrollments/{}", seg(id)), &if_match(etag), None).await
    }

    /// `POST /enrollments/{id}/renewKey` with `keyType` (`primary`, `secondary`, `both`, `swap`).
    pub async fn renew_enrollment_keys(&self, id: &str, key_type: &str) -> Result<AttestationMechanism, ApiError> {
        self.send_json("POST", &format!("/enrollments/{}/renewKey", seg(id)), &json!({ "keyType": key_type })).await
    }

    /// `POST /enrollments`: a bulk operation (the answer lists the documents refused).
    pub async fn bulk_enrollments(&self, op: &BulkEnrollmentOperation) -> Result<BulkEnrollmentOperationResult, ApiError> {
        self.send_json("POST", "/enrollments", op).await
    }
}
