//! The service API as the simulator uses it: one call, answering the status and the JSON body. The CLI sends
//! it over HTTPS with a SAS (`dps simulate`); in the service's process it is the in-process API the desktop
//! window uses (`LocalApi`); either way the same routes, rights and answers.

use anyhow::{anyhow, Result};
use async_trait::async_trait;
use serde_json::Value;

#[async_trait]
pub trait ServiceApi: Send + Sync {
    /// Sends `method path` with an optional JSON body; answers the status and the body (`Null` when empty).
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)>;
}

/// A call that must succeed (2xx); its body.
pub async fn ok(api: &dyn ServiceApi, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
    let (status, answer) = api.call(method, path, body).await?;
    if (200..300).contains(&status) {
        Ok(answer)
    } else {
        Err(anyhow!("{method} {path}: {status} {}", answer.get("message").and_then(Value::as_str).unwrap_or_default()))
    }
}

/// A delete that may find nothing (404 is fine: a reset removes what is there).
pub async fn delete_if_there(api: &dyn ServiceApi, path: &str) -> Result<()> {
    match api.call("DELETE", path, None).await? {
        (s, _) if (200..300).contains(&s) || s == 404 => Ok(()),
        (s, body) => Err(anyhow!("DELETE {path}: {s} {}", body.get("message").and_then(Value::as_str).unwrap_or_default())),
    }
}

/// A path segment, percent-encoded (ids may hold `:` or `.`; nothing is left for a path to misread).
pub fn seg(id: &str) -> String {
    id.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}
