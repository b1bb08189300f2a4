//! `GET /service/policies` (extension): the service API's shared access policies with their keys and
//! connection strings (the console's Settings page). Needs `ServiceConfig`, like Azure's `listKeys`.

use dps_core::{DpsError, ErrorKind};
use dps_proto::AccessPolicyInfo;
use http::StatusCode;

use crate::app::App;
use crate::https::{json_response, HttpResponse};

/// `HostName=…` of the service connection string the service prints (host and port as clients use them).
fn host_part(app: &App) -> &str {
    app.info.service_connection_string.split(';').find_map(|p| p.strip_prefix("HostName=")).unwrap_or(&app.info.host)
}

pub async fn list(app: &App) -> Result<HttpResponse, DpsError> {
    let policies = app.policies.list_policies().await.map_err(|e| {
        tracing::error!(error = %e, "cannot list the access policies");
        DpsError::new(ErrorKind::Unavailable, "the store is unavailable; try again")
    })?;
    let host = host_part(app);
    let out: Vec<AccessPolicyInfo> = policies
        .into_iter()
        .map(|p| AccessPolicyInfo {
            connection_string: format!("HostName={host};SharedAccessKeyName={};SharedAccessKey={}", p.name, p.primary_key.expose()),
            rights: p.rights.iter().map(|r| r.as_str().to_owned()).collect(),
            primary_key: p.primary_key.expose().to_owned(),
            secondary_key: p.secondary_key.expose().to_owned(),
            key_name: p.name,
        })
        .collect();
    Ok(json_response(StatusCode::OK, &out))
}
