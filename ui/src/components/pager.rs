//! Previous/next paging of a query (`x-ms-continuation`) over a stack of continuation tokens
//! (`dps_console_model::paging::PageStack`), with test ids `<prefix>-prev` and `<prefix>-next`.

use dps_console_model::paging::PageStack;
use leptos::prelude::*;

#[component]
pub fn Pager(
    #[prop(into)] prefix: String,
    /// The pages visited so far; the list reads its current token.
    pages: RwSignal<PageStack>,
    /// The continuation the current page's answer gave (`None`: it was the last page).
    #[prop(into)]
    next: Signal<Option<String>>,
) -> impl IntoView {
    let number = move || pages.with(PageStack::number);
    view! {
        <div class="pager">
            <button type="button" class="btn small" data-testid=format!("{prefix}-prev") disabled=move || number() <= 1
                on:click=move |_| pages.update(PageStack::prev)>"‹ Previous"</button>
            <span class="muted">{move || format!("Page {}", number())}</span>
            <button type="button" class="btn small" data-testid=format!("{prefix}-next") disabled=move || next.get().is_none()
                on:click=move |_| {
                    if let Some(t) = next.get_untracked() {
                        pages.update(|p| p.next(t));
                    }
                }>"Next ›"</button>
        </div>
    }
}
