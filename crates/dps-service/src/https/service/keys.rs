//! `POST /service/keys/rotate` (extension, #15 item 4): rotates the master key while the service runs and answers
//! what it did (see `crate::keys`). One rotation at a time; a second waits for the first. The rotation runs in its
//! own task: a caller that stops waiting (a client time-out) does not stop it halfway.

use dps_core::{DpsError, ErrorKind};
use http::StatusCode;

use crate::app::App;
use crate::https::{json_response, HttpResponse};

pub async fn rotate(app: &App) -> Result<HttpResponse, DpsError> {
    let rotation = std::sync::Arc::clone(&app.rotation);
    let outcome =
        tokio::spawn(async move { rotation.rotate().await }).await.unwrap_or_else(|e| Err(anyhow::anyhow!("the rotation task ended: {e}")));
    match outcome {
        Ok(report) => Ok(json_response(StatusCode::OK, &report)),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "master-key rotation failed");
            Err(DpsError::new(ErrorKind::Conflict, format!("the master key was not rotated: {e:#}")))
        }
    }
}
