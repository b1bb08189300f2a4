//! Hubs: the linked IoT hubs devices are assigned to — weight, region, connector, the devices each holds and
//! whether its connector reaches it — with add/edit/delete (the connection string is write-only), and a chart of
//! each hub's share of the devices next to its share of the weight. The form's rules are the console model's
//! [`hub_form`](dps_console_model::hub_form).

use std::collections::BTreeMap;

use dps_console_model::enrollment_form::FieldError;
use dps_console_model::hub_form::{connector_hint, connector_label, field, HubForm, CONNECTORS};
use dps_console_model::{charts, format};
use dps_proto::{HubAllocation, HubStatus, LinkedHub};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Page, PageHeader};
use crate::api::{ApiClient, ApiError};
use crate::components::chart::{self, Chart, LegendItem};
use crate::components::confirm::ConfirmDialog;
use crate::components::form::{CheckField, FormBinding, SelectField, TextField};
use crate::components::loaded::{load, Load, Loaded};
use crate::components::notice::use_notices;
use crate::components::status::{EmptyState, MaybeError};
use crate::lens;

/// Each hub's connector check: `None` while it runs.
type Statuses = RwSignal<BTreeMap<String, Option<Result<HubStatus, ApiError>>>>;

#[component]
pub fn Hubs() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let hubs = load(|c| async move { c.allocation().await });
    let statuses: Statuses = RwSignal::new(BTreeMap::new());
    let form = RwSignal::new(None::<HubForm>);
    let deleting = RwSignal::new(String::new());
    let confirm_open = RwSignal::new(false);

    let check = Callback::new(move |host: String| {
        let c = client.get_untracked();
        statuses.update(|s| {
            s.insert(host.clone(), None);
        });
        spawn_local(async move {
            let r = c.hub_status(&host).await;
            statuses.update(|s| {
                s.insert(host, Some(r));
            });
        });
    });
    // Every listed hub is checked each time the list is read.
    Effect::new(move |_| {
        if let Some(Ok(list)) = hubs.get() {
            list.into_iter().for_each(|h| check.run(h.host_name));
        }
    });
    let delete: Action<String, Result<(), ApiError>> = Action::new_local(move |host: &String| {
        let (c, host) = (client.get_untracked(), host.clone());
        async move {
            c.delete_hub(&host).await?;
            notices.info(format!("Hub {host} removed."));
            hubs.refetch();
            Ok(())
        }
    });
    let deleted = delete.value();
    let on_delete = Callback::new(move |()| {
        delete.clear();
        delete.dispatch_local(deleting.get_untracked());
    });

    view! {
        <section class="page">
            <PageHeader page=Page::Hubs>
                <button type="button" class="btn primary" data-testid="hub-new" on:click=move |_| form.set(Some(HubForm::default()))>
                    "Add hub"
                </button>
            </PageHeader>
            <p class="muted">"Devices are assigned to these hubs by their enrollment's allocation policy. The connector says how the "
                "service creates the device identity in the hub."</p>
            <MaybeError error=Signal::derive(move || deleted.get().and_then(Result::err)) />
            {move || form.get().is_some().then(|| view! { <HubEditor form=form on_saved=Callback::new(move |()| hubs.refetch()) /> })}
            <Loaded data=hubs what="linked hubs" let:list>
                <HubTable list=list statuses=statuses check=check form=form
                    on_delete=Callback::new(move |host| { deleting.set(host); confirm_open.set(true); }) />
            </Loaded>
            <AllocationCard hubs=hubs />
            <ConfirmDialog open=confirm_open title="Remove the hub?"
                message=Signal::derive(move || format!(
                    "Devices will no longer be assigned to {}. The identities already in the hub stay there.", deleting.get()))
                confirm_label="Remove" on_confirm=on_delete />
        </section>
    }
}

