//! Simulate (#16): start simulated devices — transport × count × group or enrollment × fault, optionally step
//! by step — and watch them: each run's devices with their live state, and for the device opened a sequence
//! diagram of its flow as it saw it on the wire (connect, TLS, sign-in, register, 202, waits, polls, the
//! answer), with the messages as sent (secrets masked), the plain-language cause of a refusal, a link to the
//! decision trace, the step-through controls, and a Markdown transcript to download. The choices and the
//! transcript are the console model's [`simulation`](dps_console_model::simulation).

use std::time::Duration;

use dps_console_model::simulation::{self as model, ATTESTATIONS};
use dps_proto::simulation::{Direction, ScenarioState, ScenarioView, SimCa, SimDevice, Simulation, SimulationRequest};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Page, PageHeader};
use crate::api::{ApiClient, ApiError};
use crate::components::files::{clear_input, download_text, files_of_input, native_picker, read_all, Picked};
use crate::components::loaded::{load, refetch_every, Loaded};
use crate::components::status::{EmptyState, ErrorPanel, MaybeError};

/// The run and the device on screen.
#[derive(Clone, Copy)]
struct Selection {
    run: RwSignal<Option<String>>,
    device: RwSignal<Option<String>>,
    /// What the last clean-up removed (the run it cleaned is gone from the tabs).
    notice: RwSignal<Option<String>>,
}

#[component]
pub fn Simulate() -> impl IntoView {
    let selection = Selection { run: RwSignal::new(None), device: RwSignal::new(None), notice: RwSignal::new(None) };
    let runs = load(|c| async move { c.simulations().await });
    refetch_every(runs, Duration::from_millis(1500));
    // The newest run is shown until the trainer picks another.
    Effect::new(move |_| {
        // Set only when there is one: setting `None` again would run this effect again, forever.
        if let (None, Some(Ok(list))) = (selection.run.get(), runs.get()) {
            if let Some(newest) = list.first() {
                selection.run.set(Some(newest.id.clone()));
            }
        }
    });
    view! {
        <section class="page">
            <PageHeader page=Page::Simulate />
            <p class="muted">"Simulated devices are real device clients: they connect to this service's own listeners over HTTPS, MQTT or "
                "AMQP, exactly as a device on the network would. Open a device to see its flow step by step."</p>
            <StartForm selection=selection on_started=Callback::new(move |()| { selection.notice.set(None); runs.refetch(); }) />
            {move || selection.notice.get().map(|n| view! { <p class="note" data-testid="sim-notice">{n}</p> })}
            <Loaded data=runs what="simulations" let:list>
                <RunTabs list=list selection=selection />
            </Loaded>
            {move || selection.run.get().map(|id| view! { <RunView id=id selection=selection /> })}
            <Scenarios />
        </section>
    }
}

