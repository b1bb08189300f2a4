//! What the detail shows of a document: status, attestation (keys, certificates, TPM), hubs, policies, twin,
//! registration and dates.

use dps_console_model::document::{attestation_label, mask_secret, Document};
use dps_console_model::enrollment_form::TPM_NOTE;
use dps_console_model::format;
use dps_proto::{AttestationMechanism, X509Attestation};
use leptos::prelude::*;

use crate::components::cells::status_badge;
use crate::components::copy::CopyButton;

#[component]
pub fn DocFacts(doc: Document, revealed: RwSignal<bool>) -> impl IntoView {
    let a = doc.attestation().clone();
    view! {
        <dl class="pairs">
            <dt>"Status"</dt>
            <dd>{status_badge(doc.enabled())}</dd>
            <dt>"Attestation"</dt>
            <dd>{attestation_label(a.kind)}</dd>
            {match &doc {
                Document::Individual(e) => e.device_id.clone().map(|d| view! { <dt>"Device id"</dt> <dd class="mono">{d}</dd> }),
                Document::Group(_) => None,
            }}
            {doc.keys().map(|(p, s)| view! { <KeyRows primary=p secondary=s revealed=revealed /> })}
            {a.x509.as_ref().map(|x| view! { <CertificateRows x509=x.clone() /> })}
            {tpm_rows(&a)}
            <dt>"Hubs"</dt>
            <dd>{let h = doc.hubs(); if h.is_empty() { "every linked hub".to_string() } else { h.join(", ") }}</dd>
            <dt>"Allocation policy"</dt>
            <dd>{doc.policy_label()}</dd>
            <SettingsRows doc=doc.clone() />
            <dt>"Last updated"</dt>
            <dd class="muted">{doc.last_updated().map(format::date_time).unwrap_or_default()}</dd>
        </dl>
    }
}

/// The keys, masked until revealed, each with a copy button.
#[component]
fn KeyRows(primary: String, secondary: String, revealed: RwSignal<bool>) -> impl IntoView {
    let key_row = |label: &'static str, testid: &'static str, key: String| {
        let shown = key.clone();
        view! {
            <dt>{label}</dt>
            <dd class="secret">
                <code data-testid=testid>{move || if revealed.get() { shown.clone() } else { mask_secret(&shown) }}</code>
                <CopyButton text=key testid=format!("copy-{testid}") />
            </dd>
        }
    };
    view! {
        {key_row("Primary key", "primary-key", primary)}
        {key_row("Secondary key", "secondary-key", secondary)}
        <dt></dt>
        <dd>
            <button type="button" class="btn small" data-testid="reveal-keys" on:click=move |_| revealed.update(|r| *r = !*r)>
                {move || if revealed.get() { "Hide keys" } else { "Reveal keys" }}
            </button>
        </dd>
    }
}

/// The certificates' subjects, thumbprints and expiry, and the CA references.
#[component]
fn CertificateRows(x509: X509Attestation) -> impl IntoView {
    let infos: Vec<String> = [&x509.client_certificates, &x509.signing_certificates]
        .into_iter()
        .flatten()
        .flat_map(|c| [c.primary.as_ref(), c.secondary.as_ref()])
        .flatten()
        .map(|c| match &c.info {
            Some(i) => format!(
                "{} (SHA-256 {}, until {})",
                i.subject_name,
                i.sha256_thumbprint,
                i.not_after_utc.map(format::date_time).unwrap_or_default()
            ),
            None => "certificate (no details)".to_string(),
        })
        .collect();
    let cas: Vec<String> = x509.ca_references.iter().flat_map(|r| [r.primary.clone(), r.secondary.clone()]).flatten().collect();
    view! {
        <dt>"Certificates"</dt>
        <dd>{if infos.is_empty() { "—".to_string() } else { infos.join("; ") }}</dd>
        <dt>"CA references"</dt>
        <dd>{if cas.is_empty() { "—".to_string() } else { cas.join(", ") }}</dd>
    }
}

/// The start of the endorsement key, and why TPM devices are refused.
fn tpm_rows(a: &AttestationMechanism) -> impl IntoView {
    a.tpm.as_ref().map(|t| {
        let ek: String = t.endorsement_key.clone().unwrap_or_default().chars().take(40).collect();
        view! { <dt>"Endorsement key"</dt> <dd class="mono">{ek} "…"</dd> <dt></dt> <dd class="muted">{TPM_NOTE}</dd> }
    })
}

/// Reprovisioning, IoT Edge, the initial twin, the registration (individual enrollments) and the creation date.
#[component]
fn SettingsRows(doc: Document) -> impl IntoView {
    let (twin, edge, reprovision, state, created) = match &doc {
        Document::Individual(e) => (
            e.initial_twin.clone(),
            e.capabilities.is_some_and(|c| c.iot_edge),
            e.reprovision_policy.unwrap_or_default(),
            e.registration_state.clone(),
            e.created_date_time_utc,
        ),
        Document::Group(g) => (
            g.initial_twin.clone(),
            g.capabilities.is_some_and(|c| c.iot_edge),
            g.reprovision_policy.unwrap_or_default(),
            None,
            g.created_date_time_utc,
        ),
    };
    view! {
        <dt>"Reprovisioning"</dt>
        <dd>{format!(
            "{}; {}",
            if reprovision.update_hub_assignment { "re-assigns the hub" } else { "keeps the hub" },
            if reprovision.migrate_device_data { "migrates the device data" } else { "resets the device data" }
        )}</dd>
        <dt>"IoT Edge"</dt>
        <dd>{if edge { "yes" } else { "no" }}</dd>
        <dt>"Initial twin"</dt>
        <dd><pre class="json">{twin.and_then(|t| serde_json::to_string_pretty(&t).ok()).unwrap_or_else(|| "—".into())}</pre></dd>
        {state.map(|s| {
            let trace = s.registration_id.clone().map(|id| format!("#/registrations/{id}"));
            view! {
                <dt>"Registration"</dt>
                <dd>
                    {s.status.map(|st| st.as_str().to_string()).unwrap_or_else(|| "not registered".into())}
                    {s.assigned_hub.map(|h| format!(" → {h}"))}
                    {trace.map(|href| view! { " " <a href=href data-testid="open-trace">"decision trace"</a> })}
                </dd>
            }
        })}
        <dt>"Created"</dt>
        <dd class="muted">{created.map(format::date_time).unwrap_or_default()}</dd>
    }
}
