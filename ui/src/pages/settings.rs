//! Settings: where the service listens (ports, host name), its TLS material (the CA, read with the chain
//! inspector), the shared access policies of the service API with their keys, and the console's admin password.

use dps_console_model::format;
use dps_proto::{AccessPolicyInfo, ChainReport, EndpointInfo, LimitsSettings};
use leptos::prelude::*;

use super::{Page, PageHeader};
use crate::api::ApiClient;
use crate::components::copy::CopyButton;
use crate::components::loaded::{load, Load, Loaded};
use crate::components::notice::use_notices;
use crate::components::poll::now;
use crate::components::status::{EmptyState, MaybeError};
use crate::desktop;

/// The service's rule (`crates/dps-service/src/admin.rs`, `MIN_PASSWORD_LEN`).
const MIN_PASSWORD_LEN: usize = 10;

/// Why a new password cannot be sent, if it cannot.
fn password_problem(current: &str, password: &str, confirm: &str) -> Option<String> {
    if current.is_empty() {
        Some("Enter the current password.".into())
    } else if password.chars().count() < MIN_PASSWORD_LEN {
        Some(format!("The password must have at least {MIN_PASSWORD_LEN} characters."))
    } else if password != confirm {
        Some("The two passwords differ.".into())
    } else {
        None
    }
}

#[component]
pub fn Settings() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let info = load(|c| async move { c.service_info().await });
    let tls = load(|c| async move { c.inspect(&c.ca_pem().await?).await });
    let policies = load(|c| async move { c.policies().await });

    view! {
        <section class="page">
            <PageHeader page=Page::Settings />
            <Loaded data=info what="service settings" let:i>
                <Endpoints info=i tls=tls />
            </Loaded>
            <div class="card">
                <h3>"Shared access policies"</h3>
                <p class="muted">"Service SDKs and the " <code>"dps"</code> " CLI sign their requests with one of these keys."</p>
                <Loaded data=policies what="policies" let:list>
                    <PolicyTable list=list />
                </Loaded>
            </div>
            <LimitsProfile />
            {client.get_untracked().is_desktop().then(|| view! { <DesktopPreferences /> })}
            <PasswordForm />
        </section>
    }
}

