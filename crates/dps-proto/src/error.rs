//! `ProvisioningServiceErrorDetails`, the one error body of every transport (§1.8).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningServiceErrorDetails {
    /// `<HTTP status> * 1000 + <sub-code>`, e.g. 401002.
    pub error_code: i64,
    pub tracking_id: String,
    pub message: String,
    /// RFC 3339 UTC time of the failure.
    pub timestamp_utc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<Map<String, Value>>,
}
