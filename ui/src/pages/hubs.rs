//! Hubs: the linked IoT hubs devices are assigned to — weight, region, connector, the devices each holds and
//! whether its connector reaches it — with add/edit/delete (the connection string is write-only), and a chart of
//! each hub's share of the devices next to its share of the weight.

use dps_console_model::{charts, format, validation};
use dps_proto::{HubAllocation, HubStatus, LinkedHub};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Page, PageHeader};
use crate::api::{ApiClient, ApiError};
use crate::components::chart::{self, Chart, LegendItem};
use crate::components::confirm::ConfirmDialog;
use crate::components::notice::use_notices;
use crate::components::status::{EmptyState, ErrorPanel, Loading, MaybeError};

/// The connectors a hub can use: (value, label, what the connection string is).
const CONNECTORS: [(&str, &str, &str); 3] = [
    ("builtin", "Built-in registry", "not needed: the service keeps the device identities itself"),
    ("azureIotHub", "Azure IoT Hub", "the hub's connection string (a policy with registry write)"),
    ("mosquitto", "Mosquitto", "mqtt[s]://user:password@host:port of the dynamic-security admin"),
];

fn connector_label(value: &str) -> String {
    CONNECTORS.iter().find(|(v, _, _)| *v == value).map(|(_, l, _)| l.to_string()).unwrap_or_else(|| value.to_string())
}

/// The add/edit form's state.
#[derive(Debug, Clone, PartialEq)]
struct HubForm {
    /// Editing an existing hub (its host name cannot change).
    editing: bool,
    host: String,
    connector: String,
    weight: String,
    region: String,
    apply: bool,
    connection_string: String,
    ca: String,
}

impl Default for HubForm {
    /// A new hub: the built-in registry, weight 1, applying the allocation policy.
    fn default() -> Self {
        Self {
            editing: false,
            host: String::new(),
            connector: "builtin".into(),
            weight: "1".into(),
            region: String::new(),
            apply: true,
            connection_string: String::new(),
            ca: String::new(),
        }
    }
}

impl HubForm {
    fn of(h: &HubAllocation) -> Self {
        Self {
            editing: true,
            host: h.host_name.clone(),
            connector: h.connector.clone(),
            weight: h.allocation_weight.to_string(),
            region: h.region.clone().unwrap_or_default(),
            apply: h.apply_allocation_policy,
            ..Default::default()
        }
    }

    /// The hub to send, or the first problem with a field: (field, message).
    fn to_hub(&self) -> Result<LinkedHub, (&'static str, String)> {
        validation::hub_host_name(self.host.trim()).map_err(|e| ("host", e))?;
        let weight: u32 = self.weight.trim().parse().map_err(|_| ("weight", "the weight is a whole number from 1 to 1000".to_string()))?;
        if !(1..=1000).contains(&weight) {
            return Err(("weight", "the weight is a whole number from 1 to 1000".into()));
        }
        let cs = self.connection_string.trim();
        if self.connector != "builtin" && cs.is_empty() && !self.editing {
            return Err(("connection-string", format!("{} needs a connection string", connector_label(&self.connector))));
        }
        Ok(LinkedHub {
            host_name: self.host.trim().to_string(),
            allocation_weight: weight,
            apply_allocation_policy: self.apply,
            region: Some(self.region.trim().to_string()).filter(|r| !r.is_empty()),
            connector: self.connector.clone(),
            // Blank while editing: the service keeps the stored one.
            connection_string: Some(cs.to_string()).filter(|c| !c.is_empty()),
            ca_certificate: Some(self.ca.trim().to_string()).filter(|c| !c.is_empty()),
        })
    }
}

