//! One document beside the list: its facts, the group's derived key and registrations, its JSON, and the actions
//! (edit, enable/disable, new keys, delete) — each a Leptos action on the document shown.

use dps_console_model::document::Document;
use dps_console_model::enrollment_form::FormKind;
use leptos::prelude::*;

use super::facts::DocFacts;
use super::{words, PageState, Panel};
use crate::api::{ApiClient, ApiError};
use crate::components::confirm::ConfirmDialog;
use crate::components::json::ShowJson;
use crate::components::loaded::{load, Loaded};
use crate::components::notice::use_notices;
use crate::components::status::MaybeError;
use crate::pages::groups::{DerivedKey, GroupRegistrations};

/// What the detail's buttons do to the document shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Toggle,
    Renew,
    Delete,
}

/// The action behind the buttons: applies a change to a document, tells the user, and refreshes the views.
fn change_action(state: PageState, reload: RwSignal<u32>) -> Action<(Change, Document), Result<(), ApiError>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    Action::new_local(move |(change, d): &(Change, Document)| {
        let (change, d, c) = (*change, d.clone(), client.get_untracked());
        async move {
            let r = match change {
                Change::Toggle => c.put_document(&d.with_enabled(!d.enabled())).await.map(|_| ()),
                Change::Renew => c.renew_document_keys(&d).await,
                Change::Delete => c.delete_document(&d).await,
            };
            if r.is_ok() {
                notices.info(match change {
                    Change::Toggle => format!("{} {}", d.id(), if d.enabled() { "disabled" } else { "enabled" }),
                    Change::Renew => format!("New keys for {}", d.id()),
                    Change::Delete => format!("Deleted {}", d.id()),
                });
                match change {
                    Change::Delete => state.panel.set(Panel::None),
                    _ => reload.update(|n| *n += 1),
                }
            }
            state.changed();
            r
        }
    })
}

#[component]
pub fn DetailPanel(state: PageState, doc_id: String) -> impl IntoView {
    let (kind, panel) = (state.kind, state.panel);
    let w = words(kind);
    let reload = RwSignal::new(0u32);
    let lookup = doc_id.clone();
    let doc = load(move |c| {
        reload.track();
        let id = lookup.clone();
        async move { c.document(kind, &id).await }
    });
    let change = change_action(state, reload);
    let (changed, pending) = (change.value(), change.pending());
    // The actions apply to the document shown, with its etag.
    let apply = Callback::new(move |what: Change| {
        if let Some(Ok(d)) = doc.get_untracked() {
            change.clear();
            change.dispatch_local((what, d));
        }
    });
    let (confirm_delete, confirm_renew) = (RwSignal::new(false), RwSignal::new(false));
    // Whether the keys are shown, kept while the document is read again after a change.
    let revealed = RwSignal::new(false);

    view! {
        <aside class="card side-panel" data-testid=state.id("detail")>
            <div class="panel-head">
                <h3 class="mono">{doc_id.clone()}</h3>
                <button type="button" class="btn small" title="Close" on:click=move |_| panel.set(Panel::None)>"Close"</button>
            </div>
            <MaybeError error=Signal::derive(move || changed.get().and_then(Result::err)) />
            <Loaded data=doc what=w.noun let:d>
                <DetailBody state=state doc=d pending=pending apply=apply
                    confirm_delete=confirm_delete confirm_renew=confirm_renew revealed=revealed />
            </Loaded>
            <ConfirmDialog
                open=confirm_delete
                title=format!("Delete {}", w.noun)
                message=format!("Delete {} '{}'? Devices that use it can no longer register.", w.noun, doc_id)
                on_confirm=Callback::new(move |()| apply.run(Change::Delete))
            />
            <ConfirmDialog
                open=confirm_renew
                title="Regenerate keys"
                message=format!(
                    "New primary and secondary keys for '{}'. Devices using the old keys can no longer register until they are given the new ones.",
                    doc_id
                )
                confirm_label="Regenerate"
                on_confirm=Callback::new(move |()| apply.run(Change::Renew))
            />
        </aside>
    }
}

/// The loaded document: the action buttons, its facts, the group's extras and the JSON.
#[component]
fn DetailBody(
    state: PageState,
    doc: Document,
    pending: Memo<bool>,
    apply: Callback<Change>,
    confirm_delete: RwSignal<bool>,
    confirm_renew: RwSignal<bool>,
    revealed: RwSignal<bool>,
) -> impl IntoView {
    let group = state.kind == FormKind::Group;
    let enabled = doc.enabled();
    let has_keys = doc.keys().is_some();
    let edit = doc.to_form();
    let doc_id = doc.id().to_string();
    let json = doc.to_json_pretty();
    let group_key = doc.keys().map(|k| k.0).filter(|_| group);
    view! {
        <div class="panel-actions">
            <button type="button" class="btn" data-testid=state.id("edit")
                on:click=move |_| state.panel.set(Panel::Form(Box::new(edit.clone())))>"Edit"</button>
            <button type="button" class="btn" data-testid=state.id("toggle") disabled=move || pending.get()
                on:click=move |_| apply.run(Change::Toggle)>
                {if enabled { "Disable" } else { "Enable" }}
            </button>
            {has_keys.then(|| view! {
                <button type="button" class="btn" data-testid=state.id("renew-key") disabled=move || pending.get()
                    on:click=move |_| confirm_renew.set(true)>"Regenerate keys"</button>
            })}
            <button type="button" class="btn danger" data-testid=state.id("delete") disabled=move || pending.get()
                on:click=move |_| confirm_delete.set(true)>"Delete"</button>
        </div>
        <DocFacts doc=doc revealed=revealed />
        {group_key.map(|k| view! { <DerivedKey group_key=k /> })}
        {group.then(|| view! { <GroupRegistrations group_id=doc_id /> })}
        <ShowJson json=json />
    }
}
