//! Overview: what a device or a service SDK needs to connect (ID scope, endpoints, CA, service connection string),
//! whether the service and its hubs are healthy, and two charts refreshed every 5 s: registrations per minute by
//! outcome over the last hour (`RegistrationAttempts`), and the devices assigned to each hub.

use std::time::Duration;

use dps_console_model::charts::{self, MinuteBucket};
use dps_console_model::format;
use dps_proto::{EndpointInfo, HubAllocation, HubStatus, SeriesPoint};
use leptos::prelude::*;

use super::{Page, PageHeader};
use crate::api::ApiError;
use crate::components::chart::{self, Chart, LegendItem};
use crate::components::copy::CopyButton;
use crate::components::files::{download_text, object_url, revoke_url};
use crate::components::loaded::{load, refetch_every, Load, Loaded};
use crate::components::poll::now;
use crate::components::status::EmptyState;
use crate::desktop;

/// The charted window, in minutes.
const WINDOW: u32 = 60;

#[component]
pub fn Overview() -> impl IntoView {
    let info = load(|c| async move { c.service_info().await });
    let metrics = load(|c| async move { c.metrics(WINDOW).await });
    let allocation = load(|c| async move { c.allocation().await });
    refetch_every(metrics, Duration::from_secs(5));
    refetch_every(allocation, Duration::from_secs(5));
    // Each linked hub's connector check, read again by "Check hubs again".
    let statuses = load(|c| async move {
        let mut out = Vec::new();
        for h in c.allocation().await? {
            let s = c.hub_status(&h.host_name).await;
            out.push((h.host_name, s));
        }
        Ok(out)
    });

    view! {
        <section class="page">
            <PageHeader page=Page::Overview />
            <Loaded data=info what="service information" let:i>
                <Connect info=i />
            </Loaded>
            <Health info=info metrics=metrics statuses=statuses on_check=Callback::new(move |()| statuses.refetch()) />
            <RegistrationsChart metrics=metrics />
            <HubsChart allocation=allocation />
        </section>
    }
}

#[component]
fn Connect(info: EndpointInfo) -> impl IntoView {
    let port = |p: Option<u16>| p.map(|p| p.to_string()).unwrap_or_else(|| "—".into());
    let https = port(info.ports.https);
    let mqtt = port(info.ports.mqtt);
    let amqp = port(info.ports.amqp);
    let console = port(info.ports.console);
    let host = info.host.clone();
    let scope = info.id_scope.clone();
    let connection = info.service_connection_string.clone();
    let masked = format::mask_connection_string(&connection);
    let reveal = RwSignal::new(false);
    let connection_shown = {
        let connection = connection.clone();
        move || if reveal.get() { connection.clone() } else { masked.clone() }
    };
    let scope_copy = scope.clone();
    let mqtt_port = info.ports.mqtt;
    let device_endpoint = match info.ports.https {
        Some(p) if p != 443 => format!("{host}:{p}"),
        _ => host.clone(),
    };

    view! {
        <div class="cards">
            <div class="card">
                <h3>"Connect a device"</h3>
                <dl class="pairs">
                    <dt>"ID scope"</dt>
                    <dd>
                        <code data-testid="overview-id-scope" id="id-scope">{scope.clone()}</code>
                        " " <CopyButton text=scope_copy testid="copy-id-scope" />
                    </dd>
                    <dt>"Global device endpoint"</dt>
                    <dd><code>{device_endpoint.clone()}</code></dd>
                    <dt>"Host"</dt>
                    <dd><code>{host.clone()}</code></dd>
                    <dt>"Ports"</dt>
                    <dd data-testid="overview-ports">
                        "HTTPS " <code>{https}</code> " · MQTT " <code>{mqtt}</code> " · AMQP " <code>{amqp}</code>
                        " · console " <code>{console}</code>
                        <span class="note">" (MQTT and AMQP over WebSockets: the HTTPS port)"</span>
                    </dd>
                    <dt>"CA certificate"</dt>
                    <dd><CaDownload path=info.ca_certificate.clone() /></dd>
                </dl>
                <Examples host=host.clone() scope=scope mqtt=mqtt_port />
            </div>
            <div class="card">
                <h3>"Connect a service SDK"</h3>
                <p class="muted">"The service connection string (policy with every right) for the provisioning service SDKs and "
                    <code>"dps"</code> " commands."</p>
                <div class="secret">
                    <code class="wrap" data-testid="overview-connection-string">{connection_shown}</code>
                    <div class="row">
                        <button type="button" class="btn small" data-testid="reveal-connection-string"
                            on:click=move |_| reveal.update(|r| *r = !*r)>
                            {move || if reveal.get() { "Hide" } else { "Reveal" }}
                        </button>
                        <CopyButton text=connection testid="copy-connection-string" />
                    </div>
                </div>
            </div>
        </div>
    }
}

