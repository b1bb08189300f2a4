//! The desktop's own preferences (`<data-dir>/desktop.json`): notifications on failed registrations, off by
//! default.

use serde::{Deserialize, Serialize};
use tauri::State;

use crate::error::CommandError;
use crate::service::EmbeddedService;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Preferences {
    /// A desktop notification when a registration fails or a device is refused.
    #[serde(default)]
    pub notify_failed_registrations: bool,
}

#[tauri::command]
pub fn get_preferences(service: State<'_, EmbeddedService>) -> Preferences {
    service.preferences()
}

#[tauri::command]
pub fn set_preferences(service: State<'_, EmbeddedService>, preferences: Preferences) -> Result<Preferences, CommandError> {
    service.set_preferences(preferences.clone()).map_err(|e| CommandError::file(format!("cannot save the preferences: {e}")))?;
    Ok(preferences)
}
