//! Logs: the service's live log. It polls `GET /diagnostics/logs?after=<last seq>` every second (both transports),
//! keeps the last 2000 entries, and filters them here (level, registration id, text: `dps_console_model::logs`), so
//! changing a filter never loses history. Pause freezes the list while polling goes on; download saves what is
//! shown as a `.log` text file.

use std::time::Duration;

use dps_console_model::format;
use dps_console_model::logs::{self, LogFilter, LEVELS};
use dps_proto::LogRecord;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Page, PageHeader};
use crate::api::diagnostics::LogQuery;
use crate::api::{ApiClient, ApiError};
use crate::components::files::download_text;
use crate::components::poll::{every, now};
use crate::components::status::{EmptyState, ErrorPanel};

/// Entries kept in the page.
const KEEP: usize = 2000;

fn level_class(level: &str) -> &'static str {
    match logs::level_rank(level) {
        4 => "lvl error",
        3 => "lvl warn",
        2 => "lvl info",
        _ => "lvl debug",
    }
}

#[component]
pub fn Logs() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    let buffer = RwSignal::new(Vec::<LogRecord>::new());
    let last_seq = RwSignal::new(None::<u64>);
    let in_flight = RwSignal::new(false);
    let error = RwSignal::new(None::<ApiError>);
    let loaded = RwSignal::new(false);
    let paused = RwSignal::new(false);
    // What the list shows: the buffer, frozen while paused.
    let shown = RwSignal::new(Vec::<LogRecord>::new());
    let level = RwSignal::new(String::new());
    let registration = RwSignal::new(String::new());
    let search = RwSignal::new(String::new());

    every(Duration::from_secs(1), move || {
        if in_flight.get_untracked() {
            return;
        }
        in_flight.set(true);
        let c = client.get_untracked();
        let after = last_seq.get_untracked();
        let query = LogQuery { after, limit: Some(if after.is_some() { KEEP as u32 } else { 1000 }), ..Default::default() };
        spawn_local(async move {
            let r = c.logs(&query).await;
            in_flight.set(false);
            match r {
                Ok(new) => {
                    error.set(None);
                    loaded.set(true);
                    let mut seq = after.unwrap_or(0);
                    if !new.is_empty() || after.is_none() {
                        buffer.update(|b| seq = logs::append(b, new, KEEP, seq));
                        last_seq.set(Some(seq));
                    }
                }
                Err(e) => error.set(Some(e)),
            }
        });
    });
    Effect::new(move |_| {
        let b = buffer.get();
        if !paused.get() {
            shown.set(b);
        }
    });

    let filter = Memo::new(move |_| LogFilter { min_level: level.get(), registration_id: registration.get(), text: search.get() });
    let visible = Memo::new(move |_| {
        let f = filter.get();
        shown.with(|s| s.iter().rev().filter(|r| f.matches(r)).cloned().collect::<Vec<_>>())
    });
    let download = move |_| {
        let f = filter.get_untracked();
        let text = shown.with_untracked(|s| logs::to_text(f.apply(s)));
        let name = format!("dps-console-{}.log", now().format("%Y%m%d-%H%M%S"));
        download_text(&name, "text/plain", &text);
    };

    view! {
        <section class="page">
            <PageHeader page=Page::Logs />
            <div class="toolbar">
                <button type="button" class="btn" data-testid="log-pause" aria-pressed=move || paused.get().to_string()
                    on:click=move |_| paused.update(|p| *p = !*p)>
                    {move || if paused.get() { "Resume" } else { "Pause" }}
                </button>
                <label>
                    "Level "
                    <select data-testid="log-level" prop:value=move || level.get() on:change=move |ev| level.set(event_target_value(&ev))>
                        <option value="">"all"</option>
                        {LEVELS.iter().map(|l| view! { <option value=*l>{format!("{l} and above")}</option> }).collect_view()}
                    </select>
                </label>
                <input type="search" data-testid="log-registration" placeholder="registration id"
                    prop:value=move || registration.get() on:input=move |ev| registration.set(event_target_value(&ev)) />
                <input type="search" data-testid="log-search" placeholder="search text"
                    prop:value=move || search.get() on:input=move |ev| search.set(event_target_value(&ev)) />
                <span class="spacer"></span>
                <span class="muted small">
                    {move || format!("{} of {} entries{}", format::count(visible.with(|v| v.len() as u64)),
                        format::count(shown.with(|s| s.len() as u64)), if paused.get() { " (paused)" } else { "" })}
                </span>
                <button type="button" class="btn" data-testid="log-download" on:click=download>"Download .log"</button>
            </div>
            {move || error.get().map(|e| view! { <ErrorPanel error=e /> })}
            {move || (loaded.get() && shown.with(|s| s.is_empty())).then(|| view! {
                <EmptyState title="No log entry yet"
                    hint="Entries appear here as the service works: register a device or change an enrollment. Run the service with --log debug for more detail." />
            })}
            {move || (shown.with(|s| !s.is_empty()) && visible.with(|v| v.is_empty())).then(|| view! {
                <EmptyState title="No entry matches" hint="Clear or change the filters above to see more entries." />
            })}
            <div class="log-list" data-testid="log-list" role="log">
                <For each=move || visible.get() key=|r| r.seq let:r>
                    <LogRow record=r registration=registration />
                </For>
            </div>
        </section>
    }
}

#[component]
fn LogRow(record: LogRecord, registration: RwSignal<String>) -> impl IntoView {
    let reg = record.fields.get("registrationId").cloned();
    let fields: Vec<(String, String)> =
        record.fields.iter().filter(|(k, _)| k.as_str() != "registrationId").map(|(k, v)| (k.clone(), v.clone())).collect();
    view! {
        <div class="log-entry" data-testid="log-entry" data-seq=record.seq>
            <span class="time mono">{format::time_of_day(&record.time)}</span>
            <span class=level_class(&record.level)>{record.level.clone()}</span>
            <span class="target muted">{record.target.clone()}</span>
            <span class="message">{record.message.clone()}</span>
            {reg.map(|r| {
                let set = r.clone();
                view! {
                    <button type="button" class="chip link" title="Show only this registration" on:click=move |_| registration.set(set.clone())>
                        "registrationId=" {r}
                    </button>
                }
            })}
            {fields.into_iter().map(|(k, v)| view! { <span class="chip">{k} "=" {v}</span> }).collect_view()}
        </div>
    }
}
