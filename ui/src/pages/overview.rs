//! Overview: the service's endpoint information — what a device or a service SDK needs to connect.

use dps_proto::EndpointInfo;
use leptos::prelude::*;

use crate::api::{ApiClient, ApiError};
use crate::components::status::{ErrorPanel, Loading};
use crate::desktop;

async fn fetch_info(client: ApiClient) -> Result<EndpointInfo, ApiError> {
    if desktop::is_desktop() {
        desktop::service_info().await
    } else {
        client.service_info().await
    }
}

#[component]
pub fn Overview() -> impl IntoView {
    let connection = expect_context::<RwSignal<ApiClient>>();
    let info = LocalResource::new(move || fetch_info(connection.get()));

    view! {
        <section class="page">
            <h2>"Overview"</h2>
            {move || match info.get() {
                None => view! { <Loading what="service information" /> }.into_any(),
                Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                Some(Ok(i)) => view! { <EndpointCard info=i /> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn EndpointCard(info: EndpointInfo) -> impl IntoView {
    let https = info.ports.https.map(|p| p.to_string()).unwrap_or_else(|| "—".into());
    let mqtt = info.ports.mqtt.map(|p| p.to_string()).unwrap_or_else(|| "—".into());
    view! {
        <dl class="card" id="endpoint-info">
            <dt>"ID scope"</dt>
            <dd id="id-scope">{info.id_scope}</dd>
            <dt>"Host"</dt>
            <dd>{info.host}</dd>
            <dt>"HTTPS port"</dt>
            <dd>{https}</dd>
            <dt>"MQTT port"</dt>
            <dd>{mqtt}</dd>
            <dt>"CA certificate"</dt>
            <dd class="mono">{info.ca_certificate}</dd>
            <dt>"Service connection string"</dt>
            <dd class="mono">{info.service_connection_string}</dd>
        </dl>
    }
}
