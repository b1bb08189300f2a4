//! Enrollment groups: the Enrollments views for groups, plus the calculator of a group device's derived key.

use dps_console_model::derived_key::derive_device_key;
use dps_console_model::enrollment_form::FormKind;
use dps_proto::DeviceRegistrationState;
use leptos::prelude::*;

use super::enrollments::EnrollmentsPage;
use crate::api::PageOf;
use crate::components::copy::CopyButton;
use crate::components::loaded::{load, Loaded};

/// The Groups page.
#[component]
pub fn Groups() -> impl IntoView {
    view! { <EnrollmentsPage kind=FormKind::Group /> }
}

/// A device's key in a symmetric-key group: base64(HMAC-SHA256(group primary key, registration id)), computed
/// in the page (the group key never leaves it).
#[component]
pub fn DerivedKey(group_key: String) -> impl IntoView {
    let registration_id = RwSignal::new(String::new());
    let derived = move || {
        let id = registration_id.get();
        if id.trim().is_empty() {
            Ok(String::new())
        } else {
            derive_device_key(&group_key, &id)
        }
    };
    let for_copy = derived.clone();
    view! {
        <div class="derived-key">
            <h4>"Device key"</h4>
            <p class="muted small">"A device of this group authenticates with a key derived from the group's primary key and its registration id."</p>
            <label class="field">
                <span>"Registration id"</span>
                <input type="text" data-testid="derived-key-id" placeholder="e.g. sensor-0042"
                    prop:value=move || registration_id.get() on:input=move |ev| registration_id.set(event_target_value(&ev)) />
            </label>
            {move || match derived() {
                Ok(k) => view! {
                    <div class="secret">
                        <code data-testid="derived-key-value">{k}</code>
                    </div>
                }.into_any(),
                Err(m) => view! {
                    <div>
                        <code data-testid="derived-key-value"></code>
                        <span class="field-error">{m}</span>
                    </div>
                }.into_any(),
            }}
            <CopyButton text=Signal::derive(move || for_copy().unwrap_or_default()) testid="copy-derived-key" />
        </div>
    }
}

/// The registrations made through a group (the first page).
#[component]
pub fn GroupRegistrations(group_id: String) -> impl IntoView {
    let regs = load(move |c| {
        let id = group_id.clone();
        async move { c.group_registrations(&id).await }
    });
    view! {
        <div class="group-registrations">
            <h4>"Devices registered through this group"</h4>
            <Loaded data=regs what="registrations" let:page>
                <RegistrationList page=page />
            </Loaded>
        </div>
    }
}

#[component]
fn RegistrationList(page: PageOf<DeviceRegistrationState>) -> impl IntoView {
    let (items, next, total) = page;
    if items.is_empty() {
        return view! { <p class="muted">"None yet: a device registers with a key derived from the group key (below)."</p> }.into_any();
    }
    let count = total.unwrap_or(items.len() as u64);
    view! {
        <p>{format!("{count} device(s){}", if next.is_some() { ", the first shown:" } else { ":" })}</p>
        <ul class="compact">
            {items
                .into_iter()
                .map(|r| {
                    let status = r.status.map(|s| s.as_str()).unwrap_or("unknown");
                    view! {
                        <li>
                            <code>{r.registration_id.unwrap_or_default()}</code>
                            " " {status}
                            {r.assigned_hub.map(|h| format!(" → {h}"))}
                        </li>
                    }
                })
                .collect_view()}
        </ul>
        <p class="muted small">"Decision traces: the Registrations page."</p>
    }
    .into_any()
}
