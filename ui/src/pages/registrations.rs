//! Registrations: every registration record (search, paging), and for one record the decision trace (how its
//! hub was chosen) and deletion (the device gets a fresh assignment at its next registration).

use dps_console_model::paging::PageStack;
use dps_console_model::trace::trace_steps;
use dps_proto::DeviceRegistrationState;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::enrollments::PAGE_SIZE;
use crate::api::{ApiClient, ApiError};
use crate::components::confirm::ConfirmDialog;
use crate::components::json::ShowJson;
use crate::components::notice::use_notices;
use crate::components::pager::Pager;
use crate::components::search::DebouncedSearch;
use crate::components::status::{EmptyState, ErrorPanel, Loading, MaybeError};
use crate::pages::enrollments::time_cell;
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
    let client = expect_context::<RwSignal<ApiClient>>();
    let search = DebouncedSearch::new();
    let pages = RwSignal::new(PageStack::default());
    let refresh = RwSignal::new(0u32);
    // `#/registrations/<id>` (the enrollment detail's "decision trace" link) opens that record's trace.
    let selected = RwSignal::new(id_from_location());

    let list = LocalResource::new(move || {
        refresh.track();
        let c = client.get();
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
                    {move || match list.get() {
                        None => view! { <Loading what="registrations" /> }.into_any(),
                        Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                        Some(Ok((items, _, _))) if items.is_empty() => {
                            if search.applied.get().is_empty() {
                                view! {
                                    <EmptyState
                                        title="No device has registered yet."
                                        hint="Create an enrollment (Enrollments or Groups), then start a device with the ID scope from the Overview, its registration id and its key (an Azure IoT device SDK, or `dps bench` for a load test)."
                                    />
                                }
                                .into_any()
                            } else {
                                let title = format!("No registration matches “{}”.", search.applied.get());
                                view! { <EmptyState title=title hint="The search looks for the text anywhere in the registration id, ignoring case." /> }
                                    .into_any()
                            }
                        }
                        Some(Ok((items, _, total))) => {
                            let label = pages.with(|p| p.range_label(PAGE_SIZE as usize, items.len(), total));
                            view! { <RegistrationTable items=items selected=selected /> <p class="muted">{label}</p> }.into_any()
                        }
                    }}
                    <Pager prefix="registration" pages=pages next=Signal::derive(next_token) />
                </div>
                {move || selected.get().map(|id| view! { <TracePanel id=id selected=selected refresh=refresh /> })}
            </div>
        </section>
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

#[component]
fn TracePanel(id: String, selected: RwSignal<Option<String>>, refresh: RwSignal<u32>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let lookup = id.clone();
    // Bumped after a re-provision, so the trace is read again.
    let reread = RwSignal::new(0u32);
    let trace = LocalResource::new(move || {
        let c = client.get();
        let id = lookup.clone();
        reread.get();
        async move { c.registration_trace(&id).await }
    });
    let confirm = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let action_error = RwSignal::new(None::<ApiError>);
    let delete_id = id.clone();
    let delete = Callback::new(move |()| {
        let id = delete_id.clone();
        busy.set(true);
        action_error.set(None);
        spawn_local(async move {
            let r = client.get_untracked().delete_registration(&id, None).await;
            busy.set(false);
            match r {
                Ok(()) => {
                    notices.info(format!("Deleted the registration of {id}"));
                    selected.set(None);
                    refresh.update(|n| *n += 1);
                }
                Err(e) => action_error.set(Some(e)),
            }
        });
    });

    let reprovision_id = id.clone();
    let reprovision = move |_| {
        let id = reprovision_id.clone();
        busy.set(true);
        action_error.set(None);
        spawn_local(async move {
            let r = client.get_untracked().reprovision_registration(&id).await;
            busy.set(false);
            match r {
                Ok(answer) => {
                    let hub = answer["registrationState"]["assignedHub"].as_str().unwrap_or("no hub").to_owned();
                    notices.info(format!("Re-provisioned {id}: {hub}"));
                    reread.update(|n| *n += 1);
                    refresh.update(|n| *n += 1);
                }
                Err(e) => action_error.set(Some(e)),
            }
        });
    };

    view! {
        <aside class="card side-panel" data-testid="registration-trace">
            <div class="panel-head">
                <h3 class="mono">{id.clone()}</h3>
                <button type="button" class="btn small" title="Close" on:click=move |_| selected.set(None)>"Close"</button>
            </div>
            <MaybeError error=action_error />
            {move || match trace.get() {
                None => view! { <Loading what="decision trace" /> }.into_any(),
                Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                Some(Ok(answer)) => {
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
                    .into_any()
                }
            }}
            <div class="panel-actions">
                <button type="button" class="btn" data-testid="registration-reprovision" disabled=move || busy.get()
                    on:click=reprovision>"Re-provision now"</button>
                <button type="button" class="btn danger" data-testid="registration-delete" disabled=move || busy.get()
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
                on_confirm=delete
            />
        </aside>
    }
}
