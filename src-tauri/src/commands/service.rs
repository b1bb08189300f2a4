//! The embedded service itself.

use dps_proto::EndpointInfo;
use tauri::State;

use crate::error::CommandError;
use crate::service::{EmbeddedService, Status};

/// The embedded service's endpoint information (the same as `GET /service/info`); waits for start-up.
#[tauri::command]
pub async fn service_info(service: State<'_, EmbeddedService>) -> Result<EndpointInfo, CommandError> {
    match service.settled().await {
        Status::Running(info) => Ok(info),
        Status::Failed(message) => Err(CommandError::service_unavailable(message)),
        Status::Starting => Err(CommandError::service_unavailable("the service is still starting")),
    }
}
