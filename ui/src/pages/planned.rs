//! Pages whose content arrives with later issues: they say so instead of showing an empty screen.

use leptos::prelude::*;

use super::Page;

#[component]
pub fn Planned(page: Page) -> impl IntoView {
    let cli = match page {
        Page::Enrollments => "dps enrollment list / dps enrollment-group list",
        Page::Registrations => "dps registration list",
        Page::Hubs => "dps hub list",
        Page::Certificates => "dps ca list",
        _ => "dps serve --log debug",
    };
    view! {
        <section class="page">
            <h2>{page.title()}</h2>
            <p class="muted">"This page is not in the console yet. Meanwhile: " <code>{cli}</code></p>
        </section>
    }
}
