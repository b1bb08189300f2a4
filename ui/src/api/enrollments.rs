//! Individual enrollments and enrollment groups, written once over [`Enrollment`]: one page of a search, every
//! document (an export), one document, write, delete, key renewal and bulk operations.

use dps_proto::{AttestationMechanism, BulkEnrollmentOperationResult, Enrollment};
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

/// `/enrollments/{id}` or `/enrollmentGroups/{id}`, and what follows.
fn path<E: Enrollment>(id: &str, rest: &str) -> String {
    format!("/{}/{}{rest}", E::KIND.collection(), seg(id))
}

impl ApiClient {
    /// `POST /enrollments/query?search=` (or `/enrollmentGroups/query`): one page (`PAGE_SIZE` items) after
    /// `continuation`.
    pub async fn page_of<E: Enrollment>(&self, search: &str, continuation: Option<String>) -> Result<PageOf<E>, ApiError> {
        self.query_page(&format!("/{}/query", E::KIND.collection()), &search_query(search), PAGE_SIZE, continuation).await
    }

    /// Every document of a kind (all pages), for an export.
    pub async fn all_of<E: Enrollment>(&self) -> Result<Vec<E>, ApiError> {
        let mut all = Vec::new();
        let mut next = None;
        loop {
            let (items, cont, _) = self.query_page(&format!("/{}/query", E::KIND.collection()), &[], 1000, next).await?;
            all.extend(items);
            match cont {
                Some(c) => next = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// `GET`: the document with its etag (an individual enrollment with its registration state).
    pub async fn get_of<E: Enrollment>(&self, id: &str) -> Result<E, ApiError> {
        self.get_json(&path::<E>(id, ""), &[]).await
    }

    /// `PUT`, with `If-Match` when the document carries an etag (an edit).
    pub async fn put_of<E: Enrollment>(&self, e: &E) -> Result<E, ApiError> {
        let body = serde_json::to_string(e).map_err(|x| ApiError::Decode(x.to_string()))?;
        super::decode(&self.call("PUT", &path::<E>(e.id(), ""), &[], &if_match(e.etag()), Some(body)).await?)
    }

    /// `DELETE` (with `If-Match` when an etag is given).
    pub async fn delete_of<E: Enrollment>(&self, id: &str, etag: Option<&str>) -> Result<(), ApiError> {
        self.send_unit("DELETE", &path::<E>(id, ""), &if_match(etag), None).await
    }

    /// `POST …/{id}/renewKey` with `keyType` (`primary`, `secondary`, `both`, `swap`).
    pub async fn renew_keys_of<E: Enrollment>(&self, id: &str, key_type: &str) -> Result<AttestationMechanism, ApiError> {
        self.send_json("POST", &path::<E>(id, "/renewKey"), &json!({ "keyType": key_type })).await
    }

    /// `POST /enrollments` (or `/enrollmentGroups`): a bulk operation (the answer lists the documents refused).
    pub async fn bulk_of<E: Enrollment>(&self, op: &E::Bulk) -> Result<BulkEnrollmentOperationResult, ApiError> {
        self.send_json("POST", &format!("/{}", E::KIND.collection()), op).await
    }
}
