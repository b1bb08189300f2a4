//! "Show JSON": the raw document behind a view, folded away by default (never the primary view).

use leptos::prelude::*;
use serde::Serialize;

/// Pretty JSON of a value (empty on a serialisation failure, which plain data types do not have).
pub fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[component]
pub fn ShowJson(#[prop(into)] json: Signal<String>) -> impl IntoView {
    let open = RwSignal::new(false);
    view! {
        <div class="show-json">
            <button type="button" class="btn small link" data-testid="show-json" aria-expanded=move || open.get().to_string()
                on:click=move |_| open.update(|o| *o = !*o)>
                {move || if open.get() { "Hide JSON" } else { "Show JSON" }}
            </button>
            <Show when=move || open.get()>
                <pre class="json">{move || json.get()}</pre>
            </Show>
        </div>
    }
}