/// The CA (`GET /service/ca.pem`) as a `ca.pem` download: a blob link in a browser, the native save dialog in the
/// desktop shell.
#[component]
fn CaDownload(path: String) -> impl IntoView {
    // (PEM, blob URL)
    let ca = load(|c| async move {
        c.ca_pem().await.map(|pem| {
            let url = object_url(&pem, "application/x-pem-file").unwrap_or_default();
            (pem, url)
        })
    });
    on_cleanup(move || {
        if let Some(Some(Ok((_, u)))) = ca.try_get_untracked() {
            revoke_url(&u);
        }
    });
    let save = move |ev: leptos::ev::MouseEvent| {
        if desktop::is_desktop() {
            ev.prevent_default();
            if let Some(Ok((pem, _))) = ca.get_untracked() {
                download_text("ca.pem", "application/x-pem-file", &pem);
            }
        }
    };
    view! {
        {move || match ca.get() {
            None => view! { <span class="muted">"loading…"</span> }.into_any(),
            Some(Ok((_, u))) => view! {
                <a class="btn small" href=u download="ca.pem" data-testid="download-ca" on:click=save>"Download ca.pem"</a>
            }.into_any(),
            Some(Err(e)) => view! { <span class="muted">{format!("cannot load it: {e}")}</span> }.into_any(),
        }}
        " "
        <span class="muted small">"Devices must trust it: the service's TLS certificates are issued by it. On disk: " <code>{path}</code></span>
    }
}

/// How the Azure IoT SDKs reach this service with a symmetric-key enrollment.
#[component]
fn Examples(host: String, scope: String, mqtt: Option<u16>) -> impl IntoView {
    let mqtt_port = mqtt.unwrap_or(8883);
    let node = format!(
        "// npm install azure-iot-provisioning-device azure-iot-provisioning-device-mqtt azure-iot-security-symmetric-key\n\
         // run with NODE_EXTRA_CA_CERTS=ca.pem\n\
         const {{ ProvisioningDeviceClient }} = require('azure-iot-provisioning-device');\n\
         const {{ Mqtt }} = require('azure-iot-provisioning-device-mqtt');\n\
         const {{ SymmetricKeySecurityClient }} = require('azure-iot-security-symmetric-key');\n\n\
         const security = new SymmetricKeySecurityClient('<registration id>', '<device key>');\n\
         const client = ProvisioningDeviceClient.create('{host}:{mqtt_port}', '{scope}', new Mqtt(), security);\n\
         client.register((err, result) => console.log(err || result));\n"
    );
    let python = format!(
        "# pip install azure-iot-device  (MQTT on port 8883 only{})\n\
         from azure.iot.device import ProvisioningDeviceClient\n\n\
         client = ProvisioningDeviceClient.create_from_symmetric_key(\n    \
         provisioning_host=\"{host}\",\n    \
         registration_id=\"<registration id>\",\n    \
         id_scope=\"{scope}\",\n    \
         symmetric_key=\"<device key>\",\n    \
         server_verification_cert=open(\"ca.pem\").read(),\n)\n\
         print(client.register())\n",
        if mqtt_port == 8883 { String::new() } else { format!(": this service listens on {mqtt_port}") }
    );
    let node_copy = node.clone();
    let python_copy = python.clone();
    view! {
        <details class="examples">
            <summary>"Device connection examples (Node.js, Python)"</summary>
            <div class="example">
                <div class="row"><strong>"Node.js (MQTT)"</strong> <CopyButton text=node_copy /></div>
                <pre class="code">{node}</pre>
            </div>
            <div class="example">
                <div class="row"><strong>"Python (MQTT)"</strong> <CopyButton text=python_copy /></div>
                <pre class="code">{python}</pre>
            </div>
        </details>
    }
}

