//! Inside the desktop shell (Tauri, `withGlobalTauri`), the console asks the shell's commands
//! (`src-tauri/src/commands/`) instead of going over HTTPS to the embedded service.

use dps_proto::EndpointInfo;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::api::ApiError;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = ["window", "__TAURI__", "core"], catch)]
    async fn invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;
}

/// True when the page runs in the desktop shell.
pub fn is_desktop() -> bool {
    let Some(window) = web_sys::window() else { return false };
    js_sys::Reflect::get(&window, &JsValue::from_str("__TAURI__")).map(|v| !v.is_undefined()).unwrap_or(false)
}

/// `CommandError::SERVICE_UNAVAILABLE` in `src-tauri/src/error.rs`.
const SERVICE_UNAVAILABLE: &str = "service.unavailable";

/// The shell's error (`src-tauri/src/error.rs`): a stable code and a message.
#[derive(Debug, Deserialize)]
struct CommandError {
    code: String,
    message: String,
}

fn to_json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).unwrap_or_default()
}

async fn call<T: serde::de::DeserializeOwned>(cmd: &str) -> Result<T, ApiError> {
    match invoke(cmd, JsValue::from(js_sys::Object::new())).await {
        Ok(v) => serde_json::from_str(&to_json(&v)).map_err(|e| ApiError::Decode(e.to_string())),
        Err(e) => Err(match serde_json::from_str::<CommandError>(&to_json(&e)) {
            Ok(c) if c.code == SERVICE_UNAVAILABLE => ApiError::Unavailable(c.message),
            Ok(c) => ApiError::Decode(format!("{} ({})", c.message, c.code)),
            Err(_) => ApiError::Decode(e.as_string().unwrap_or_else(|| to_json(&e))),
        }),
    }
}

/// The embedded service's endpoint information (command `service_info`).
pub async fn service_info() -> Result<EndpointInfo, ApiError> {
    call("service_info").await
}
