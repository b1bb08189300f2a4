//! The application shell: header, navigation, and the page the location's hash names (`#/enrollments`), so a
//! page can be bookmarked and reloaded wherever the console is served (`dps serve`, `tauri://`, a file server).

use leptos::prelude::*;

use crate::api::ApiClient;
use crate::components::nav::Nav;
use crate::pages::{settings, Page};

fn page_from_location() -> Page {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    Page::from_hash(&hash)
}

#[component]
pub fn App() -> impl IntoView {
    let page = RwSignal::new(page_from_location());
    // The listener lives as long as the page: the app is never unmounted.
    let _listener = window_event_listener(leptos::ev::hashchange, move |_| page.set(page_from_location()));

    // How to reach the service API; the Settings page edits it, every page reads it.
    let connection = RwSignal::new(settings::load_connection());
    provide_context::<RwSignal<ApiClient>>(connection);

    view! {
        <header class="topbar">
            <h1>"DPS Console"</h1>
            <span class="subtitle">"local Azure DPS-compatible provisioning service"</span>
        </header>
        <div class="layout">
            <Nav current=page />
            <main class="content">{move || page.get().view()}</main>
        </div>
    }
}
