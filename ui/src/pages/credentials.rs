//! Certificates issued from a CSR (the Certificates page's lower half): the credential policies enrollments name
//! (`credentialPolicyName`) — issuer, validity, key types — with a form to make or replace one (an uploaded CA's
//! key is sent once and never shown again), and the log of the certificates the service issued.

use dps_console_model::format;
use dps_proto::credentials::{KeyType, DEFAULT_VALIDITY_DAYS};
use dps_proto::{CredentialPolicy, IssuedCertificate, IssuerKind};
use leptos::prelude::*;

use crate::api::{ApiClient, ApiError};
use crate::components::confirm::ConfirmDialog;
use crate::components::copy::CopyButton;
use crate::components::loaded::{load, Loaded};
use crate::components::notice::use_notices;
use crate::components::status::{EmptyState, MaybeError};

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(format::date_time).unwrap_or_else(|| "—".into())
}

fn issuer_label(p: &CredentialPolicy) -> String {
    let subject = p.issuer_info.as_ref().map(|i| i.subject_name.clone()).unwrap_or_default();
    match p.issuer {
        IssuerKind::Local => format!("Local CA {subject}"),
        IssuerKind::Uploaded => format!("Uploaded: {subject}"),
    }
}

fn key_labels(keys: &[KeyType]) -> String {
    keys.iter().map(|k| k.label()).collect::<Vec<_>>().join(", ")
}

/// The credential policies card.
#[component]
pub fn CredentialPolicies() -> impl IntoView {
    let policies = load(|c| async move { c.credential_policies().await });
    let reload = Callback::new(move |()| policies.refetch());
    view! {
        <div class="card" data-testid="credential-policies">
            <h3>"Credential policies"</h3>
            <p class="muted">"Devices that send a CSR with their registration (api-version 2025-07-01-preview or later) get a "
                "certificate from the policy their enrollment or group names in " <code>"credentialPolicyName"</code> "."</p>
            <Loaded data=policies what="credential policies" let:list>
                <PolicyTable list=list reload=reload />
            </Loaded>
            <PolicyForm reload=reload />
        </div>
    }
}

#[component]
fn PolicyTable(list: Vec<CredentialPolicy>, reload: Callback<()>) -> impl IntoView {
    if list.is_empty() {
        return view! { <EmptyState title="No credential policy" hint="Make one below; the local CA signs unless you upload a CA." /> }
            .into_any();
    }
    view! {
        <table class="table">
            <thead><tr><th>"Name"</th><th>"Issuer"</th><th>"Days"</th><th>"Key types"</th><th></th></tr></thead>
            <tbody>{list.into_iter().map(|p| view! { <PolicyRow policy=p reload=reload /> }).collect_view()}</tbody>
        </table>
    }
    .into_any()
}

#[component]
fn PolicyRow(policy: CredentialPolicy, reload: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let name = policy.name.clone();
    let delete: Action<(), Result<(), ApiError>> = Action::new_local({
        let name = name.clone();
        move |_| {
            let (c, name) = (client.get_untracked(), name.clone());
            async move {
                c.delete_credential_policy(&name).await?;
                notices.info(format!("Credential policy {name} deleted."));
                reload.run(());
                Ok(())
            }
        }
    });
    let confirm = RwSignal::new(false);
    let message =
        format!("Delete the credential policy {name}? Devices of enrollments that name it can no longer get a certificate (400012).");
    view! {
        <tr data-testid=format!("policy-{name}")>
            <td><strong>{name.clone()}</strong></td>
            <td class="wrap">{issuer_label(&policy)}</td>
            <td>{policy.validity_days}</td>
            <td class="wrap">{key_labels(&policy.key_types)}</td>
            <td class="actions">
                <button type="button" class="btn small danger" data-testid="policy-delete" on:click=move |_| confirm.set(true)>"Delete"</button>
                <ConfirmDialog open=confirm title="Delete the policy?" message=message on_confirm=Callback::new(move |()| { delete.dispatch_local(()); }) />
                <MaybeError error=Signal::derive(move || delete.value().get().and_then(Result::err)) />
            </td>
        </tr>
    }
}

/// What the form holds.
#[derive(Clone, Copy)]
struct PolicyFields {
    name: RwSignal<String>,
    uploaded: RwSignal<bool>,
    certificate: RwSignal<String>,
    key: RwSignal<String>,
    days: RwSignal<String>,
    keys: RwSignal<Vec<KeyType>>,
}

impl PolicyFields {
    fn new() -> Self {
        Self {
            name: RwSignal::new(String::new()),
            uploaded: RwSignal::new(false),
            certificate: RwSignal::new(String::new()),
            key: RwSignal::new(String::new()),
            days: RwSignal::new(DEFAULT_VALIDITY_DAYS.to_string()),
            keys: RwSignal::new(KeyType::DEFAULT.to_vec()),
        }
    }

    /// The policy to send, or what is wrong with the form.
    fn policy(&self) -> Result<CredentialPolicy, String> {
        let name = self.name.get_untracked().trim().to_owned();
        if name.is_empty() {
            return Err("Name: give the policy a name".into());
        }
        let mut p = CredentialPolicy::local(name);
        p.validity_days = self.days.get_untracked().trim().parse().map_err(|_| "Days: a whole number of days, 1 to 3650".to_owned())?;
        p.key_types = self.keys.get_untracked();
        if self.uploaded.get_untracked() {
            p.issuer = IssuerKind::Uploaded;
            p.certificate = Some(self.certificate.get_untracked());
            p.private_key = Some(self.key.get_untracked()).filter(|k| !k.trim().is_empty());
        }
        Ok(p)
    }
}

