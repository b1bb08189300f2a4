//! The create/edit form of an enrollment or a group: field components over the console model's
//! [`EnrollmentForm`] (its errors, one per field), saved by a Leptos action.

use dps_console_model::document::Document;
use dps_console_model::enrollment_form::{field, EnrollmentForm, FormKind, TPM_NOTE};
use dps_console_model::tpm::registration_id_of_ek;
use leptos::prelude::*;

use super::{words, PageState, Panel};
use crate::api::{ApiClient, ApiError};
use crate::components::form::{field_error, CheckField, FormBinding, SelectField, TextField};
use crate::components::loaded::load;
use crate::components::notice::use_notices;
use crate::components::status::MaybeError;
use crate::lens;

type Binding = FormBinding<EnrollmentForm>;

/// Why a save failed: the id is taken (said under the id field), or the service refused (an error panel).
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    Exists(String),
    Service(ApiError),
}

/// Creates (a bulk `create`, refused when the id exists) or writes the document; on success tells the user,
/// refreshes the list and shows the document.
fn save_action(state: PageState, editing: bool) -> Action<Document, Result<(), Refusal>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let noun = words(state.kind).noun;
    Action::new_local(move |doc: &Document| {
        let (doc, c) = (doc.clone(), client.get_untracked());
        async move {
            let r = if editing { c.put_document(&doc).await.map(|_| ()) } else { c.create_document(&doc).await };
            match r {
                Ok(()) => {
                    notices.info(format!("Saved {}", doc.id()));
                    state.changed();
                    state.panel.set(Panel::Detail(doc.id().to_string()));
                    Ok(())
                }
                Err(e) if e.status() == Some(409) && !editing => {
                    Err(Refusal::Exists(format!("{noun} '{}' already exists: pick another id, or edit it from the list", doc.id())))
                }
                Err(e) => Err(Refusal::Service(e)),
            }
        }
    })
}

#[component]
pub fn FormPanel(state: PageState, form: EnrollmentForm) -> impl IntoView {
    let kind = state.kind;
    let w = words(kind);
    let editing = form.is_edit();
    let form = FormBinding::new(form, EnrollmentForm::errors);
    let save = save_action(state, editing);
    let (saved, pending) = (save.value(), save.pending());
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        form.show_all();
        save.clear();
        let doc = form.form.with_untracked(|f| match kind {
            FormKind::Individual => f.to_enrollment().map(|e| Document::Individual(Box::new(e))),
            FormKind::Group => f.to_group().map(|g| Document::Group(Box::new(g))),
        });
        if let Ok(doc) = doc {
            save.dispatch_local(doc);
        }
    };
    let exists = move || match saved.get() {
        Some(Err(Refusal::Exists(m))) => Some(field_error(field::id(kind), m)),
        _ => None,
    };
    let refused = Signal::derive(move || match saved.get() {
        Some(Err(Refusal::Service(e))) => Some(e),
        _ => None,
    });

    view! {
        <aside class="card side-panel" data-testid=format!("{}-form", w.prefix)>
            <div class="panel-head">
                <h3>{if editing { format!("Edit {}", w.noun) } else { format!("New {}", w.noun) }}</h3>
            </div>
            <form on:submit=submit novalidate=true>
                <TextField bind=form.field(field::id(kind), lens!(id)) label=w.id_label testid="form-registration-id" readonly=editing />
                {exists}
                {(kind == FormKind::Individual).then(|| view! {
                    <TextField bind=form.field(field::DEVICE_ID, lens!(device_id)) label="Device id" testid="form-device-id"
                        placeholder="blank = the registration id" />
                })}
                <SelectField bind=form.field(field::ATTESTATION, lens!(attestation)) label="Attestation" testid="form-attestation"
                    options=attestations(kind) />
                <AttestationFields form=form kind=kind />
                <SelectField bind=form.field(field::STATUS, lens!(status)) label="Provisioning status" testid="form-status"
                    options=vec![("enabled", "Enabled"), ("disabled", "Disabled")] />
                <AllocationFields form=form />
                <CredentialPolicyField form=form />
                <MoreFields form=form />
                <MaybeError error=refused />
                {move || form.refused().then(|| view! { <p class="field-error">"Correct the fields marked above."</p> })}
                <div class="panel-actions">
                    <button type="submit" class="btn primary" data-testid="form-submit" disabled=move || pending.get()>
                        {if editing { "Save" } else { "Create" }}
                    </button>
                    <button type="button" class="btn" data-testid="form-cancel" on:click=move |_| state.panel.set(Panel::None)>"Cancel"</button>
                </div>
            </form>
        </aside>
    }
}

/// The attestations a kind takes (groups: never TPM).
fn attestations(kind: FormKind) -> Vec<(&'static str, &'static str)> {
    match kind {
        FormKind::Individual => vec![("symmetricKey", "Symmetric key"), ("x509", "X.509 certificate"), ("tpm", "TPM")],
        FormKind::Group => vec![("symmetricKey", "Symmetric key"), ("x509", "X.509 (signing certificate or CA)")],
    }
}