#[component]
fn StartForm(selection: Selection, on_started: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let attestation = RwSignal::new("symmetricKey".to_owned());
    let (transport, count, group, fault, stepped) = (
        RwSignal::new("https".to_owned()),
        RwSignal::new("5".to_owned()),
        RwSignal::new(String::new()),
        RwSignal::new("none".to_owned()),
        RwSignal::new(false),
    );
    let certificate = RwSignal::new(false);
    // How many devices get the fault (empty: all).
    let faulty = RwSignal::new(String::new());
    // Devices of a group (`group`) or one individual enrollment (`enrollment`); made when missing if `create`.
    let (uses, create) = (RwSignal::new("group".to_owned()), RwSignal::new(false));
    let (ca_kind, ca_certificate, ca_key) = (RwSignal::new("run".to_owned()), RwSignal::new(String::new()), RwSignal::new(String::new()));
    // The name typed, for symmetric-key devices (X.509 and TPM devices have groups and enrollments of their own).
    let named =
        move || Some(group.get_untracked().trim().to_owned()).filter(|g| !g.is_empty() && attestation.get_untracked() == "symmetricKey");
    let enrollment_named = move || named().is_some() && uses.get_untracked() == "enrollment";
    let start: Action<(), Result<Simulation, ApiError>> = Action::new_local(move |_| {
        let c = client.get_untracked();
        let request = SimulationRequest {
            attestation: attestation.get_untracked(),
            transport: model::transport_of(&transport.get_untracked()),
            count: if enrollment_named() { 1 } else { count.get_untracked().trim().parse().unwrap_or(0) },
            group: named().filter(|_| uses.get_untracked() == "group"),
            enrollment: named().filter(|_| uses.get_untracked() == "enrollment"),
            create: create.get_untracked() && named().is_some(),
            prefix: None,
            fault: model::fault_of(&fault.get_untracked()),
            faulty: model::faulty_of(&faulty.get_untracked()).filter(|_| fault.get_untracked() != "none"),
            step_through: stepped.get_untracked(),
            request_certificate: certificate.get_untracked() && attestation.get_untracked() != "tpm",
            x509_ca: if attestation.get_untracked() == "x509" {
                model::x509_ca_of(&ca_kind.get_untracked(), &ca_certificate.get_untracked(), &ca_key.get_untracked())
            } else {
                SimCa::Run
            },
        };
        async move {
            let run = c.start_simulation(&request).await?;
            selection.run.set(Some(run.id.clone()));
            selection.device.set(run.devices.first().map(|d| d.registration_id.clone()));
            on_started.run(());
            Ok(run)
        }
    });
    let result = start.value();
    view! {
        <form class="card sim-form" on:submit=move |ev| { ev.prevent_default(); start.dispatch_local(()); }>
            <div class="row">
                <label class="field"><span>"Attestation"</span>
                    <select data-testid="sim-attestation" prop:value=move || attestation.get()
                        on:change=move |ev| {
                            let a = event_target_value(&ev);
                            if !model::transports_for(&a).iter().any(|(_, v, _)| *v == transport.get_untracked()) {
                                transport.set("https".into());
                            }
                            attestation.set(a);
                            fault.set("none".into());
                        }>
                        {ATTESTATIONS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                    </select>
                </label>
                <label class="field"><span>"Transport"</span>
                    <select data-testid="sim-transport" prop:value=move || transport.get() on:change=move |ev| transport.set(event_target_value(&ev))>
                        {move || model::transports_for(&attestation.get()).into_iter().map(|(_, v, l)| view! { <option value=v>{l}</option> }).collect_view()}
                    </select>
                </label>
                <label class="field"><span>{move || format!("Devices (1–{})", model::max_devices(&attestation.get()))}</span>
                    <input type="number" min="1" max=move || model::max_devices(&attestation.get()) data-testid="sim-count" prop:value=move || count.get()
                        on:input=move |ev| count.set(event_target_value(&ev)) />
                </label>
                <label class="field"><span>"Devices of"</span>
                    <select data-testid="sim-use" prop:value=move || uses.get() disabled=move || attestation.get() != "symmetricKey"
                        on:change=move |ev| uses.set(event_target_value(&ev))>
                        <option value="group">"a group"</option>
                        <option value="enrollment">"an individual enrollment (1 device)"</option>
                    </select>
                </label>
                <label class="field"><span>{move || if uses.get() == "enrollment" { "Enrollment" } else { "Group" }}</span>
                    <input type="text" data-testid="sim-group" prop:value=move || group.get()
                        placeholder=move || if uses.get() == "enrollment" { "its registration id" } else { "simulated-devices (made when missing)" }
                        disabled=move || attestation.get() != "symmetricKey"
                        on:input=move |ev| group.set(event_target_value(&ev)) />
                </label>
                <label class="check" title="Make the group or enrollment named here when it does not exist (symmetric key, the service's defaults)">
                    <input type="checkbox" data-testid="sim-create" prop:checked=move || create.get() disabled=move || attestation.get() != "symmetricKey"
                        on:change=move |ev| create.set(event_target_checked(&ev)) /> " Create it if missing"</label>
                <label class="field"><span>"Fault"</span>
                    <select data-testid="sim-fault" prop:value=move || fault.get() on:change=move |ev| fault.set(event_target_value(&ev))>
                        {move || model::faults_for(&attestation.get()).into_iter().map(|(_, v, l)| view! { <option value=v>{l}</option> }).collect_view()}
                    </select>
                </label>
                <Show when=move || fault.get() != "none">
                    <label class="field" title="The first devices get the fault, the others are healthy: one run shows both"><span>"Faulty devices"</span>
                        <input type="number" min="1" data-testid="sim-faulty" placeholder="all" prop:value=move || faulty.get()
                            on:input=move |ev| faulty.set(event_target_value(&ev)) />
                    </label>
                </Show>
                <label class="check"><input type="checkbox" data-testid="sim-step-through" prop:checked=move || stepped.get()
                    on:change=move |ev| stepped.set(event_target_checked(&ev)) /> " Step through"</label>
                <label class="check" title="Each device sends a CSR and receives a certificate from the policy simulated-devices (the local CA); X.509 devices then register again with it">
                    <input type="checkbox" data-testid="sim-certificate" prop:checked=move || certificate.get() disabled=move || attestation.get() == "tpm"
                        on:change=move |ev| certificate.set(event_target_checked(&ev)) /> " Request a certificate"</label>
                <button type="submit" class="btn primary" data-testid="sim-start" disabled=move || start.pending().get()>"Start devices"</button>
            </div>
            <Show when=move || attestation.get() == "x509">
                <X509CaChoice kind=ca_kind certificate=ca_certificate key=ca_key />
            </Show>
            <p class="muted small hint" data-testid="sim-fault-hint">{move || model::fault_hint(model::fault_of(&fault.get()))}</p>
            <MaybeError error=Signal::derive(move || result.get().and_then(Result::err)) />
        </form>
    }
}

/// Where simulated X.509 devices' certificates come from: a CA made for the run, with an intermediate, or the
/// trainer's own (its chain and key pasted; the key is used for the run only and never shown again).
#[component]
fn X509CaChoice(kind: RwSignal<String>, certificate: RwSignal<String>, key: RwSignal<String>) -> impl IntoView {
    view! {
        <div class="row">
            <label class="field"><span>"Certificates issued by"</span>
                <select data-testid="sim-x509-ca" prop:value=move || kind.get() on:change=move |ev| kind.set(event_target_value(&ev))>
                    {model::X509_CAS.iter().map(|(v, l)| view! { <option value=*v>{*l}</option> }).collect_view()}
                </select>
            </label>
            <Show when=move || kind.get() == "uploaded">
                <label class="field grow"><span>"Your CA's certificate chain (PEM, the issuing CA first)"</span>
                    <textarea rows="4" data-testid="sim-ca-certificate" placeholder="-----BEGIN CERTIFICATE-----" prop:value=move || certificate.get()
                        on:input=move |ev| certificate.set(event_target_value(&ev))></textarea>
                </label>
                <label class="field grow"><span>"Its private key (PEM; used for this run only, never stored)"</span>
                    <textarea rows="4" data-testid="sim-ca-key" placeholder="-----BEGIN PRIVATE KEY-----" prop:value=move || key.get()
                        on:input=move |ev| key.set(event_target_value(&ev))></textarea>
                </label>
            </Show>
        </div>
    }
}

#[component]
fn RunTabs(list: Vec<Simulation>, selection: Selection) -> impl IntoView {
    if list.is_empty() {
        return view! { <EmptyState title="No simulation yet" hint="Start a few devices above: they register through this service's listeners." /> }
            .into_any();
    }
    view! {
        <div class="toolbar" data-testid="sim-runs">
            {list.into_iter().map(|r| {
                let id = r.id.clone();
                let counts: Vec<String> = r.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
                view! {
                    <button type="button" class="btn small" data-testid="sim-run" class:primary=move || selection.run.get().as_deref() == Some(id.as_str())
                        on:click=move |_| { selection.run.set(Some(r.id.clone())); selection.device.set(None); }>
                        {format!("{} · {} · {}", r.id, r.request.transport.label(), counts.join(", "))}
                    </button>
                }
            }).collect_view()}
        </div>
    }
    .into_any()
}

#[component]
fn RunView(id: String, selection: Selection) -> impl IntoView {
    let run_id = id.clone();
    let run = load(move |c| {
        let id = run_id.clone();
        async move { c.simulation(&id, 0).await }
    });
    refetch_every(run, Duration::from_millis(700));
    view! {
        <div class="split with-panel">
            <div class="list card">
                <Loaded data=run what="the simulation" let:r>
                    <RunDevices run=r selection=selection />
                </Loaded>
            </div>
            {move || selection.device.get().map(|d| view! { <DevicePanel run=id.clone() device=d run_data=run /> })}
        </div>
    }
}

#[component]
fn RunDevices(run: Simulation, selection: Selection) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let paused = run.devices.iter().any(|d| d.paused_before.is_some());
    let (id, id_all) = (run.id.clone(), run.id.clone());
    let resume_all = move |to_end: bool| {
        let (c, id) = (client.get_untracked(), id_all.clone());
        spawn_local(async move {
            let _ = c.continue_simulation(&id, None, to_end).await;
        });
    };
    let resume_all_end = resume_all.clone();
    let forget_id = run.id.clone();
    let forget = move |_| {
        let (c, id) = (client.get_untracked(), forget_id.clone());
        spawn_local(async move {
            if c.delete_simulation(&id).await.is_ok() {
                selection.device.set(None);
                selection.run.set(None);
            }
        });
    };
    let error = RwSignal::new(None::<ApiError>);
    let clean_id = run.id.clone();
    let clean_up = move |_| {
        let (c, id) = (client.get_untracked(), clean_id.clone());
        spawn_local(async move {
            match c.clean_up_simulation(&id).await {
                Ok(done) => {
                    selection.notice.set(Some(model::clean_up_summary(&id, &done)));
                    selection.device.set(None);
                    selection.run.set(None);
                }
                Err(e) => error.set(Some(e)),
            }
        });
    };
    let ended = run.devices.iter().all(|d| d.state.is_final());
    let transcript_id = run.id.clone();
    let transcript = move |_| {
        let (c, id) = (client.get_untracked(), transcript_id.clone());
        spawn_local(async move {
            match c.simulation(&id, model::TRANSCRIPT_FLOWS).await {
                Ok(run) => download_text(&format!("{id}.md"), "text/markdown", &model::run_transcript(&run, model::TRANSCRIPT_FLOWS)),
                Err(e) => error.set(Some(e)),
            }
        });
    };
    view! {
        <div class="panel-head">
            <h3>{format!("{} — {} device(s), {}, {}", id, run.devices.len(), run.request.transport.label(), run.target)}</h3>
            <button type="button" class="btn small" data-testid="sim-forget" title="Forget the run's view; what it made in the service stays"
                on:click=forget>"Forget run"</button>
            <button type="button" class="btn small danger" data-testid="sim-clean-up" disabled=!ended
                title="Remove what the run left: its registration records, its devices' identities in their hubs, the enrollments made for its TPM devices; then forget it"
                on:click=clean_up>"Clean up"</button>
            <button type="button" class="btn small" data-testid="sim-run-transcript"
                title=format!("A row per device and the flows of the first {} (Markdown)", model::TRANSCRIPT_FLOWS) on:click=transcript>
                "Run transcript"</button>
            {paused.then(|| view! {
                <span class="row">
                    <button type="button" class="btn small" data-testid="sim-continue-all" on:click=move |_| resume_all(false)>"Next step (all)"</button>
                    <button type="button" class="btn small" on:click=move |_| resume_all_end(true)>"Run all to the end"</button>
                </span>
            })}
        </div>
        {move || error.get().map(|e| view! { <ErrorPanel error=e /> })}
        <table class="table compact" data-testid="sim-devices">
            <thead><tr><th>"Registration id"</th><th>"State"</th><th>"Hub"</th><th>"Code"</th><th class="num">"ms"</th></tr></thead>
            <tbody>
                {run.devices.into_iter().map(|d| view! { <DeviceRow device=d selection=selection /> }).collect_view()}
            </tbody>
        </table>
    }
}

