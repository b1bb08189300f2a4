//! The tray icon: the service's status as the first (disabled) menu line and the tooltip, "Open console"
//! and "Quit". Kept up to date from the embedded service's status.

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{MouseButton, TrayIconBuilder, TrayIconEvent};
use tauri::{AppHandle, Manager};

use crate::service::EmbeddedService;

fn show_window(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}

pub fn build(app: &AppHandle) -> tauri::Result<()> {
    let service = app.state::<EmbeddedService>();
    let status = MenuItem::with_id(app, "status", service.subscribe().borrow().summary(), false, None::<&str>)?;
    let open = MenuItem::with_id(app, "open", "Open console", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, "quit", "Quit DPS Console", true, None::<&str>)?;
    let menu = Menu::with_items(app, &[&status, &PredefinedMenuItem::separator(app)?, &open, &quit])?;
    let mut builder =
        TrayIconBuilder::with_id("main").menu(&menu).tooltip("DPS Console").on_menu_event(|app, event| match event.id().as_ref() {
            "open" => show_window(app),
            "quit" => app.exit(0),
            _ => {}
        });
    if let Some(icon) = app.default_window_icon() {
        builder = builder.icon(icon.clone());
    }
    let tray = builder
        .on_tray_icon_event(|tray, event| {
            if let TrayIconEvent::DoubleClick { button: MouseButton::Left, .. } = event {
                show_window(tray.app_handle());
            }
        })
        .build(app)?;
    let mut rx = service.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            let line = rx.borrow_and_update().summary();
            let _ = status.set_text(&line);
            let _ = tray.set_tooltip(Some(format!("DPS Console — {line}")));
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
    Ok(())
}
