//! DPS Console's console: a Leptos client-side app. It reaches the service only through [`api`]: `fetch` to the
//! origin that served it (a browser on the service's console port) or the desktop shell's `api_request` command
//! ([`desktop`]). The logic that needs no browser (validation, charts' numbers, log filters, error help) is in
//! `dps-console-model`, tested on the host.

mod api;
mod app;
mod components;
mod desktop;
mod pages;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