#[component]
fn DeviceRow(device: SimDevice, selection: Selection) -> impl IntoView {
    let (label, class) = model::state_badge(device.state);
    let (rid, rid_click) = (device.registration_id.clone(), device.registration_id.clone());
    let paused = device.paused_before.map(|k| format!(" before {}", model::kind_label(k))).unwrap_or_default();
    view! {
        <tr data-testid="sim-device" data-id=rid.clone() class:selected=move || selection.device.get().as_deref() == Some(rid.as_str())>
            <td><button type="button" class="btn link" data-testid="sim-device-open" on:click=move |_| selection.device.set(Some(rid_click.clone()))>
                <code>{device.registration_id.clone()}</code></button>
                {(!device.fault.is_none()).then(|| view! { <span class="chip" data-testid="sim-device-fault" title="The fault this device was given">{model::fault_label(device.fault)}</span> })}</td>
            <td><span class=format!("badge {class}") data-testid="sim-device-state">{label}</span><span class="muted small">{paused}</span></td>
            <td>{device.assigned_hub.clone().unwrap_or_else(|| "—".into())}</td>
            <td>{device.error_code.map(|c| c.to_string()).unwrap_or_default()}</td>
            <td class="num">{device.millis}</td>
        </tr>
    }
}

#[component]
fn DevicePanel(run: String, device: String, run_data: LocalResource<Result<Simulation, ApiError>>) -> impl IntoView {
    let (r, d) = (run.clone(), device.clone());
    let flow = load(move |c| {
        let (r, d) = (r.clone(), d.clone());
        async move { c.simulated_device(&r, &d).await }
    });
    refetch_every(flow, Duration::from_millis(700));
    view! {
        <aside class="card side-panel" data-testid="sim-flow">
            <Loaded data=flow what="the device's flow" let:dev>
                <FlowView run=run.clone() device=dev run_data=run_data />
            </Loaded>
        </aside>
    }
}

