//! The sidebar: one link per page (`data-testid="nav-<page>"`), the current one marked.

use leptos::prelude::*;

use crate::pages::Page;

#[component]
pub fn Nav(current: RwSignal<Page>) -> impl IntoView {
    view! {
        <nav class="sidebar" aria-label="Pages">
            <ul>
                {Page::ALL
                    .into_iter()
                    .map(|p| {
                        view! {
                            <li>
                                <a href=p.href() data-testid=format!("nav-{}", p.slug()) class:active=move || current.get() == p
                                    aria-current=move || (current.get() == p).then_some("page")>
                                    {p.title()}
                                </a>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
        </nav>
    }
}
