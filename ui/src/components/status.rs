//! Loading, empty and error states, so no page is ever blank. The error panel names the error code, the
//! status and the service's message, and explains it in plain words (`dps_console_model::error_help`).

use dps_console_model::error_help::{self, Help};
use leptos::prelude::*;

use crate::api::ApiError;

#[component]
pub fn Loading(#[prop(into)] what: String) -> impl IntoView {
    view! { <p class="muted loading" role="status">"Loading " {what} "…"</p> }
}

/// Nothing to show yet: what this place is for and what to do next.
#[component]
pub fn EmptyState(#[prop(into)] title: String, #[prop(into)] hint: String, #[prop(optional)] children: Option<Children>) -> impl IntoView {
    view! {
        <div class="empty" data-testid="empty-state">
            <strong>{title}</strong>
            <p>{hint}</p>
            {children.map(|c| c())}
        </div>
    }
}

fn code_and_help(error: &ApiError) -> (String, Help) {
    match error {
        ApiError::Service { details, .. } => (details.error_code.to_string(), error_help::for_error(details.error_code, &details.message)),
        ApiError::Status { status, .. } => (status.to_string(), error_help::for_status(*status)),
        ApiError::Network(m) => ("network".into(), error_help::for_network_message(m)),
        ApiError::Decode(_) => ("decode".into(), error_help::for_status(0)),
        ApiError::Unavailable(_) => ("unavailable".into(), error_help::unavailable()),
    }
}

#[component]
pub fn ErrorPanel(#[prop(into)] error: ApiError) -> impl IntoView {
    let (code, help) = code_and_help(&error);
    let status = error.status().map(|s| format!("HTTP {s}"));
    let (message, tracking) = match &error {
        ApiError::Service { details, .. } => (details.message.clone(), Some(details.tracking_id.clone()).filter(|t| !t.is_empty())),
        other => (other.to_string(), None),
    };
    view! {
        <div class="error" role="alert" data-testid="error-panel">
            <div class="error-head">
                <strong>{help.title}</strong>
                <span class="badge bad" data-testid="error-code">{code}</span>
                {status.map(|s| view! { <span class="muted">{s}</span> })}
            </div>
            <p class="error-message">{message}</p>
            <p class="error-help" data-testid="error-help">
                <span>{help.cause}</span>
                " "
                <span class="fix">{help.fix}</span>
            </p>
            {tracking.map(|t| view! { <p class="muted small">"Tracking id: " <code>{t}</code></p> })}
        </div>
    }
}

/// An optional error, shown when set.
#[component]
pub fn MaybeError(#[prop(into)] error: Signal<Option<ApiError>>) -> impl IntoView {
    move || error.get().map(|e| view! { <ErrorPanel error=e /> })
}