#[component]
fn FlowView(run: String, device: SimDevice, run_data: LocalResource<Result<Simulation, ApiError>>) -> impl IntoView {
    let (label, class) = model::state_badge(device.state);
    let cause = model::cause(&device);
    let trace = format!("#/registrations/{}", device.registration_id);
    let download = {
        let device = device.clone();
        move |_| {
            if let Some(Ok(r)) = run_data.get_untracked() {
                let md = model::transcript(&r, &device);
                download_text(&format!("{}-{}.md", r.id, device.registration_id), "text/markdown", &md);
            }
        }
    };
    view! {
        <div class="panel-head">
            <h3><code>{device.registration_id.clone()}</code></h3>
            <span class=format!("badge {class}") data-testid="sim-flow-state">{label}</span>
        </div>
        {device.assigned_hub.clone().map(|h| view! {
            <p data-testid="sim-flow-hub">"Assigned to " <code>{h}</code> " as " <code>{device.device_id.clone().unwrap_or_default()}</code></p>
        })}
        {device.issued_certificate.clone().map(|c| view! {
            <p data-testid="sim-flow-certificate">"Issued certificate: " <code>{c}</code> " (listed on the Certificates page)"</p>
        })}
        {cause.map(|c| view! { <p class="error" data-testid="sim-flow-cause">{c}</p> })}
        <StepControls run=run device=device.clone() />
        <SequenceDiagram device=device.clone() />
        <div class="panel-actions">
            <a class="btn small" href=trace data-testid="sim-flow-trace">"Decision trace"</a>
            <button type="button" class="btn small" data-testid="sim-flow-transcript" on:click=download>"Transcript (Markdown)"</button>
        </div>
    }
}

