//! Native file dialogs for the console's imports, exports and certificate files: `save_file` writes what
//! the console made (CSV, JSON, PEM, logs) where the user chooses; `open_files` reads what the user picks.
//! Contents cross as text or base64 (certificates may be DER).

use base64::Engine as _;
use serde::Serialize;
use tauri::AppHandle;
use tauri_plugin_dialog::{DialogExt, FilePath};
use tokio::sync::oneshot;

use crate::error::CommandError;

/// A file the user picked.
#[derive(Debug, Serialize)]
pub struct OpenedFile {
    pub name: String,
    /// The bytes, base64 (standard alphabet).
    pub base64: String,
}

fn local_path(p: FilePath) -> Result<std::path::PathBuf, CommandError> {
    p.into_path().map_err(|e| CommandError::file(format!("not a local file: {e}")))
}

/// Asks where to save `contents` (proposing `default_name`) and writes it. `None`: the user cancelled.
#[tauri::command]
pub async fn save_file(app: AppHandle, default_name: String, contents: String) -> Result<Option<String>, CommandError> {
    let (tx, rx) = oneshot::channel();
    app.dialog().file().set_file_name(&default_name).save_file(move |p| {
        let _ = tx.send(p);
    });
    let Some(path) = rx.await.ok().flatten() else { return Ok(None) };
    let path = local_path(path)?;
    tokio::fs::write(&path, contents.as_bytes()).await.map_err(|e| CommandError::file(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(path.display().to_string()))
}

/// Lets the user pick files (`extensions` without dots filter them; empty = any). Empty: cancelled.
#[tauri::command]
pub async fn open_files(app: AppHandle, multiple: bool, extensions: Vec<String>) -> Result<Vec<OpenedFile>, CommandError> {
    let (tx, rx) = oneshot::channel();
    let mut dialog = app.dialog().file();
    if !extensions.is_empty() {
        let ext: Vec<&str> = extensions.iter().map(String::as_str).collect();
        dialog = dialog.add_filter("Files", &ext);
    }
    if multiple {
        dialog.pick_files(move |p| {
            let _ = tx.send(p.unwrap_or_default());
        });
    } else {
        dialog.pick_file(move |p| {
            let _ = tx.send(p.into_iter().collect());
        });
    }
    let picked = rx.await.unwrap_or_default();
    let mut out = Vec::with_capacity(picked.len());
    for p in picked {
        let path = local_path(p)?;
        let bytes = tokio::fs::read(&path).await.map_err(|e| CommandError::file(format!("cannot read {}: {e}", path.display())))?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        out.push(OpenedFile { name, base64: base64::engine::general_purpose::STANDARD.encode(bytes) });
    }
    Ok(out)
}
