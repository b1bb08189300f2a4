//! Settings: how the console reaches the service API (base URL and `Authorization` value), kept in the
//! browser's local storage.

use leptos::prelude::*;

use crate::api::ApiClient;

const BASE_URL_KEY: &str = "dps-console.baseUrl";
const AUTHORIZATION_KEY: &str = "dps-console.authorization";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window().and_then(|w| w.local_storage().ok().flatten())
}

/// The saved connection; empty values mean "the origin that served the console, no Authorization header".
pub fn load_connection() -> ApiClient {
    let get = |key: &str| storage().and_then(|s| s.get_item(key).ok().flatten()).unwrap_or_default();
    ApiClient::new(get(BASE_URL_KEY), get(AUTHORIZATION_KEY))
}

fn save_connection(c: &ApiClient) {
    if let Some(s) = storage() {
        let _ = s.set_item(BASE_URL_KEY, &c.base_url);
        let _ = s.set_item(AUTHORIZATION_KEY, &c.authorization);
    }
}

#[component]
pub fn Settings() -> impl IntoView {
    let connection = expect_context::<RwSignal<ApiClient>>();
    let base_url = RwSignal::new(connection.get_untracked().base_url);
    let authorization = RwSignal::new(connection.get_untracked().authorization);
    let saved = RwSignal::new(false);
    let save = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let c = ApiClient::new(base_url.get(), authorization.get());
        save_connection(&c);
        connection.set(c);
        saved.set(true);
    };

    view! {
        <section class="page">
            <h2>"Settings"</h2>
            <form class="card" on:submit=save>
                <label for="base-url">"Service API base URL"</label>
                <input id="base-url" type="url" placeholder="(the origin that served this page)"
                    prop:value=move || base_url.get()
                    on:input=move |ev| { base_url.set(event_target_value(&ev)); saved.set(false); } />
                <label for="authorization">"Authorization header"</label>
                <input id="authorization" type="password" placeholder="SharedAccessSignature sr=…&sig=…&se=…&skn=…"
                    prop:value=move || authorization.get()
                    on:input=move |ev| { authorization.set(event_target_value(&ev)); saved.set(false); } />
                <button type="submit">"Save"</button>
                <Show when=move || saved.get()>
                    <span class="muted">"Saved."</span>
                </Show>
            </form>
        </section>
    }
}