#[component]
fn StepControls(run: String, device: SimDevice) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let error = RwSignal::new(None::<ApiError>);
    let Some(kind) = device.paused_before else {
        return ().into_any();
    };
    let rid = device.registration_id.clone();
    let go = move |to_end: bool| {
        let (c, run, rid) = (client.get_untracked(), run.clone(), rid.clone());
        spawn_local(async move {
            error.set(c.continue_simulation(&run, Some(&rid), to_end).await.err());
        });
    };
    let go_end = go.clone();
    view! {
        <div class="note" data-testid="sim-paused">
            <strong>{format!("Paused before: {}", model::kind_label(kind))}</strong>
            <p class="small">{kind.explanation()}</p>
            <span class="row">
                <button type="button" class="btn small primary" data-testid="sim-next" on:click=move |_| go(false)>"Next step"</button>
                <button type="button" class="btn small" data-testid="sim-to-end" on:click=move |_| go_end(true)>"Run to the end"</button>
            </span>
            {move || error.get().map(|e| view! { <ErrorPanel error=e /> })}
        </div>
    }
    .into_any()
}

/// The flow as a two-lane sequence: device on the left, the service on the right, an arrow per message.
#[component]
fn SequenceDiagram(device: SimDevice) -> impl IntoView {
    if device.steps.is_empty() {
        return view! { <p class="muted">"No step yet."</p> }.into_any();
    }
    view! {
        <div class="sequence" data-testid="sim-sequence">
            <div class="lanes"><span>"Device"</span><span>"DPS Console"</span></div>
            <ol class="seq-steps">
                {device.steps.into_iter().map(|s| {
                    let dir = match s.direction { Direction::Out => "out", Direction::In => "in", Direction::Local => "local" };
                    view! {
                        <li class=format!("seq-step {dir}") data-testid="sim-step" data-kind=model::kind_label(s.kind)>
                            <div class="seq-line">
                                <span class="muted small">{format!("+{} ms", s.at_ms)}</span>
                                <span class="seq-arrow">{model::arrow(s.direction)}</span>
                                <span class="chip">{model::kind_label(s.kind)}</span>
                                <span class="wrap">{s.title}</span>
                            </div>
                            {s.message.map(|m| view! { <details><summary class="small">"message"</summary><pre class="wrap">{m}</pre></details> })}
                        </li>
                    }
                }).collect_view()}
            </ol>
        </div>
    }
    .into_any()
}

