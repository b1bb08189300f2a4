//! The list of enrollments or groups: one page of the search, empty states, the range shown and the pager.

use dps_console_model::document::{attestation_label, Document};
use dps_console_model::enrollment_form::FormKind;
use leptos::prelude::*;

use super::{words, PageState, Panel};
use crate::api::enrollments::PAGE_SIZE;
use crate::api::PageOf;
use crate::components::cells::{status_badge, time_cell};
use crate::components::loaded::{Load, Loaded};
use crate::components::pager::Pager;
use crate::components::status::EmptyState;

#[component]
pub fn DocList(state: PageState, list: Load<PageOf<Document>>) -> impl IntoView {
    let w = words(state.kind);
    let next_token = move || list.get().and_then(|r| r.ok()).and_then(|(_, next, _)| next);
    view! {
        <div class="list">
            <Loaded data=list what=w.title let:page>
                {
                    let (items, _, total) = page;
                    if items.is_empty() {
                        view! { <NothingListed kind=state.kind search=state.search.applied.get() /> }.into_any()
                    } else {
                        let label = state.pages.with(|p| p.range_label(PAGE_SIZE as usize, items.len(), total));
                        view! { <DocTable state=state items=items /> <p class="muted small">{label}</p> }.into_any()
                    }
                }
            </Loaded>
            <Pager prefix=w.prefix pages=state.pages next=Signal::derive(next_token) />
        </div>
    }
}

/// The empty list: what to do first, or that the search matched nothing.
#[component]
fn NothingListed(kind: FormKind, search: String) -> impl IntoView {
    let w = words(kind);
    if search.is_empty() {
        let hint = format!("Create one with “New {}”, or import a CSV or JSON file (the Export buttons write the format).", w.noun);
        view! { <EmptyState title=w.empty hint=hint /> }.into_any()
    } else {
        let title = format!("Nothing matches “{search}”.");
        view! { <EmptyState title=title hint="The search looks for the text anywhere in the id, ignoring case." /> }.into_any()
    }
}

#[component]
fn DocTable(state: PageState, items: Vec<Document>) -> impl IntoView {
    let w = words(state.kind);
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th>{w.id_label}</th>
                    {(state.kind == FormKind::Individual).then(|| view! { <th>"Device id"</th> })}
                    <th>"Attestation"</th>
                    <th>"Status"</th>
                    <th class="optional">"Hubs"</th>
                    <th class="optional">"Policy"</th>
                    <th>"Last updated"</th>
                </tr>
            </thead>
            <tbody>{items.into_iter().map(|d| view! { <DocRow state=state doc=d /> }).collect_view()}</tbody>
        </table>
    }
}

/// One row; a click (or Enter) opens the document's detail.
#[component]
fn DocRow(state: PageState, doc: Document) -> impl IntoView {
    let panel = state.panel;
    let doc_id = doc.id().to_string();
    let (click_id, key_id, sel_id, data_id) = (doc_id.clone(), doc_id.clone(), doc_id.clone(), doc_id.clone());
    let selected = move || matches!(panel.get(), Panel::Detail(ref s) if *s == sel_id);
    let device = match &doc {
        Document::Individual(e) => Some(e.device_id.clone().unwrap_or_default()),
        Document::Group(_) => None,
    };
    view! {
        <tr data-testid=state.id("row") data-id=data_id class="clickable" tabindex="0" class:selected=selected
            on:click=move |_| panel.set(Panel::Detail(click_id.clone()))
            on:keydown=move |ev| {
                if ev.key() == "Enter" {
                    panel.set(Panel::Detail(key_id.clone()));
                }
            }>
            <td class="mono">{doc_id}</td>
            {device.map(|dv| view! { <td class="mono">{dv}</td> })}
            <td>{attestation_label(doc.attestation().kind)}</td>
            <td>{status_badge(doc.enabled())}</td>
            <td class="optional">{doc.hubs().join(", ")}</td>
            <td class="optional">{doc.policy_label()}</td>
            {time_cell(doc.last_updated())}
        </tr>
    }
}
