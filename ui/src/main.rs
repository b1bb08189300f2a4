//! DPS Console's console: a Leptos client-side app. It talks to the service only through [`api`] (HTTP, when a
//! browser loads it from `dps serve`) or [`desktop`] (Tauri commands, inside the desktop shell).

mod api;
mod app;
mod components;
mod desktop;
mod pages;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