/// The built-in scenarios as one-click demos: run (in the background), where the last run stands step by step,
/// reset.
#[component]
fn Scenarios() -> impl IntoView {
    let list = load(|c| async move { c.scenarios().await });
    refetch_every(list, Duration::from_millis(1000));
    // Made once, here: the cards are made again at each refetch, and a card's action that ends after that still
    // calls this (a callback made inside the list would be gone by then).
    let changed = Callback::new(move |()| list.refetch());
    view! {
        <div class="card" data-testid="scenarios">
            <h3>"Scenarios"</h3>
            <p class="muted">"Ready-made demos: each sets up the hubs, groups, enrollments and certificates it needs, runs devices "
                "through them and checks where they went. Reset removes everything it made. Write your own as a TOML file "
                "(README: Teaching with DPS Console) and add it here, or run it with " <code>"dps simulate scenario FILE"</code> "."</p>
            <OwnScenarioButton on_added=changed />
            <Loaded data=list what="scenarios" let:all>
                <div class="scenario-list">
                    {all.into_iter().map(|s| view! { <ScenarioCard scenario=s on_change=changed /> }).collect_view()}
                </div>
            </Loaded>
        </div>
    }
}

/// Adds a scenario file of the trainer's own (the service checks it as it checks the built-ins).
#[component]
fn OwnScenarioButton(on_added: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let add: Action<Result<Vec<Picked>, String>, Result<ScenarioView, String>> =
        Action::new_local(move |picked: &Result<Vec<Picked>, String>| {
            let (c, picked) = (client.get_untracked(), picked.clone());
            async move {
                let file = picked?.into_iter().next().ok_or_else(|| "no file chosen".to_owned())?;
                let view = c.upload_scenario(&file.text()?).await.map_err(|e| e.to_string())?;
                on_added.run(());
                Ok(view)
            }
        });
    let result = add.value();
    let on_file = move |ev: leptos::ev::Event| {
        let files = files_of_input(&ev);
        clear_input(&ev);
        spawn_local(async move {
            add.dispatch_local(read_all(files).await);
        });
    };
    view! {
        <div class="row">
            <label class="btn small file-button" title="A scenario file (TOML): the format is in README, Teaching with DPS Console">
                "Add your own scenario…"
                <input type="file" accept=".toml,text/plain" data-testid="scenario-upload" class="file-hidden"
                    on:change=on_file on:click=native_picker(false, &["toml"], move |picked| { add.dispatch_local(picked); }) />
            </label>
            {move || match result.get() {
                Some(Ok(v)) => view! { <span class="muted small" data-testid="scenario-added">{format!("Added “{}”.", v.title)}</span> }.into_any(),
                Some(Err(e)) => view! { <p class="form-error" data-testid="scenario-upload-error">{e}</p> }.into_any(),
                None => ().into_any(),
            }}
        </div>
    }
}