#[component]
pub fn Hubs() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let hubs = RwSignal::new(None::<Result<Vec<HubAllocation>, ApiError>>);
    let statuses = RwSignal::new(std::collections::BTreeMap::<String, Option<Result<HubStatus, ApiError>>>::new());
    let form = RwSignal::new(None::<HubForm>);
    let deleting = RwSignal::new(String::new());
    let confirm_open = RwSignal::new(false);
    let action_error = RwSignal::new(None::<ApiError>);

    let check = move |host: String| {
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
    };
    let load = move || {
        let c = client.get_untracked();
        spawn_local(async move {
            let r = c.allocation().await;
            if let Ok(list) = &r {
                for h in list {
                    check(h.host_name.clone());
                }
            }
            hubs.set(Some(r));
        });
    };
    load();

    let delete = Callback::new(move |_| {
        let host = deleting.get_untracked();
        let c = client.get_untracked();
        spawn_local(async move {
            match c.delete_hub(&host).await {
                Ok(()) => {
                    notices.info(format!("Hub {host} removed."));
                    action_error.set(None);
                    load();
                }
                Err(e) => action_error.set(Some(e)),
            }
        });
    });

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
        <section class="page">
            <PageHeader page=Page::Hubs>
                <button type="button" class="btn primary" data-testid="hub-new" on:click=move |_| form.set(Some(HubForm::default()))>
                    "Add hub"
                </button>
            </PageHeader>
            <p class="muted">"Devices are assigned to these hubs by their enrollment's allocation policy. The connector says how the "
                "service creates the device identity in the hub."</p>
            <MaybeError error=action_error />
            {move || form.get().is_some().then(|| view! { <HubEditor form=form on_saved=Callback::new(move |_| load()) /> })}
            {move || match hubs.get() {
                None => view! { <Loading what="linked hubs" /> }.into_any(),
                Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                Some(Ok(list)) if list.is_empty() => view! {
                    <EmptyState title="No linked hub"
                        hint="Add a hub so devices can be assigned: the built-in registry needs no credentials, an Azure IoT Hub or a Mosquitto broker needs its connection string." />
                }.into_any(),
                Some(Ok(list)) => view! {
                    <table class="table">
                        <thead>
                            <tr>
                                <th>"Host name"</th><th>"Connector"</th><th class="num">"Weight"</th><th>"Region"</th>
                                <th>"Allocation policy"</th><th class="num">"Devices"</th><th>"Status"</th><th></th>
                            </tr>
                        </thead>
                        <tbody>
                            {list.into_iter().map(|h| {
                                let host = h.host_name.clone();
                                let (h_status, h_check, h_delete) = (host.clone(), host.clone(), host.clone());
                                let edit = h.clone();
                                view! {
                                    <tr data-testid="hub-row" data-id=host.clone()>
                                        <td><code>{host.clone()}</code></td>
                                        <td>{connector_label(&h.connector)}</td>
                                        <td class="num">{h.allocation_weight}</td>
                                        <td>{h.region.clone().unwrap_or_else(|| "—".into())}</td>
                                        <td>{if h.apply_allocation_policy { "applies" } else { "only when named" }}</td>
                                        <td class="num">{format::count(h.devices)}</td>
                                        <td data-testid="hub-status">
                                            {move || match statuses.get().get(&h_status).cloned() {
                                                None => view! { <span class="badge">"not checked"</span> }.into_any(),
                                                Some(None) => view! { <span class="badge">"checking…"</span> }.into_any(),
                                                Some(Some(Ok(s))) if s.reachable => view! {
                                                    <span class="badge ok" title=s.message.clone()>"reachable"</span>
                                                }.into_any(),
                                                Some(Some(Ok(s))) => view! {
                                                    <span class="badge bad">"unreachable"</span> " " <span class="muted small">{s.message}</span>
                                                }.into_any(),
                                                Some(Some(Err(e))) => view! {
                                                    <span class="badge warn">"unknown"</span> " " <span class="muted small">{e.to_string()}</span>
                                                }.into_any(),
                                            }}
                                        </td>
                                        <td class="actions">
                                            <button type="button" class="btn small" data-testid="hub-check" on:click=move |_| check(h_check.clone())>"Check"</button>
                                            <button type="button" class="btn small" data-testid="hub-edit"
                                                on:click=move |_| form.set(Some(HubForm::of(&edit)))>"Edit"</button>
                                            <button type="button" class="btn small danger" data-testid="hub-delete"
                                                on:click=move |_| { deleting.set(h_delete.clone()); confirm_open.set(true); }>"Delete"</button>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any(),
            }}
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
            <ConfirmDialog open=confirm_open title="Remove the hub?"
                message=Signal::derive(move || format!(
                    "Devices will no longer be assigned to {}. The identities already in the hub stay there.", deleting.get()))
                confirm_label="Remove" on_confirm=delete />
        </section>
    }
}

#[component]
fn HubEditor(form: RwSignal<Option<HubForm>>, on_saved: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let initial = form.get_untracked().unwrap_or_default();
    let editing = initial.editing;
    let host = RwSignal::new(initial.host);
    let connector = RwSignal::new(initial.connector);
    let weight = RwSignal::new(initial.weight);
    let region = RwSignal::new(initial.region);
    let apply = RwSignal::new(initial.apply);
    let connection_string = RwSignal::new(String::new());
    let ca = RwSignal::new(String::new());
    let field_error = RwSignal::new(None::<(&'static str, String)>);
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);

    let err_for = move |field: &'static str| {
        move || field_error.get().filter(|(f, _)| *f == field).map(|(_, m)| view! { <span class="field-error" data-field=field>{m}</span> })
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let f = HubForm {
            editing,
            host: host.get_untracked(),
            connector: connector.get_untracked(),
            weight: weight.get_untracked(),
            region: region.get_untracked(),
            apply: apply.get_untracked(),
            connection_string: connection_string.get_untracked(),
            ca: ca.get_untracked(),
        };
        let hub = match f.to_hub() {
            Ok(h) => h,
            Err(e) => {
                field_error.set(Some(e));
                return;
            }
        };
        field_error.set(None);
        busy.set(true);
        let c = client.get_untracked();
        spawn_local(async move {
            let r = c.put_hub(&hub).await;
            busy.set(false);
            match r {
                Ok(h) => {
                    notices.info(format!("Hub {} saved.", h.host_name));
                    form.set(None);
                    on_saved.run(());
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let hint = move || {
        let c = connector.get();
        CONNECTORS.iter().find(|(v, _, _)| *v == c).map(|(_, _, h)| h.to_string()).unwrap_or_default()
    };

    view! {
        <form class="card form" data-testid="hub-form" on:submit=submit>
            <h3>{if editing { "Edit hub" } else { "Add a hub" }}</h3>
            <label for="hub-host">"Host name"</label>
            <div>
                <input id="hub-host" data-testid="hub-form-host" placeholder="my-hub.azure-devices.net" disabled=editing
                    prop:value=move || host.get() on:input=move |ev| host.set(event_target_value(&ev)) />
                {err_for("host")}
            </div>
            <label for="hub-connector">"Connector"</label>
            <div>
                <select id="hub-connector" data-testid="hub-form-connector" prop:value=move || connector.get()
                    on:change=move |ev| connector.set(event_target_value(&ev))>
                    {CONNECTORS.iter().map(|(v, l, _)| view! { <option value=*v>{*l}</option> }).collect_view()}
                </select>
            </div>
            <label for="hub-weight">"Allocation weight"</label>
            <div>
                <input id="hub-weight" type="number" min="1" max="1000" data-testid="hub-form-weight"
                    prop:value=move || weight.get() on:input=move |ev| weight.set(event_target_value(&ev)) />
                {err_for("weight")}
            </div>
            <label for="hub-region">"Region (geo latency)"</label>
            <input id="hub-region" data-testid="hub-form-region" placeholder="optional, e.g. westeurope"
                prop:value=move || region.get() on:input=move |ev| region.set(event_target_value(&ev)) />
            <label for="hub-apply">"Apply allocation policy"</label>
            <label class="check">
                <input id="hub-apply" type="checkbox" data-testid="hub-form-apply" prop:checked=move || apply.get()
                    on:change=move |ev| apply.set(event_target_checked(&ev)) />
                " hashed and geo-latency policies may choose it (otherwise only enrollments naming it)"
            </label>
            <label for="hub-cs">"Connection string"</label>
            <div>
                <input id="hub-cs" type="password" autocomplete="off" data-testid="hub-form-connection-string"
                    placeholder=move || if editing { "unchanged (write-only)".to_string() } else { hint() }
                    prop:value=move || connection_string.get() on:input=move |ev| connection_string.set(event_target_value(&ev)) />
                <span class="muted small">{move || format!("Write-only: never shown again. {}", hint())}</span>
                {err_for("connection-string")}
            </div>
            <label for="hub-ca">"CA to trust (PEM)"</label>
            <textarea id="hub-ca" rows="3" data-testid="hub-form-ca" placeholder="optional: the CA of the hub's TLS certificate"
                prop:value=move || ca.get() on:input=move |ev| ca.set(event_target_value(&ev))></textarea>
            <div class="form-actions">
                <button type="submit" class="btn primary" data-testid="hub-form-submit" disabled=move || busy.get()>"Save"</button>
                <button type="button" class="btn" data-testid="hub-form-cancel" on:click=move |_| form.set(None)>"Cancel"</button>
            </div>
            <MaybeError error=error />
        </form>
    }
}
