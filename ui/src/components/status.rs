//! Loading and error states, so no page is ever blank.

use leptos::prelude::*;

use crate::api::ApiError;

#[component]
pub fn Loading(what: &'static str) -> impl IntoView {
    view! { <p class="muted" role="status">"Loading " {what} "…"</p> }
}

#[component]
pub fn ErrorPanel(error: ApiError) -> impl IntoView {
    let hint = match &error {
        ApiError::Service { status: 401, .. } | ApiError::Status { status: 401, .. } => "Set the Authorization header in Settings.",
        ApiError::Network(_) => "Is the service running? Check the base URL in Settings.",
        ApiError::Unavailable(_) => "Remove the cause, then start DPS Console again.",
        _ => "",
    };
    view! {
        <div class="error" role="alert">
            <strong>"The service did not answer as expected."</strong>
            <p>{error.to_string()}</p>
            <p class="muted">{hint}</p>
        </div>
    }
}
