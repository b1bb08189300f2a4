//! DPS Console's desktop shell: starts the provisioning service in-process (the same start-up as
//! `dps serve`, same data directory and configuration) and shows the console (`ui/`) in a window.

mod commands;
mod error;
mod service;

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
        .manage(EmbeddedService::new())
        .invoke_handler(tauri::generate_handler![commands::service::service_info])
        .setup(|app| {
            let handle = app.handle().clone();
            tauri::async_runtime::spawn(async move { handle.state::<EmbeddedService>().start().await });
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