#[component]
fn HubTable(
    list: Vec<HubAllocation>,
    statuses: Statuses,
    check: Callback<String>,
    form: RwSignal<Option<HubForm>>,
    on_delete: Callback<String>,
) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <EmptyState title="No linked hub"
                hint="Add a hub so devices can be assigned: the built-in registry needs no credentials, an Azure IoT Hub or a Mosquitto broker needs its connection string." />
        }
        .into_any();
    }
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th>"Host name"</th><th>"Connector"</th><th class="num">"Weight"</th><th>"Region"</th>
                    <th>"Allocation policy"</th><th class="num">"Devices"</th><th>"Status"</th><th></th>
                </tr>
            </thead>
            <tbody>
                {list.into_iter().map(|h| view! { <HubRow hub=h statuses=statuses check=check form=form on_delete=on_delete /> }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[component]
fn HubRow(
    hub: HubAllocation,
    statuses: Statuses,
    check: Callback<String>,
    form: RwSignal<Option<HubForm>>,
    on_delete: Callback<String>,
) -> impl IntoView {
    let host = hub.host_name.clone();
    let (h_status, h_check, h_delete, data_id) = (host.clone(), host.clone(), host.clone(), host.clone());
    let edit = HubForm::of(&hub);
    view! {
        <tr data-testid="hub-row" data-id=data_id>
            <td><code>{host}</code></td>
            <td>{connector_label(&hub.connector)}</td>
            <td class="num">{hub.allocation_weight}</td>
            <td>{hub.region.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{if hub.apply_allocation_policy { "applies" } else { "only when named" }}</td>
            <td class="num">{format::count(hub.devices)}</td>
            <td data-testid="hub-status">{move || status_badge(statuses.with(|s| s.get(&h_status).cloned()))}</td>
            <td class="actions">
                <button type="button" class="btn small" data-testid="hub-check" on:click=move |_| check.run(h_check.clone())>"Check"</button>
                <button type="button" class="btn small" data-testid="hub-edit" on:click=move |_| form.set(Some(edit.clone()))>"Edit"</button>
                <button type="button" class="btn small danger" data-testid="hub-delete" on:click=move |_| on_delete.run(h_delete.clone())>
                    "Delete"
                </button>
            </td>
        </tr>
    }
}

/// A hub's connector check, as a badge.
fn status_badge(status: Option<Option<Result<HubStatus, ApiError>>>) -> AnyView {
    match status {
        None => view! { <span class="badge">"not checked"</span> }.into_any(),
        Some(None) => view! { <span class="badge">"checking…"</span> }.into_any(),
        Some(Some(Ok(s))) if s.reachable => view! { <span class="badge ok" title=s.message.clone()>"reachable"</span> }.into_any(),
        Some(Some(Ok(s))) => {
            view! { <span class="badge bad">"unreachable"</span> " " <span class="muted small">{s.message}</span> }.into_any()
        }
        Some(Some(Err(e))) => {
            view! { <span class="badge warn">"unknown"</span> " " <span class="muted small">{e.to_string()}</span> }.into_any()
        }
    }
}

/// Each hub's share of the devices next to its share of the weight.
#[component]
fn AllocationCard(hubs: Load<Vec<HubAllocation>>) -> impl IntoView {
    let shares = Memo::new(move |_| match hubs.get() {
        Some(Ok(h)) => charts::allocation_shares(&h),
        _ => Vec::new(),
    });
    let svg = Signal::derive(move || {
        let s = shares.get();
        if s.is_empty() {
            String::new()
        } else {
            chart::allocation_svg(&s)
        }
    });
    view! {
        <div class="card">
            <h3>"Allocation: devices vs weight"</h3>
            <p class="muted">"With the evenly weighted policy, each hub's share of the devices tends to its share of the weight "
                "(hubs that apply the policy only)."</p>
            <Chart svg=svg testid="chart-allocation" label="Each hub's share of the assigned devices and of the allocation weight" />
            <div class="legend">
                <LegendItem color=chart::DEVICES label="share of devices" />
                <LegendItem color=chart::WEIGHT label="share of weight" />
            </div>
            <table class="table compact">
                <tbody>
                    {move || shares.get().into_iter().map(|s| view! {
                        <tr>
                            <td><code>{s.host_name}</code></td>
                            <td class="num">{format!("{} devices", format::count(s.devices))}</td>
                            <td class="num">{format::percent(s.device_share)}</td>
                            <td class="num">{format!("weight {}", s.weight)}</td>
                            <td class="num">{format::percent(s.weight_share)}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </div>
    }
}

/// Saves the hub; on success tells the user, closes the form and reads the list again.
fn save_action(form: RwSignal<Option<HubForm>>, on_saved: Callback<()>) -> Action<LinkedHub, Result<(), ApiError>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    Action::new_local(move |hub: &LinkedHub| {
        let (c, hub) = (client.get_untracked(), hub.clone());
        async move {
            let h = c.put_hub(&hub).await?;
            notices.info(format!("Hub {} saved.", h.host_name));
            on_saved.run(());
            form.set(None);
            Ok(())
        }
    })
}

/// The add/edit form. Its errors are those found at the last submit.
#[component]
fn HubEditor(form: RwSignal<Option<HubForm>>, on_saved: Callback<()>) -> impl IntoView {
    let initial = form.get_untracked().unwrap_or_default();
    let editing = initial.editing;
    let problems = RwSignal::new(Vec::<FieldError>::new());
    let hub = FormBinding::with_errors(initial, problems.into());
    let save = save_action(form, on_saved);
    let (saved, pending) = (save.value(), save.pending());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        hub.show_all();
        match hub.form.with_untracked(HubForm::to_hub) {
            Ok(h) => {
                problems.set(Vec::new());
                save.clear();
                save.dispatch_local(h);
            }
            Err(e) => problems.set(e),
        }
    };
    let hint = move || hub.form.with(|f| connector_hint(&f.connector).to_string());
    let placeholder = Signal::derive(move || if editing { "unchanged (write-only)".to_string() } else { hint() });

    view! {
        <form class="card form" data-testid="hub-form" on:submit=submit>
            <h3>{if editing { "Edit hub" } else { "Add a hub" }}</h3>
            <TextField bind=hub.field(field::HOST, lens!(host)) label="Host name" testid="hub-form-host"
                placeholder="my-hub.azure-devices.net" disabled=editing />
            <SelectField bind=hub.field(field::CONNECTOR, lens!(connector)) label="Connector" testid="hub-form-connector"
                options=CONNECTORS.iter().map(|c| (c.value, c.label)).collect() />
            <TextField bind=hub.field(field::WEIGHT, lens!(weight)) label="Allocation weight" testid="hub-form-weight"
                kind="number" min="1" max="1000" />
            <TextField bind=hub.field(field::REGION, lens!(region)) label="Region (geo latency)" testid="hub-form-region"
                placeholder="optional, e.g. westeurope" />
            <label for="hub-apply">"Apply allocation policy"</label>
            <CheckField bind=hub.field(field::APPLY, lens!(apply)) id="hub-apply" testid="hub-form-apply"
                label="hashed and geo-latency policies may choose it (otherwise only enrollments naming it)" />
            <TextField bind=hub.field(field::CONNECTION_STRING, lens!(connection_string)) label="Connection string"
                testid="hub-form-connection-string" kind="password" autocomplete="off" placeholder=placeholder>
                <span class="muted small">{move || format!("Write-only: never shown again. {}", hint())}</span>
            </TextField>
            <TextField bind=hub.field(field::CA, lens!(ca)) label="CA to trust (PEM)" testid="hub-form-ca" rows=3
                placeholder="optional: the CA of the hub's TLS certificate" />
            <div class="form-actions">
                <button type="submit" class="btn primary" data-testid="hub-form-submit" disabled=move || pending.get()>"Save"</button>
                <button type="button" class="btn" data-testid="hub-form-cancel" on:click=move |_| form.set(None)>"Cancel"</button>
            </div>
            <MaybeError error=Signal::derive(move || saved.get().and_then(Result::err)) />
        </form>
    }
}