#[component]
fn Health(
    info: Load<EndpointInfo>,
    metrics: Load<Vec<SeriesPoint>>,
    statuses: Load<Vec<(String, Result<HubStatus, ApiError>)>>,
    on_check: Callback<()>,
) -> impl IntoView {
    // Reachable = the last refresh got an answer (the first one, before any refresh, is the info call).
    let service = move || match (metrics.get(), info.get()) {
        (Some(Ok(_)), _) | (None, Some(Ok(_))) => Some(Ok(())),
        (Some(Err(e)), _) | (None, Some(Err(e))) => Some(Err(e.to_string())),
        (None, None) => None,
    };
    view! {
        <div class="card" data-testid="overview-health">
            <div class="row">
                <h3>"Health"</h3>
                <span class="spacer"></span>
                <button type="button" class="btn small" on:click=move |_| on_check.run(())>"Check hubs again"</button>
            </div>
            <ul class="health">
                <li>
                    {move || match service() {
                        None => view! { <span class="badge">"checking"</span> " Service" }.into_any(),
                        Some(Ok(())) => view! { <span class="badge ok">"reachable"</span> " Service" }.into_any(),
                        Some(Err(e)) => view! { <span class="badge bad">"unreachable"</span> " Service — " <span class="muted">{e}</span> }.into_any(),
                    }}
                </li>
                {move || {
                    // A failed look-up of the hubs is not an answer: still checking.
                    let (list, checked) = match statuses.get() {
                        Some(Ok(list)) => (list, true),
                        _ => (Vec::new(), false),
                    };
                    if list.is_empty() {
                        let text = if checked {
                            "No linked hub: add one on the Hubs page, or devices are assigned to none."
                        } else {
                            "Checking the linked hubs…"
                        };
                        return view! { <li class="muted">{text}</li> }.into_any();
                    }
                    list.into_iter()
                        .map(|(host, s)| {
                            let id = host.clone();
                            match s {
                            Ok(s) if s.reachable => view! {
                                <li data-id=id><span class="badge ok">"reachable"</span> " " <code>{host}</code>
                                    " " <span class="muted">{format!("({})", s.connector)}</span></li>
                            }.into_any(),
                            Ok(s) => view! {
                                <li data-id=id><span class="badge bad">"unreachable"</span> " " <code>{host}</code>
                                    " — " <span class="muted">{s.message}</span></li>
                            }.into_any(),
                            Err(e) => view! {
                                <li data-id=id><span class="badge warn">"unknown"</span> " " <code>{host}</code>
                                    " — " <span class="muted">{e.to_string()}</span></li>
                            }.into_any(),
                        }})
                        .collect_view()
                        .into_any()
                }}
            </ul>
        </div>
    }
}

#[component]
fn RegistrationsChart(metrics: Load<Vec<SeriesPoint>>) -> impl IntoView {
    let buckets = Memo::new(move |_| match metrics.get() {
        Some(Ok(points)) => Some(charts::registrations_per_minute(&points, now(), WINDOW)),
        _ => None,
    });
    let svg = Signal::derive(move || buckets.get().map(|b| chart::registrations_svg(&b)).unwrap_or_default());
    let totals = move || buckets.get().map(|b: Vec<MinuteBucket>| charts::totals(&b)).unwrap_or((0, 0, 0));
    let throttled = move || buckets.get().map(|b: Vec<MinuteBucket>| charts::throttled_total(&b)).unwrap_or(0);
    view! {
        <div class="card">
            <div class="row">
                <h3>"Registrations per minute (last hour)"</h3>
                <span class="spacer"></span>
                <span class="muted">"assigned: " <strong data-testid="overview-assigned-count">{move || totals().0}</strong></span>
                <span class="muted">"failed: " <strong data-testid="overview-failed-count">{move || totals().1}</strong></span>
                <span class="muted">"throttled (429): " <strong data-testid="overview-throttled-count">{move || throttled()}</strong></span>
            </div>
            <Loaded data=metrics what="metrics" let:_points>""</Loaded>
            <Chart svg=svg testid="chart-registrations" label="Registrations per minute by outcome over the last 60 minutes" />
            <div class="legend">
                <LegendItem color=chart::ASSIGNED label="assigned" />
                <LegendItem color=chart::FAILED label="failed" />
                <LegendItem color=chart::OTHER label="other (disabled, …)" />
                <LegendItem color=chart::THROTTLED label="throttled requests (Azure limits profile)" />
            </div>
            {move || {
                let (a, f, o) = totals();
                (metrics.get().is_some_and(|m| m.is_ok()) && a + f + o == 0).then(|| view! {
                    <p class="muted">"No device registered in the last hour. Create an enrollment, then run a device "
                        "with the examples above: each registration appears here within 5 seconds."</p>
                })
            }}
        </div>
    }
}

#[component]
fn HubsChart(allocation: Load<Vec<HubAllocation>>) -> impl IntoView {
    let shares = Memo::new(move |_| match allocation.get() {
        Some(Ok(hubs)) => Some(charts::allocation_shares(&hubs)),
        _ => None,
    });
    let svg = Signal::derive(move || shares.get().filter(|s| !s.is_empty()).map(|s| chart::devices_per_hub_svg(&s)).unwrap_or_default());
    view! {
        <div class="card">
            <h3>"Devices per hub"</h3>
            <Loaded data=allocation what="the allocation" let:hubs>
                {hubs.is_empty().then(|| view! {
                    <EmptyState title="No linked hub" hint="Devices are assigned to linked hubs. Add one on the Hubs page.">
                        <a class="btn small" href=Page::Hubs.href()>"Go to Hubs"</a>
                    </EmptyState>
                })}
            </Loaded>
            <Chart svg=svg testid="chart-hubs" label="Devices assigned to each linked hub" />
        </div>
    }
}