#[component]
fn ScenarioCard(scenario: ScenarioView, on_change: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let name = scenario.name.clone();
    let act: Action<bool, Result<ScenarioView, ApiError>> = Action::new_local(move |reset: &bool| {
        let (c, name, reset) = (client.get_untracked(), name.clone(), *reset);
        async move {
            let v = if reset { c.reset_scenario(&name).await } else { c.run_scenario(&name).await };
            on_change.run(());
            v
        }
    });
    let result = act.value();
    let name = scenario.name.clone();
    let delete: Action<(), Result<(), ApiError>> = Action::new_local(move |_| {
        let (c, name) = (client.get_untracked(), name.clone());
        async move {
            let done = c.delete_scenario(&name).await;
            on_change.run(());
            done
        }
    });
    let deleted = delete.value();
    let running = scenario.state == Some(ScenarioState::Running);
    let (label, class) = model::scenario_badge(scenario.state);
    let own = scenario.own;
    view! {
        <div class="scenario" data-testid="scenario" data-name=scenario.name.clone()>
            <div class="panel-head">
                <strong>{scenario.title.clone()}</strong>
                {own.then(|| view! { <span class="badge muted" data-testid="scenario-own">"yours"</span> })}
                <span class=format!("badge {class}") data-testid="scenario-state">{label}</span>
            </div>
            <p class="muted small">{scenario.summary.clone()}</p>
            <span class="row">
                <button type="button" class="btn small primary" data-testid="scenario-run" disabled=move || running || act.pending().get()
                    on:click=move |_| { act.dispatch_local(false); }>"Run"</button>
                <button type="button" class="btn small" data-testid="scenario-reset" disabled=move || running || act.pending().get()
                    on:click=move |_| { act.dispatch_local(true); }>"Reset"</button>
                {(!scenario.steps.is_empty() && !running).then(|| {
                    let v = scenario.clone();
                    view! {
                        <button type="button" class="btn small" data-testid="scenario-transcript" title="Each step, where its devices went, and its first device's flow"
                            on:click=move |_| download_text(&format!("scenario-{}.md", v.name), "text/markdown", &model::scenario_transcript(&v))>
                            "Transcript (Markdown)"
                        </button>
                    }
                })}
                {own.then(|| view! {
                    <button type="button" class="btn small danger" data-testid="scenario-delete" title="Reset what it made, then forget the scenario"
                        disabled=move || running || delete.pending().get() on:click=move |_| { delete.dispatch_local(()); }>"Delete"</button>
                })}
            </span>
            <MaybeError error=Signal::derive(move || deleted.get().and_then(Result::err)) />
            {scenario.error.clone().map(|e| view! { <p class="form-error">{e}</p> })}
            <ol class="steps">
                {scenario.steps.into_iter().map(|st| view! {
                    <li class=format!("step {}", model::step_class(&st)) data-testid="scenario-step">
                        {st.say.clone().map(|s| view! { <p class="small">{s}</p> })}
                        <span class="small">{model::step_line(&st)}</span>
                        <ul>{st.problems.clone().unwrap_or_default().into_iter().map(|p| view! { <li>{p}</li> }).collect_view()}</ul>
                    </li>
                }).collect_view()}
            </ol>
            <MaybeError error=Signal::derive(move || result.get().and_then(Result::err)) />
        </div>
    }
}
