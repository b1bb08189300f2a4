//! Inside the desktop shell (Tauri, `withGlobalTauri`), the console sends its service-API requests through the
//! shell's `api_request` command (`src-tauri/src/commands/`), which forwards them to the embedded service
//! in-process, signed in: no TLS trust, no token, no sign-in page. Files are saved through the shell's native save
//! dialog (`save_file`), and the shell's own preferences are read and written here.

use dps_proto::{LocalRequest, LocalResponse};
use serde::{Deserialize, Serialize};
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

#[derive(Serialize)]
struct Args<'a> {
    request: &'a LocalRequest,
}

fn to_json(v: &JsValue) -> String {
    js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).unwrap_or_default()
}

fn command_error(e: &JsValue) -> ApiError {
    match serde_json::from_str::<CommandError>(&to_json(e)) {
        Ok(c) if c.code == SERVICE_UNAVAILABLE => ApiError::Unavailable(c.message),
        Ok(c) => ApiError::Network(format!("{} ({})", c.message, c.code)),
        Err(_) => ApiError::Network(e.as_string().unwrap_or_else(|| to_json(e))),
    }
}

/// Calls a shell command with JSON arguments (camelCase names, as Tauri expects) and decodes its answer.
async fn command<T: serde::de::DeserializeOwned>(name: &str, args: &serde_json::Value) -> Result<T, ApiError> {
    let args = js_sys::JSON::parse(&args.to_string()).map_err(|e| ApiError::Decode(to_json(&e)))?;
    match invoke(name, args).await {
        Ok(v) => serde_json::from_str(&to_json(&v)).map_err(|e| ApiError::Decode(e.to_string())),
        Err(e) => Err(command_error(&e)),
    }
}

/// Asks where to save `contents` (native dialog) and writes it: the saved path, or `None` when cancelled.
pub async fn save_file(default_name: &str, contents: &str) -> Result<Option<String>, ApiError> {
    command("save_file", &serde_json::json!({ "defaultName": default_name, "contents": contents })).await
}

/// A file the shell's Open dialog read (`src-tauri/src/commands/files.rs`).
#[derive(Debug, Deserialize)]
struct OpenedFile {
    name: String,
    base64: String,
}

/// Lets the user pick files with the native Open dialog (`extensions` without dots); empty when cancelled.
pub async fn open_files(multiple: bool, extensions: &[&str]) -> Result<Vec<crate::components::files::Picked>, ApiError> {
    let opened: Vec<OpenedFile> = command("open_files", &serde_json::json!({ "multiple": multiple, "extensions": extensions })).await?;
    let window = web_sys::window().ok_or_else(|| ApiError::Decode("no window".into()))?;
    opened
        .into_iter()
        .map(|f| {
            // atob gives a "binary string": one character per byte.
            let binary = window.atob(&f.base64).map_err(|e| ApiError::Decode(to_json(&e)))?;
            Ok(crate::components::files::Picked { name: f.name, bytes: binary.chars().map(|c| c as u8).collect() })
        })
        .collect()
}

/// The desktop shell's preferences (`src-tauri/src/commands/preferences.rs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    /// A desktop notification when a registration fails or a device is refused.
    #[serde(default)]
    pub notify_failed_registrations: bool,
}

pub async fn get_preferences() -> Result<Preferences, ApiError> {
    command("get_preferences", &serde_json::json!({})).await
}

pub async fn set_preferences(preferences: &Preferences) -> Result<Preferences, ApiError> {
    command("set_preferences", &serde_json::json!({ "preferences": preferences })).await
}

/// `invoke("api_request", { request })` → the embedded service's answer, whatever its status.
pub async fn api_request(request: &LocalRequest) -> Result<LocalResponse, ApiError> {
    let args = serde_json::to_string(&Args { request }).map_err(|e| ApiError::Decode(e.to_string()))?;
    let args = js_sys::JSON::parse(&args).map_err(|e| ApiError::Decode(to_json(&e)))?;
    match invoke("api_request", args).await {
        Ok(v) => serde_json::from_str(&to_json(&v)).map_err(|e| ApiError::Decode(e.to_string())),
        Err(e) => Err(command_error(&e)),
    }
}
