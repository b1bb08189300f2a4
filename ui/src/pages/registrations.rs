//! Registrations: every registration record (search, paging), and for one record the decision trace (how its
//! hub was chosen) and deletion (the device gets a fresh assignment at its next registration).

use dps_console_model::paging::PageStack;
use dps_console_model::trace::trace_steps;
use dps_proto::DeviceRegistrationState;
use leptos::prelude::*;

use crate::api::enrollments::PAGE_SIZE;
use crate::api::{ApiClient, ApiError};
use crate::components::cells::time_cell;
use crate::components::confirm::ConfirmDialog;
use crate::components::json::ShowJson;
use crate::components::loaded::{load, Loaded};
use crate::components::notice::use_notices;
use crate::components::pager::Pager;
use crate::components::search::DebouncedSearch;
use crate::components::status::{EmptyState, MaybeError};
use crate::pages::{Page, PageHeader};

fn status_class(status: &str) -> &'static str {
    match status {
        "assigned" => "badge ok",
        "failed" => "badge bad",
        "disabled" => "badge warn",
        _ => "badge",
    }
}

/// The registration id after `#/registrations/`, if any.
fn id_from_location() -> Option<String> {
    let hash = web_sys::window().and_then(|w| w.location().hash().ok()).unwrap_or_default();
    let rest = hash.trim_start_matches('#').trim_start_matches('/').strip_prefix("registrations/")?;
    let id = js_sys::decode_uri_component(rest).ok().map(String::from).unwrap_or_else(|| rest.to_string());
    Some(id).filter(|s| !s.is_empty())
}

#[component]
pub fn Registrations() -> impl IntoView {
    let search = DebouncedSearch::new();
    let pages = RwSignal::new(PageStack::default());
    let refresh = RwSignal::new(0u32);
    // `#/registrations/<id>` (the enrollment detail's "decision trace" link) opens that record's trace.
    let selected = RwSignal::new(id_from_location());

    let list = load(move |c| {
        refresh.track();
        let s = search.applied.get();
        let token = pages.with(PageStack::current);
        async move { c.registrations_page(&s, token).await }
    });
    let on_search = search.on_input(move || pages.update(PageStack::reset));
    let total = move || {
        list.get().and_then(|r| r.ok()).map(|(items, _, total)| total.unwrap_or(items.len() as u64).to_string()).unwrap_or_default()
    };
    let next_token = move || list.get().and_then(|r| r.ok()).and_then(|(_, next, _)| next);

    view! {
        <section class="page">
            <PageHeader page=Page::Registrations />
            <div class="toolbar">
                <input type="search" class="search" data-testid="registration-search" placeholder="Search by registration id"
                    prop:value=move || search.input.get() on:input=on_search />
                <span class="muted">"Total: " <span data-testid="registration-count">{total}</span></span>
            </div>
            <div class="split" class:with-panel=move || selected.with(Option::is_some)>
                <div class="list">
                    <Loaded data=list what="registrations" let:page>
                        {
                            let (items, _, total) = page;
                            if items.is_empty() {
                                view! { <NoRegistrations search=search.applied.get() /> }.into_any()
                            } else {
                                let label = pages.with(|p| p.range_label(PAGE_SIZE as usize, items.len(), total));
                                view! { <RegistrationTable items=items selected=selected /> <p class="muted">{label}</p> }.into_any()
                            }
                        }
                    </Loaded>
                    <Pager prefix="registration" pages=pages next=Signal::derive(next_token) />
                </div>
                {move || selected.get().map(|id| view! { <TracePanel id=id selected=selected refresh=refresh /> })}
            </div>
        </section>
    }
}

/// The empty list: how a device gets here, or that the search matched nothing.
#[component]
fn NoRegistrations(search: String) -> impl IntoView {
    if search.is_empty() {
        view! {
            <EmptyState
                title="No device has registered yet."
                hint="Create an enrollment (Enrollments or Groups), then start a device with the ID scope from the Overview, its registration id and its key (an Azure IoT device SDK, or `dps bench` for a load test)."
            />
        }
        .into_any()
    } else {
        let title = format!("No registration matches “{search}”.");
        view! { <EmptyState title=title hint="The search looks for the text anywhere in the registration id, ignoring case." /> }.into_any()
    }
}

