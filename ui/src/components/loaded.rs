//! How every page loads its data: a [`Load`] (a `LocalResource` of one service call, read again with
//! `refetch`, which keeps showing the last answer until the next one arrives) shown through [`Loaded`]: "Loading
//! …" until the first answer, the error panel for an error, the content for data.

use std::future::Future;
use std::time::Duration;

use leptos::prelude::*;

use crate::api::{ApiClient, ApiError};
use crate::components::status::{ErrorPanel, Loading};

/// The answer of one service call, loaded when the page opens and again on `refetch`.
pub type Load<T> = LocalResource<Result<T, ApiError>>;

/// Loads `call` with the page's client (again when the client changes, or on `refetch`).
pub fn load<T, Fu>(call: impl Fn(ApiClient) -> Fu + 'static) -> Load<T>
where
    T: 'static,
    Fu: Future<Output = Result<T, ApiError>> + 'static,
{
    let client = expect_context::<RwSignal<ApiClient>>();
    LocalResource::new(move || call(client.get()))
}

/// Reads `data` again every `period` while the component that called it lives.
pub fn refetch_every<T: 'static>(data: LocalResource<T>, period: Duration) {
    if let Ok(handle) = set_interval_with_handle(move || data.refetch(), period) {
        on_cleanup(move || handle.clear());
    }
}

/// `data` as the page shows it: loading, its error, or `children` of the data.
#[component]
pub fn Loaded<T, V, F>(data: Load<T>, #[prop(into)] what: String, children: F) -> impl IntoView
where
    T: Clone + 'static,
    V: IntoView + 'static,
    F: Fn(T) -> V + Send + Sync + 'static,
{
    move || match data.get() {
        None => view! { <Loading what=what.clone() /> }.into_any(),
        Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
        Some(Ok(v)) => children(v).into_any(),
    }
}
