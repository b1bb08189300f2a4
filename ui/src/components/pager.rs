//! Previous/next paging of a query (`x-ms-continuation`), with test ids `<prefix>-prev` and `<prefix>-next`.

use leptos::prelude::*;

#[component]
pub fn Pager(
    #[prop(into)] prefix: String,
    /// 0-based page number.
    #[prop(into)]
    page: Signal<usize>,
    #[prop(into)] has_next: Signal<bool>,
    on_prev: Callback<()>,
    on_next: Callback<()>,
) -> impl IntoView {
    view! {
        <div class="pager">
            <button type="button" class="btn small" data-testid=format!("{prefix}-prev") disabled=move || page.get() == 0
                on:click=move |_| on_prev.run(())>"‹ Previous"</button>
            <span class="muted">{move || format!("Page {}", page.get() + 1)}</span>
            <button type="button" class="btn small" data-testid=format!("{prefix}-next") disabled=move || !has_next.get()
                on:click=move |_| on_next.run(())>"Next ›"</button>
        </div>
    }
}