#[component]
fn RegistrationTable(items: Vec<DeviceRegistrationState>, selected: RwSignal<Option<String>>) -> impl IntoView {
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th>"Registration id"</th>
                    <th>"Status"</th>
                    <th class="optional">"Substatus"</th>
                    <th>"Assigned hub"</th>
                    <th class="optional">"Device id"</th>
                    <th>"Last updated"</th>
                </tr>
            </thead>
            <tbody>
                {items
                    .into_iter()
                    .map(|r| {
                        let id = r.registration_id.clone().unwrap_or_default();
                        let (click_id, sel_id) = (id.clone(), id.clone());
                        let status = r.status.map(|s| s.as_str()).unwrap_or("unknown");
                        let data_id = id.clone();
                        view! {
                            <tr data-testid="registration-row" data-id=data_id class="clickable" tabindex="0"
                                class:selected=move || selected.get().as_deref() == Some(sel_id.as_str())
                                on:click={
                                    let id = click_id.clone();
                                    move |_| selected.set(Some(id.clone()))
                                }
                                on:keydown=move |ev| {
                                    if ev.key() == "Enter" {
                                        selected.set(Some(click_id.clone()));
                                    }
                                }>
                                <td class="mono">{id}</td>
                                <td>
                                    <span class=status_class(status)>{status}</span>
                                    {r.error_code.map(|c| view! { <span class="muted">" " {c}</span> })}
                                </td>
                                <td class="optional">{r.substatus.map(|s| s.as_str()).unwrap_or("")}</td>
                                <td>{r.assigned_hub.clone().unwrap_or_default()}</td>
                                <td class="mono optional">{r.device_id.clone().unwrap_or_default()}</td>
                                {time_cell(r.last_updated_date_time_utc)}
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

/// What the trace panel's buttons do to the registration record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Reprovision,
    Delete,
}

/// The action behind the buttons: re-provisions or deletes the record, tells the user, refreshes the views.
fn change_action(
    selected: RwSignal<Option<String>>,
    refresh: RwSignal<u32>,
    reread: RwSignal<u32>,
) -> Action<(Change, String), Result<(), ApiError>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    Action::new_local(move |(change, id): &(Change, String)| {
        let (change, id, c) = (*change, id.clone(), client.get_untracked());
        async move {
            match change {
                Change::Delete => {
                    c.delete_registration(&id, None).await?;
                    notices.info(format!("Deleted the registration of {id}"));
                    selected.set(None);
                }
                Change::Reprovision => {
                    let answer = c.reprovision_registration(&id).await?;
                    let hub = answer["registrationState"]["assignedHub"].as_str().unwrap_or("no hub").to_owned();
                    notices.info(format!("Re-provisioned {id}: {hub}"));
                    reread.update(|n| *n += 1);
                }
            }
            refresh.update(|n| *n += 1);
            Ok(())
        }
    })
}

#[component]
fn TracePanel(id: String, selected: RwSignal<Option<String>>, refresh: RwSignal<u32>) -> impl IntoView {
    let lookup = id.clone();
    // Bumped after a re-provision, so the trace is read again.
    let reread = RwSignal::new(0u32);
    let trace = load(move |c| {
        let id = lookup.clone();
        reread.track();
        async move { c.registration_trace(&id).await }
    });
    let confirm = RwSignal::new(false);
    let change = change_action(selected, refresh, reread);
    let (changed, pending) = (change.value(), change.pending());
    let run = {
        let id = id.clone();
        Callback::new(move |what: Change| {
            change.clear();
            change.dispatch_local((what, id.clone()));
        })
    };

    view! {
        <aside class="card side-panel" data-testid="registration-trace">
            <div class="panel-head">
                <h3 class="mono">{id.clone()}</h3>
                <button type="button" class="btn small" title="Close" on:click=move |_| selected.set(None)>"Close"</button>
            </div>
            <MaybeError error=Signal::derive(move || changed.get().and_then(Result::err)) />
            <Loaded data=trace what="decision trace" let:answer>
                <TraceSteps answer=answer />
            </Loaded>
            <div class="panel-actions">
                <button type="button" class="btn" data-testid="registration-reprovision" disabled=move || pending.get()
                    on:click=move |_| run.run(Change::Reprovision)>"Re-provision now"</button>
                <button type="button" class="btn danger" data-testid="registration-delete" disabled=move || pending.get()
                    on:click=move |_| confirm.set(true)>"Delete registration"</button>
            </div>
            <p class="muted small">
                "Re-provision runs the registration again now with the current enrollment and hubs, following the "
                "enrollment's re-provisioning policy; the device learns its hub at its next registration. Deleting the "
                "record keeps the enrollment: the device gets a fresh assignment at its next registration."
            </p>
            <ConfirmDialog
                open=confirm
                title="Delete registration"
                message=format!(
                    "Delete the registration record of '{id}'? The device gets a fresh assignment (allocation policy, initial twin) the next time it registers."
                )
                on_confirm=Callback::new(move |()| run.run(Change::Delete))
            />
        </aside>
    }
}

/// How the registration was decided, step by step, and the trace's JSON.
#[component]
fn TraceSteps(answer: serde_json::Value) -> impl IntoView {
    let steps = trace_steps(&answer);
    let json = serde_json::to_string_pretty(&answer).unwrap_or_default();
    view! {
        <h4>"How this registration was decided"</h4>
        <ol class="steps">
            {steps
                .into_iter()
                .map(|s| view! {
                    <li class=format!("step {}", s.outcome.class()) data-testid="trace-step">
                        <strong>{s.title}</strong>
                        {(!s.details.is_empty()).then(|| view! {
                            <ul>{s.details.into_iter().map(|d| view! { <li>{d}</li> }).collect_view()}</ul>
                        })}
                    </li>
                })
                .collect_view()}
        </ol>
        <ShowJson json=json />
    }
}
