//! `api_request`: the console's service-API calls, answered in-process by the embedded service
//! (`dps_service::local::LocalApi`), signed in as the admin — the window needs no password and no TLS trust.

use dps_proto::{LocalRequest, LocalResponse};
use tauri::State;

use crate::error::CommandError;
use crate::service::EmbeddedService;

#[tauri::command]
pub async fn api_request(service: State<'_, EmbeddedService>, request: LocalRequest) -> Result<LocalResponse, CommandError> {
    let api = service.api().await?;
    Ok(api.send(request).await)
}