/// The fields of the chosen attestation: keys, certificates, or the TPM's keys.
#[component]
fn AttestationFields(form: Binding, kind: FormKind) -> impl IntoView {
    let attestation = Memo::new(move |_| form.form.with(|f| f.attestation.clone()));
    let (cert_label, cert2_label) = match kind {
        FormKind::Individual => ("Client certificate (PEM)", "Secondary client certificate (PEM, optional)"),
        FormKind::Group => ("Signing certificate (PEM)", "Secondary signing certificate (PEM, optional)"),
    };
    move || match attestation.get().as_str() {
        "x509" => view! {
            <TextField bind=form.field(field::PRIMARY_CERTIFICATE, lens!(primary_certificate)) label=cert_label
                testid="form-primary-certificate" rows=4 placeholder="-----BEGIN CERTIFICATE-----" />
            <TextField bind=form.field(field::SECONDARY_CERTIFICATE, lens!(secondary_certificate)) label=cert2_label
                testid="form-secondary-certificate" rows=4 />
            <TextField bind=form.field(field::CA_REFERENCE, lens!(ca_reference)) label="…or the name of a CA certificate"
                testid="form-ca-reference" placeholder="as listed under Certificates" />
        }
        .into_any(),
        "tpm" => view! { <TpmFields form=form /> }.into_any(),
        _ => view! {
            <TextField bind=form.field(field::PRIMARY_KEY, lens!(primary_key)) label="Primary key" testid="form-primary-key"
                placeholder="blank = generated by the service" />
            <TextField bind=form.field(field::SECONDARY_KEY, lens!(secondary_key)) label="Secondary key" testid="form-secondary-key"
                placeholder="blank = generated by the service" />
        }
        .into_any(),
    }
}

/// The TPM's endorsement key (with the registration id the SDKs derive from it) and storage root key.
#[component]
fn TpmFields(form: Binding) -> impl IntoView {
    let derived_id = move || form.form.with(|f| registration_id_of_ek(&f.endorsement_key).ok());
    view! {
        <p class="note">{TPM_NOTE}</p>
        <TextField bind=form.field(field::ENDORSEMENT_KEY, lens!(endorsement_key)) label="Endorsement key (base64)"
            testid="form-endorsement-key" rows=4 />
        {move || derived_id().map(|id| view! {
            <p class="note" data-testid="form-ek-registration-id">
                "Registration id derived from this EK (the C, Node and Java SDKs use it): " <code>{id}</code>
            </p>
        })}
        <TextField bind=form.field(field::STORAGE_ROOT_KEY, lens!(storage_root_key)) label="Storage root key (base64, optional)"
            testid="form-storage-root-key" rows=4 />
    }
}

/// The hubs (with the linked ones as a reminder), the allocation policy and a custom policy's webhook.
#[component]
fn AllocationFields(form: Binding) -> impl IntoView {
    let linked = load(|c| async move { c.hubs().await });
    let linked = move || linked.get().and_then(Result::ok).map(|h| h.into_iter().map(|h| h.host_name).collect::<Vec<_>>());
    let custom = Memo::new(move |_| form.form.with(|f| f.allocation_policy == "custom"));
    view! {
        <TextField bind=form.field(field::IOT_HUBS, lens!(iot_hubs)) label="IoT hubs" testid="form-iot-hubs" rows=4
            placeholder="blank = every linked hub; one host name per line" />
        {move || linked().filter(|h| !h.is_empty()).map(|h| view! {
            <p class="muted small">"Linked hubs: " {h.join(", ")}</p>
        })}
        <SelectField bind=form.field(field::ALLOCATION_POLICY, lens!(allocation_policy)) label="Allocation policy"
            testid="form-allocation-policy"
            options=vec![("", "Service default"), ("hashed", "Hashed (weighted)"), ("geoLatency", "Lowest latency"),
                ("static", "Static (one hub)"), ("custom", "Custom (webhook)")] />
        {move || custom.get().then(|| view! {
            <TextField bind=form.field(field::WEBHOOK_URL, lens!(webhook_url)) label="Webhook URL" testid="form-webhook-url"
                placeholder="https://…" />
            <TextField bind=form.field(field::API_VERSION, lens!(api_version)) label="Webhook API version" testid="form-api-version"
                placeholder="2021-10-01" />
        })}
    }
}

/// The credential policy that issues certificates to devices sending a CSR (with the existing ones as a reminder).
#[component]
fn CredentialPolicyField(form: Binding) -> impl IntoView {
    let policies = load(|c| async move { c.credential_policies().await });
    let names = move || policies.get().and_then(Result::ok).map(|p| p.into_iter().map(|p| p.name).collect::<Vec<_>>());
    view! {
        <TextField bind=form.field(field::CREDENTIAL_POLICY, lens!(credential_policy_name)) label="Credential policy"
            testid="form-credential-policy" placeholder="blank = none (no certificate issued from a CSR)" />
        {move || names().filter(|n| !n.is_empty()).map(|n| view! {
            <p class="muted small">"Credential policies: " {n.join(", ")}</p>
        })}
    }
}

/// Reprovisioning, the initial twin and IoT Edge.
#[component]
fn MoreFields(form: Binding) -> impl IntoView {
    view! {
        <fieldset class="checks">
            <legend>"When the device registers again"</legend>
            <CheckField bind=form.field("updateHubAssignment", lens!(update_hub_assignment)) label="Re-assign its hub"
                testid="form-update-hub-assignment" />
            <CheckField bind=form.field("migrateDeviceData", lens!(migrate_device_data)) label="Migrate its data to the new hub"
                testid="form-migrate-device-data" />
        </fieldset>
        <TextField bind=form.field(field::INITIAL_TWIN, lens!(initial_twin)) label="Initial twin (JSON)" testid="form-initial-twin"
            rows=4 placeholder=r#"{ "tags": { … }, "properties": { "desired": { … } } }"# />
        <CheckField bind=form.field("iotEdge", lens!(iot_edge)) label="IoT Edge device" testid="form-edge" />
    }
}
