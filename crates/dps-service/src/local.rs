//! The service API in-process, for the desktop shell: its window asks the shell (Tauri command), the shell
//! asks [`LocalApi`], which answers through the same routing, rights checks and errors as HTTPS
//! (`https::handle_local`) — no TLS trust and no password needed in a window the user already runs.
//! It signs in as the console admin with a session of its own, opened again when it expires or when a
//! password change ended every session.

use std::sync::Arc;

use tokio::sync::Mutex;

use chrono::{DateTime, Utc};
use dps_proto::{LocalRequest, LocalResponse};

use crate::app::App;

pub struct LocalApi {
    app: Arc<App>,
    session: Mutex<Option<(String, DateTime<Utc>)>>,
}

impl LocalApi {
    pub(crate) fn new(app: Arc<App>) -> Self {
        Self { app, session: Mutex::new(None) }
    }

    /// `Bearer <token>` of a live session (opens one when there is none or it ends within a minute). A store
    /// that cannot open one leaves the request unauthorised (401, the store's failure is logged).
    async fn authorization(&self, fresh: bool) -> String {
        let now = self.app.clock.now();
        let mut s = self.session.lock().await;
        let usable = s.as_ref().is_some_and(|(_, expires)| *expires - chrono::Duration::minutes(1) > now);
        if fresh || !usable {
            *s = self.app.sessions.open(now).await.ok();
        }
        s.as_ref().map(|(t, _)| format!("Bearer {t}")).unwrap_or_default()
    }

    /// Answers `req` as the service API would over HTTPS.
    pub async fn send(&self, req: LocalRequest) -> LocalResponse {
        let first = crate::https::handle_local(&self.app, req.clone(), &self.authorization(false).await).await;
        if first.status != 401 {
            return first;
        }
        // The session ended under us (the admin password changed): sign in again once.
        crate::https::handle_local(&self.app, req, &self.authorization(true).await).await
    }

    /// The service's endpoint information.
    pub fn info(&self) -> &dps_proto::EndpointInfo {
        &self.app.info
    }
}

/// The simulator's service API in-process: scenarios run from the console (and the tests) go through the same
/// routes, rights and answers as the CLI's HTTPS calls.
#[async_trait::async_trait]
impl dps_sim::ServiceApi for LocalApi {
    async fn call(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<(u16, serde_json::Value)> {
        let req = LocalRequest {
            method: method.to_owned(),
            path: path.to_owned(),
            query: Vec::new(),
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.map(|b| b.to_string()),
        };
        let answer = self.send(req).await;
        let json = if answer.body.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&answer.body)? };
        Ok((answer.status, json))
    }
}
