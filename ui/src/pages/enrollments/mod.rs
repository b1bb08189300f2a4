//! Enrollments: the list (search, paging, count) and beside it one panel, the detail of a document or the
//! create/edit form; import and export. The Groups page uses the same views with [`FormKind::Group`]; test ids
//! then start with `group-` instead of `enrollment-`.
//!
//! - [`list`]: the list and its table; [`detail`]: a document with its actions (enable/disable, new keys,
//!   delete); [`facts`]: what the detail shows of it; [`form`]: the create/edit form; [`import_export`]: export
//!   and import. The calls are `crate::api::documents`.

mod detail;
mod facts;
mod form;
mod import_export;
mod list;

use dps_console_model::enrollment_form::{EnrollmentForm, FormKind};
use dps_console_model::paging::PageStack;
use leptos::prelude::*;

use self::detail::DetailPanel;
use self::form::FormPanel;
use self::import_export::{ReplaceSwitch, Transfer, TransferButtons, TransferStatus};
use self::list::DocList;
use crate::components::loaded::load;
use crate::components::search::DebouncedSearch;
use crate::pages::{Page, PageHeader};

/// The Enrollments page (individual enrollments).
#[component]
pub fn Enrollments() -> impl IntoView {
    view! { <EnrollmentsPage kind=FormKind::Individual /> }
}

/// Words and test-id prefixes of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    pub prefix: &'static str,
    pub title: &'static str,
    pub noun: &'static str,
    pub id_label: &'static str,
    pub empty: &'static str,
}

pub fn words(kind: FormKind) -> Words {
    match kind {
        FormKind::Individual => Words {
            prefix: "enrollment",
            title: "Enrollments",
            noun: "enrollment",
            id_label: "Registration id",
            empty: "No enrollments yet — create one or import a CSV.",
        },
        FormKind::Group => Words {
            prefix: "group",
            title: "Groups",
            noun: "enrollment group",
            id_label: "Group id",
            empty: "No enrollment groups yet — create one or import a CSV.",
        },
    }
}

/// What the panel beside the list shows.
#[derive(Debug, Clone, PartialEq)]
enum Panel {
    None,
    Detail(String),
    Form(Box<EnrollmentForm>),
}

/// The page's state the list, the panel and the import share.
#[derive(Clone, Copy)]
struct PageState {
    kind: FormKind,
    search: DebouncedSearch,
    pages: RwSignal<PageStack>,
    /// Bumped after a change, so the list is read again.
    refresh: RwSignal<u32>,
    panel: RwSignal<Panel>,
}

impl PageState {
    fn new(kind: FormKind) -> Self {
        Self {
            kind,
            search: DebouncedSearch::new(),
            pages: RwSignal::new(PageStack::default()),
            refresh: RwSignal::new(0),
            panel: RwSignal::new(Panel::None),
        }
    }

    fn changed(&self) {
        self.refresh.update(|n| *n += 1);
    }

    fn id(&self, s: &str) -> String {
        format!("{}-{s}", words(self.kind).prefix)
    }
}

#[component]
pub fn EnrollmentsPage(kind: FormKind) -> impl IntoView {
    let w = words(kind);
    let state = PageState::new(kind);
    let PageState { search, pages, refresh, panel, .. } = state;
    let list = load(move |c| {
        refresh.track();
        let (s, token) = (search.applied.get(), pages.with(PageStack::current));
        async move { c.documents_page(kind, &s, token).await }
    });
    let transfer = Transfer::new(kind, refresh);
    let on_search = search.on_input(move || pages.update(PageStack::reset));
    let total = move || {
        list.get().and_then(|r| r.ok()).map(|(items, _, total)| total.unwrap_or(items.len() as u64).to_string()).unwrap_or_default()
    };
    let page = if kind == FormKind::Group { Page::Groups } else { Page::Enrollments };

    view! {
        <section class="page">
            <PageHeader page=page>
                <button type="button" class="btn primary" data-testid=state.id("new")
                    on:click=move |_| panel.set(Panel::Form(Box::new(EnrollmentForm::new(kind))))>"New " {w.noun}</button>
                <TransferButtons transfer=transfer />
            </PageHeader>
            <div class="toolbar">
                <input type="search" class="search" data-testid=state.id("search") placeholder=format!("Search by {}", w.id_label.to_lowercase())
                    prop:value=move || search.input.get() on:input=on_search />
                <span class="muted">"Total: " <span data-testid=state.id("count")>{total}</span></span>
                <span class="spacer"></span>
                <ReplaceSwitch transfer=transfer />
            </div>
            <TransferStatus transfer=transfer />
            <div class="split" class:with-panel=move || panel.with(|p| *p != Panel::None)>
                <DocList state=state list=list />
                {move || match panel.get() {
                    Panel::None => ().into_any(),
                    Panel::Detail(doc_id) => view! { <DetailPanel state=state doc_id=doc_id /> }.into_any(),
                    Panel::Form(f) => view! { <FormPanel state=state form=*f /> }.into_any(),
                }}
            </div>
        </section>
    }
}