#[component]
fn PolicyTable(list: Vec<AccessPolicyInfo>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <EmptyState title="No access policy" hint="The service makes its policies at first start; restart it to recreate them." />
        }
        .into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Policy"</th><th>"Rights"</th><th>"Primary key"</th><th>"Connection string"</th></tr></thead>
            <tbody>{list.into_iter().map(|p| view! { <PolicyRow policy=p /> }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn Endpoints(info: EndpointInfo, tls: Load<ChainReport>) -> impl IntoView {
    let port = |p: Option<u16>| p.map(|p| p.to_string()).unwrap_or_else(|| "off".into());
    let ca_path = info.ca_certificate.clone();
    view! {
        <div class="cards">
            <div class="card">
                <h3>"Endpoints"</h3>
                <dl class="pairs" data-testid="settings-ports">
                    <dt>"HTTPS (devices, service API)"</dt><dd><code>{port(info.ports.https)}</code></dd>
                    <dt>"MQTT over TLS (devices)"</dt><dd><code>{port(info.ports.mqtt)}</code></dd>
                    <dt>"AMQP"</dt><dd><code>{port(info.ports.amqp)}</code></dd>
                    <dt>"Console"</dt><dd><code>{port(info.ports.console)}</code></dd>
                </dl>
                <dl class="pairs" data-testid="settings-hosts">
                    <dt>"Host name"</dt><dd><code>{info.host.clone()}</code></dd>
                    <dt>"ID scope"</dt><dd><code>{info.id_scope.clone()}</code></dd>
                </dl>
                <p class="muted small">"Ports and host are set when the service starts (" <code>"dps serve --help"</code> ")."</p>
            </div>
            <div class="card">
                <h3>"TLS"</h3>
                <Loaded data=tls what="the CA certificate" let:report>
                    <TlsFacts report=report ca_path=ca_path.clone() />
                </Loaded>
            </div>
        </div>
    }
}

/// The service's CA: subject, validity, key and thumbprint.
#[component]
fn TlsFacts(report: ChainReport, ca_path: String) -> impl IntoView {
    let Some(c) = report.certificates.into_iter().next() else {
        return view! { <p class="muted">"The CA certificate could not be read."</p> }.into_any();
    };
    view! {
        <dl class="pairs" data-testid="settings-tls">
            <dt>"CA subject"</dt><dd>{c.subject.clone()}</dd>
            <dt>"Valid"</dt>
            <dd>{format::validity(c.not_before_utc, c.not_after_utc, now())}
                " (" {c.not_after_utc.map(format::date_time).unwrap_or_default()} ")"</dd>
            <dt>"Key"</dt><dd>{c.public_key_algorithm.clone()}</dd>
            <dt>"SHA-256 thumbprint"</dt><dd><code class="wrap">{c.sha256_thumbprint.clone()}</code></dd>
        </dl>
        <p class="muted small">"The service's TLS certificates are issued by this CA; devices must trust it. File: "
            <code class="wrap">{ca_path}</code></p>
    }
    .into_any()
}

/// The Azure limits profile toggle (`GET/PUT /service/limits`; README "Azure limits profile").
#[component]
fn LimitsProfile() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let limits = load(|c| async move { c.limits().await });
    // The answer (the new settings, or why not) replaces what is shown.
    let toggle = Action::new_local(move |on: &bool| {
        let (c, on) = (client.get_untracked(), *on);
        async move {
            let r = c.set_limits(if on { "azure" } else { "default" }).await;
            if r.is_ok() {
                notices.info(if on {
                    "Azure limits profile on: devices are throttled as in Azure."
                } else {
                    "Default limits: no throttling."
                });
            }
            limits.set(Some(r));
        }
    });
    let busy = toggle.pending();
    view! {
        <div class="card" data-testid="settings-limits">
            <h3>"Limits profile"</h3>
            <p class="muted">"Apply Azure's published quotas and rates (429 with retry-after) to test device back-off before the cloud does."</p>
            <Loaded data=limits what="the limits profile" let:l>
                <Limits limits=l busy=busy on_toggle=Callback::new(move |on| { toggle.dispatch_local(on); }) />
            </Loaded>
        </div>
    }
}

#[component]
fn Limits(limits: LimitsSettings, busy: Memo<bool>, on_toggle: Callback<bool>) -> impl IntoView {
    let l = limits;
    let on = l.profile == "azure";
    let a = l.azure;
    view! {
        <label class="row">
            <input type="checkbox" data-testid="limits-azure-toggle" prop:checked=on disabled=move || busy.get()
                on:change=move |ev| on_toggle.run(event_target_checked(&ev)) />
            " Azure limits profile " <strong data-testid="limits-profile">{l.profile.clone()}</strong>
        </label>
        <dl class="pairs">
            <dt>"Registrations"</dt><dd>{format!("{} per {} s per service", a.registrations_per_window, a.registration_window_secs)}</dd>
            <dt>"Polls"</dt><dd>{format!("{} per {} s per device", a.polls_per_window, a.poll_window_secs)}</dd>
            <dt>"Service operations"</dt><dd>{format!("{} per {} s", a.service_operations_per_window, a.service_operation_window_secs)}</dd>
            <dt>"Bulk items / groups per type / CA certificates / linked hubs"</dt>
            <dd>{format!("{} / {} / {} / {}", a.max_bulk_items, a.max_enrollment_groups, a.max_ca_certificates, a.max_linked_hubs)}</dd>
        </dl>
        {l.configured.then(|| view! {
            <p class="muted small">"The configuration names a profile (" <code>"limits"</code> "); it applies again at the next start."</p>
        })}
    }
}

#[component]
fn PolicyRow(policy: AccessPolicyInfo) -> impl IntoView {
    let reveal = RwSignal::new(false);
    let key = policy.primary_key.clone();
    let cs = policy.connection_string.clone();
    let masked_cs = format::mask_connection_string(&cs);
    let (key_shown, cs_shown) = (key.clone(), cs.clone());
    view! {
        <tr data-testid="policy-row" data-id=policy.key_name.clone()>
            <td><strong>{policy.key_name.clone()}</strong></td>
            <td>{policy.rights.join(", ")}</td>
            <td>
                <code class="wrap">{move || if reveal.get() { key_shown.clone() } else { format::MASK.to_string() }}</code>
                " " <CopyButton text=key testid="copy-policy-key" />
            </td>
            <td>
                <code class="wrap">{move || if reveal.get() { cs_shown.clone() } else { masked_cs.clone() }}</code>
                <div class="row">
                    <button type="button" class="btn small" data-testid="policy-reveal" on:click=move |_| reveal.update(|r| *r = !*r)>
                        {move || if reveal.get() { "Hide" } else { "Reveal" }}
                    </button>
                    <CopyButton text=cs testid="copy-policy-connection-string" />
                </div>
            </td>
        </tr>
    }
}

#[component]
fn PasswordForm() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let current = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let confirm = RwSignal::new(String::new());
    let result = RwSignal::new(None::<Result<String, String>>);
    let change = Action::new_local(move |(old, p): &(String, String)| {
        let (api, old, p) = (client.get_untracked(), old.clone(), p.clone());
        async move {
            match api.set_admin_password(&old, &p).await {
                Ok(()) => {
                    current.set(String::new());
                    password.set(String::new());
                    confirm.set(String::new());
                    let next = if api.is_desktop() {
                        "Password changed. Browser sessions have ended: sign in there with the new password."
                    } else {
                        "Password changed. Every session has ended: sign in again with the new password."
                    };
                    result.set(Some(Ok(next.into())));
                    Ok(())
                }
                Err(e) => {
                    result.set(Some(Err("The password was not changed.".into())));
                    Err(e)
                }
            }
        }
    });
    let (changed, busy) = (change.value(), change.pending());

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (old, p, c) = (current.get_untracked(), password.get_untracked(), confirm.get_untracked());
        change.clear();
        if let Some(problem) = password_problem(&old, &p, &c) {
            result.set(Some(Err(problem)));
            return;
        }
        change.dispatch_local((old, p));
    };

    view! {
        <form class="card form" on:submit=submit>
            <h3>"Admin password"</h3>
            <p class="muted">{format!("The password of the console's sign-in page: at least {MIN_PASSWORD_LEN} characters. ")}
                "Changing it needs the current one and ends every console session."</p>
            <input type="text" name="username" autocomplete="username" value="admin" readonly hidden />
            <label for="password-current">"Current password"</label>
            <input id="password-current" type="password" autocomplete="current-password" data-testid="password-current"
                prop:value=move || current.get() on:input=move |ev| current.set(event_target_value(&ev)) />
            <label for="password-new">"New password"</label>
            <input id="password-new" type="password" autocomplete="new-password" data-testid="password-new"
                prop:value=move || password.get() on:input=move |ev| password.set(event_target_value(&ev)) />
            <label for="password-confirm">"Confirm"</label>
            <input id="password-confirm" type="password" autocomplete="new-password" data-testid="password-confirm"
                prop:value=move || confirm.get() on:input=move |ev| confirm.set(event_target_value(&ev)) />
            <div class="form-actions">
                <button type="submit" class="btn primary" data-testid="password-submit" disabled=move || busy.get()>"Change password"</button>
            </div>
            {move || result.get().map(|r| match r {
                Ok(m) => view! { <p class="form-ok" role="status" data-testid="password-result">{m}</p> }.into_any(),
                Err(m) => view! { <p class="form-error" role="alert" data-testid="password-result">{m}</p> }.into_any(),
            })}
            <MaybeError error=Signal::derive(move || changed.get().and_then(Result::err)) />
        </form>
    }
}

/// The desktop shell's own preferences (only in the desktop shell).
#[component]
fn DesktopPreferences() -> impl IntoView {
    let prefs: Load<desktop::Preferences> = LocalResource::new(desktop::get_preferences);
    let notices = use_notices();
    // The answer (the saved preferences, or why not) replaces what is shown.
    let save = Action::new_local(move |p: &desktop::Preferences| {
        let p = p.clone();
        async move {
            let r = desktop::set_preferences(&p).await;
            if r.is_ok() {
                notices.info("Preferences saved.");
            }
            prefs.set(Some(r));
        }
    });
    let toggle = move |ev: leptos::ev::Event| {
        save.dispatch_local(desktop::Preferences { notify_failed_registrations: event_target_checked(&ev) });
    };
    view! {
        <div class="card">
            <h3>"Desktop"</h3>
            <Loaded data=prefs what="preferences" let:p>
                <label class="check">
                    <input type="checkbox" data-testid="settings-notify" prop:checked=p.notify_failed_registrations on:change=toggle />
                    " Notify me when a registration fails or a device is refused"
                </label>
            </Loaded>
        </div>
    }
}
