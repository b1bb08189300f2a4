//! DPS Console's desktop shell: starts the provisioning service in-process (the same start-up as
//! `dps serve`, same data directory and configuration) and shows the console (`ui/`) in a window. The
//! window's API calls go to the service in-process (`commands::api`); the shell adds a tray icon with the
//! service's status, native file dialogs and optional notifications on failed registrations.

mod commands;
mod error;
mod notify;
mod service;
mod tray;

use tauri::Manager;

use crate::service::EmbeddedService;

/// The context build.rs generated (config, embedded ui/dist, icons, capabilities). The generated code unwraps
/// parses of constants tauri-build wrote itself.
#[allow(clippy::unwrap_used)]
fn context() -> tauri::Context {
    tauri::tauri_build_context!()
}

pub fn run() {
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .manage(EmbeddedService::new())
        .invoke_handler(tauri::generate_handler![
            commands::service::service_info,
            commands::api::api_request,
            commands::files::save_file,
            commands::files::open_files,
            commands::preferences::get_preferences,
            commands::preferences::set_preferences,
        ])
        .setup(|app| {
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move { handle.state::<EmbeddedService>().start().await });
            // A desktop without a tray (some Wayland sessions, Xvfb) still gets the window.
            if let Err(e) = tray::build(app.handle()) {
                tracing::warn!(error = %e, "no tray icon");
            }
            notify::spawn(app.handle().clone());
            Ok(())
        })
        .build(context());
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            eprintln!("DPS Console: cannot open the window: {e}");
            std::process::exit(1);
        }
    };
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            tauri::async_runtime::block_on(handle.state::<EmbeddedService>().stop());
        }
    });
}
