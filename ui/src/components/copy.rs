//! A button that puts a text on the clipboard (`navigator.clipboard`) and says so for a moment.

use std::time::Duration;

use leptos::prelude::*;
use wasm_bindgen::JsValue;

/// Copies `text`; false when the page has no clipboard access (not a secure context).
pub fn copy_text(text: &str) -> bool {
    let Some(navigator) = web_sys::window().map(|w| w.navigator()) else { return false };
    if !js_sys::Reflect::has(&navigator, &JsValue::from_str("clipboard")).unwrap_or(false) {
        return false;
    }
    let _ = navigator.clipboard().write_text(text);
    true
}

#[component]
pub fn CopyButton(
    #[prop(into)] text: Signal<String>,
    #[prop(optional, into)] testid: Option<String>,
    #[prop(optional, into)] label: Option<String>,
) -> impl IntoView {
    let label = label.unwrap_or_else(|| "Copy".into());
    let state = RwSignal::new(None::<bool>);
    let click = move |_| {
        let ok = copy_text(&text.get_untracked());
        state.set(Some(ok));
        set_timeout(move || state.set(None), Duration::from_millis(1500));
    };
    view! {
        <button type="button" class="btn small" data-testid=testid title="Copy to the clipboard" on:click=click>
            {move || match state.get() {
                None => label.clone(),
                Some(true) => "Copied".into(),
                Some(false) => "Copy failed".into(),
            }}
        </button>
    }
}
