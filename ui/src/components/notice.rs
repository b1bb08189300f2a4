//! Short notices ("Saved", "Deleted") shown for a few seconds at the bottom of the window. The app provides
//! [`Notices`] as a context; pages take it once (`use_notices()`) and call it from their handlers.

use std::time::Duration;

use leptos::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    id: u64,
    text: String,
    error: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Notices {
    list: RwSignal<Vec<Notice>>,
    next: RwSignal<u64>,
}

impl Notices {
    pub fn new() -> Self {
        Self { list: RwSignal::new(Vec::new()), next: RwSignal::new(0) }
    }

    fn push(&self, text: String, error: bool) {
        let id = self.next.get_untracked();
        self.next.set(id + 1);
        self.list.update(|l| l.push(Notice { id, text, error }));
        let list = self.list;
        set_timeout(move || list.update(|l| l.retain(|n| n.id != id)), Duration::from_secs(if error { 8 } else { 4 }));
    }

    pub fn info(&self, text: impl Into<String>) {
        self.push(text.into(), false);
    }

    pub fn error(&self, text: impl Into<String>) {
        self.push(text.into(), true);
    }
}

impl Default for Notices {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    /// The app's notices, for code that runs outside a component (event handlers, tasks).
    static APP_NOTICES: std::cell::Cell<Option<Notices>> = const { std::cell::Cell::new(None) };
}

/// Makes `notices` the app's: the context below the app and [`use_notices`] anywhere.
pub fn provide_notices(notices: Notices) {
    provide_context(notices);
    APP_NOTICES.with(|n| n.set(Some(notices)));
}

/// The app's notices (a fresh, unshown set outside the app).
pub fn use_notices() -> Notices {
    use_context::<Notices>().or_else(|| APP_NOTICES.with(|n| n.get())).unwrap_or_default()
}

#[component]
pub fn NoticeArea() -> impl IntoView {
    let notices = use_notices();
    view! {
        <div class="notices" aria-live="polite" data-testid="notices">
            <For each=move || notices.list.get() key=|n| n.id let:n>
                <div class="notice" class:bad=n.error role="status">{n.text.clone()}</div>
            </For>
        </div>
    }
}