#[component]
fn PolicyForm(reload: Callback<()>) -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let f = PolicyFields::new();
    let problem = RwSignal::new(None::<String>);
    let save: Action<CredentialPolicy, Result<(), ApiError>> = Action::new_local(move |p: &CredentialPolicy| {
        let (c, p) = (client.get_untracked(), p.clone());
        async move {
            let saved = c.put_credential_policy(&p).await?;
            notices.info(format!("Credential policy {} saved.", saved.name));
            f.key.set(String::new());
            reload.run(());
            Ok(())
        }
    });
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match f.policy() {
            Ok(p) => {
                problem.set(None);
                save.dispatch_local(p);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    view! {
        <form class="form" data-testid="credential-policy-form" on:submit=submit>
            <h4>"Make or replace a policy"</h4>
            <label for="policy-name">"Name"</label>
            <input id="policy-name" name="name" data-testid="policy-name" placeholder="e.g. line-1"
                prop:value=move || f.name.get() on:input=move |ev| f.name.set(event_target_value(&ev)) />
            <label for="policy-days">"Valid for (days)"</label>
            <input id="policy-days" type="number" min="1" max="3650" data-testid="policy-days"
                prop:value=move || f.days.get() on:input=move |ev| f.days.set(event_target_value(&ev)) />
            <span>"Key types"</span>
            <KeyTypeChoice keys=f.keys />
            <label for="policy-uploaded">"Issuer"</label>
            <label class="check">
                <input id="policy-uploaded" type="checkbox" data-testid="policy-uploaded" prop:checked=move || f.uploaded.get()
                    on:change=move |ev| f.uploaded.set(event_target_checked(&ev)) />
                " my own CA (else the service's local CA)"
            </label>
            <Show when=move || f.uploaded.get()>
                <label for="policy-certificate">"CA certificate, then its chain (PEM)"</label>
                <textarea id="policy-certificate" rows="4" data-testid="policy-certificate" placeholder="-----BEGIN CERTIFICATE-----"
                    prop:value=move || f.certificate.get() on:input=move |ev| f.certificate.set(event_target_value(&ev))></textarea>
                <label for="policy-key">"CA private key (PEM; sealed at rest, never shown again)"</label>
                <textarea id="policy-key" rows="3" data-testid="policy-key" placeholder="-----BEGIN PRIVATE KEY----- (blank: keep the stored key)"
                    prop:value=move || f.key.get() on:input=move |ev| f.key.set(event_target_value(&ev))></textarea>
            </Show>
            <div class="form-actions">
                <button type="submit" class="btn primary" data-testid="policy-submit" disabled=move || save.pending().get()>"Save"</button>
            </div>
            {move || problem.get().map(|p| view! { <p class="form-error" role="alert">{p}</p> })}
            <MaybeError error=Signal::derive(move || save.value().get().and_then(Result::err)) />
        </form>
    }
}

#[component]
fn KeyTypeChoice(keys: RwSignal<Vec<KeyType>>) -> impl IntoView {
    let toggle = move |k: KeyType, on: bool| {
        keys.update(|v| {
            v.retain(|x| *x != k);
            if on {
                v.push(k);
            }
        })
    };
    view! {
        <div class="checks" data-testid="policy-key-types">
            {KeyType::ALL.into_iter().map(|k| view! {
                <label class="check">
                    <input type="checkbox" data-key=k.as_str() prop:checked=move || keys.get().contains(&k)
                        on:change=move |ev| toggle(k, event_target_checked(&ev)) />
                    " " {k.label()}
                </label>
            }).collect_view()}
        </div>
    }
}

/// The issuance log card: the newest first, filtered by registration id.
#[component]
pub fn IssuedCertificates() -> impl IntoView {
    let filter = RwSignal::new(String::new());
    let issued = load(move |c| {
        let id = filter.get();
        async move { c.issued_certificates(&id).await }
    });
    view! {
        <div class="card" data-testid="issued-certificates">
            <h3>"Issued certificates"</h3>
            <input type="search" data-testid="issued-filter" placeholder="Registration id"
                prop:value=move || filter.get() on:change=move |ev| filter.set(event_target_value(&ev)) />
            <Loaded data=issued what="issued certificates" let:list>
                <IssuedTable list=list />
            </Loaded>
        </div>
    }
}

#[component]
fn IssuedTable(list: Vec<IssuedCertificate>) -> impl IntoView {
    if list.is_empty() {
        return view! { <EmptyState title="No certificate issued" hint="Devices whose enrollment names a policy get one when they send a CSR." /> }
            .into_any();
    }
    let rows = list.into_iter().map(|c| {
        let pem = c.certificate.clone().unwrap_or_default();
        let key = c.key_type.map(KeyType::label).unwrap_or("—");
        view! {
            <tr data-testid=format!("issued-{}", c.registration_id)>
                <td><strong>{c.registration_id.clone()}</strong></td>
                <td>{c.credential_policy_name.clone()}</td>
                <td class="wrap">{c.info.subject_name.clone()}</td>
                <td><code class="small">{c.info.serial_number.clone()}</code></td>
                <td>{key}</td>
                <td>{time(c.info.not_after_utc)}</td>
                <td>{time(c.issued_date_time_utc)}</td>
                <td class="actions"><CopyButton text=pem label="Copy PEM" /></td>
            </tr>
        }
    });
    view! {
        <table class="table">
            <thead><tr><th>"Registration id"</th><th>"Policy"</th><th>"Subject"</th><th>"Serial number"</th><th>"Key"</th>
                <th>"Expires"</th><th>"Issued"</th><th></th></tr></thead>
            <tbody>{rows.collect_view()}</tbody>
        </table>
    }
    .into_any()
}
