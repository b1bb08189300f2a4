//! The application shell: sign-in (browser only), top bar (theme, sign-out), navigation, and the page the
//! location's hash names (`#/enrollments`), so a page can be bookmarked and reloaded.
//!
//! In a browser the console is served by the service's console port and signs in with the admin password; the
//! session token lives in `sessionStorage` (`dps-console-session`), never in `localStorage`, and a 401 brings the
//! sign-in page back. In the desktop shell the requests go through the shell, which is signed in already.

use dps_proto::ConsoleSession;
use leptos::prelude::*;

use crate::api::{ApiClient, Transport, UNAUTHORIZED_EVENT};
use crate::components::nav::Nav;
use crate::components::notice::{provide_notices, NoticeArea, Notices};
use crate::desktop;
use crate::pages::login::Login;
use crate::pages::Page;

const SESSION_KEY: &str = "dps-console-session";
const THEME_KEY: &str = "dps-console-theme";

fn page_from_location() -> Page {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    Page::from_hash(&hash)
}

fn session_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.session_storage().ok().flatten())
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// The saved session's token (empty when there is none).
fn load_token() -> String {
    session_storage()
        .and_then(|s| s.get_item(SESSION_KEY).ok().flatten())
        .and_then(|v| serde_json::from_str::<ConsoleSession>(&v).ok())
        .map(|s| s.token)
        .unwrap_or_default()
}

pub fn save_session(session: &ConsoleSession) {
    if let (Some(s), Ok(v)) = (session_storage(), serde_json::to_string(session)) {
        let _ = s.set_item(SESSION_KEY, &v);
    }
}

fn clear_session() {
    if let Some(s) = session_storage() {
        let _ = s.clear();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Theme {
    Light,
    Dark,
}

impl Theme {
    fn name(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
        }
    }
}

/// The saved theme, else the system's preference.
fn initial_theme() -> Theme {
    match local_storage().and_then(|s| s.get_item(THEME_KEY).ok().flatten()).as_deref() {
        Some("dark") => Theme::Dark,
        Some("light") => Theme::Light,
        _ => {
            let dark =
                web_sys::window().and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten()).is_some_and(|m| m.matches());
            if dark {
                Theme::Dark
            } else {
                Theme::Light
            }
        }
    }
}

fn apply_theme(theme: Theme) {
    if let Some(html) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) {
        let _ = html.set_attribute("data-theme", theme.name());
    }
}

#[component]
pub fn App() -> impl IntoView {
    let in_desktop = desktop::is_desktop();
    let client = RwSignal::new(if in_desktop { ApiClient::desktop() } else { ApiClient::browser(load_token()) });
    provide_context::<RwSignal<ApiClient>>(client);
    provide_notices(Notices::new());

    let theme = RwSignal::new(initial_theme());
    Effect::new(move |_| apply_theme(theme.get()));

    // The service refused the session (expired, password changed): back to sign-in.
    let _unauthorized = window_event_listener_untyped(UNAUTHORIZED_EVENT, move |_| {
        clear_session();
        client.set(ApiClient::browser(""));
    });

    let signed_in = move || {
        client.with(|c| match &c.transport {
            Transport::Desktop => true,
            Transport::Browser { token } => !token.is_empty(),
        })
    };

    view! {
        <Show when=signed_in fallback=|| view! { <Login /> }>
            <Shell theme=theme />
        </Show>
        <NoticeArea />
    }
}

#[component]
fn Shell(theme: RwSignal<Theme>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let page = RwSignal::new(page_from_location());
    // The listener lives as long as the shell: it goes with sign-out.
    let _hash = window_event_listener(leptos::ev::hashchange, move |_| page.set(page_from_location()));

    let toggle_theme = move |_| {
        let next = if theme.get_untracked() == Theme::Dark { Theme::Light } else { Theme::Dark };
        if let Some(s) = local_storage() {
            let _ = s.set_item(THEME_KEY, next.name());
        }
        theme.set(next);
    };
    let sign_out = move |_| {
        let c = client.get_untracked();
        leptos::task::spawn_local(async move {
            // The session ends here whatever the service answers.
            let _ = c.logout().await;
            clear_session();
            client.set(ApiClient::browser(""));
        });
    };
    let browser = !client.get_untracked().is_desktop();

    view! {
        <header class="topbar">
            <h1>"DPS Console"</h1>
            <span class="subtitle">"local Azure DPS-compatible provisioning service"</span>
            <span class="spacer"></span>
            <button type="button" class="btn topbar-btn" data-testid="theme-toggle" on:click=toggle_theme
                title="Switch between the light and the dark theme">
                {move || if theme.get() == Theme::Dark { "☀ Light" } else { "☾ Dark" }}
            </button>
            {browser.then(|| view! {
                <button type="button" class="btn topbar-btn" data-testid="signout" on:click=sign_out>"Sign out"</button>
            })}
        </header>
        <div class="layout">
            <Nav current=page />
            <main class="content">{move || page.get().view()}</main>
        </div>
    }
}
