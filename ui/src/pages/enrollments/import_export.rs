//! Export (every document as CSV or JSON) and import (a CSV or JSON file, in batches, with progress and a
//! summary), both through Leptos actions.

use dps_console_model::enrollment_form::FormKind;
use dps_console_model::transfer::Format;
use dps_proto::BulkMode;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::words;
use crate::api::documents::ImportSummary;
use crate::api::{ApiClient, ApiError};
use crate::components::files::{clear_input, download_text, files_of_input, native_picker, read_all, Picked};
use crate::components::status::MaybeError;

/// The page's export and import: their actions, the import's progress and whether it replaces existing ids.
#[derive(Clone, Copy)]
pub struct Transfer {
    kind: FormKind,
    export: Action<Format, Result<(), ApiError>>,
    import: Action<Result<Picked, String>, ImportSummary>,
    progress: RwSignal<Option<(usize, usize)>>,
    replace: RwSignal<bool>,
}

impl Transfer {
    /// `refresh` is bumped after an import has sent a file.
    pub fn new(kind: FormKind, refresh: RwSignal<u32>) -> Self {
        let client = expect_context::<RwSignal<ApiClient>>();
        let progress = RwSignal::new(None::<(usize, usize)>);
        let replace = RwSignal::new(false);
        let export: Action<Format, Result<(), ApiError>> = Action::new_local(move |format: &Format| {
            let (c, format) = (client.get_untracked(), *format);
            async move {
                let text = c.export_documents(kind, format).await?;
                download_text(format.file_name(kind == FormKind::Group), format.mime(), &text);
                Ok(())
            }
        });
        let import: Action<Result<Picked, String>, ImportSummary> = Action::new_local(move |file: &Result<Picked, String>| {
            let (c, file) = (client.get_untracked(), file.clone());
            let mode = if replace.get_untracked() { BulkMode::Update } else { BulkMode::Create };
            async move {
                let file = match file {
                    Ok(f) => f,
                    Err(m) => return ImportSummary::unread(m),
                };
                let summary = match file.text() {
                    Ok(text) => c.import_documents(kind, &file.name, &text, mode, |done, total| progress.set(Some((done, total)))).await,
                    Err(m) => ImportSummary::unread(m),
                };
                refresh.update(|n| *n += 1);
                summary
            }
        });
        Self { kind, export, import, progress, replace }
    }

    fn start_export(self, format: Format) {
        self.export.clear();
        self.export.dispatch_local(format);
    }

    /// One import, whichever way the file came (the page's file input, or the desktop shell's Open dialog).
    fn start_import(self, picked: Result<Vec<Picked>, String>) {
        self.import.clear();
        self.progress.set(None);
        match picked.map(|files| files.into_iter().next()) {
            Ok(None) => {}
            Ok(Some(file)) => {
                self.import.dispatch_local(Ok(file));
            }
            Err(m) => {
                self.import.dispatch_local(Err(m));
            }
        }
    }
}

/// The header's buttons: export as CSV or JSON, import a file.
#[component]
pub fn TransferButtons(transfer: Transfer) -> impl IntoView {
    let id = move |s: &str| format!("{}-{s}", words(transfer.kind).prefix);
    let import_file = move |picked| transfer.start_import(picked);
    let on_import = move |ev: leptos::ev::Event| {
        let files = files_of_input(&ev);
        clear_input(&ev);
        spawn_local(async move { transfer.start_import(read_all(files).await) });
    };
    view! {
        <button type="button" class="btn" data-testid=id("export-csv") on:click=move |_| transfer.start_export(Format::Csv)>"Export CSV"</button>
        <button type="button" class="btn" data-testid=id("export-json") on:click=move |_| transfer.start_export(Format::Json)>"Export JSON"</button>
        <label class="btn file-button" title="A CSV or JSON file, as the exports write them">
            "Import CSV/JSON…"
            <input type="file" accept=".csv,.json,text/csv,application/json" data-testid=id("import") class="file-hidden"
                on:change=on_import on:click=native_picker(false, &["csv", "json"], import_file) />
        </label>
    }
}

/// The toolbar's switch: an import replaces documents whose id exists, or reports them as failed.
#[component]
pub fn ReplaceSwitch(transfer: Transfer) -> impl IntoView {
    let w = words(transfer.kind);
    let replace = transfer.replace;
    view! {
        <label class="check muted" title="Off: rows whose id exists are reported as failed. On: they are replaced.">
            <input type="checkbox" data-testid=format!("{}-import-replace", w.prefix) prop:checked=move || replace.get()
                on:change=move |ev| replace.set(event_target_checked(&ev)) />
            "Import replaces existing " {w.noun} "s"
        </label>
    }
}

/// The import's progress and summary, and the export's error.
#[component]
pub fn TransferStatus(transfer: Transfer) -> impl IntoView {
    let export = transfer.export.value();
    let result = transfer.import.value();
    view! {
        {move || transfer.progress.get().map(|(done, total)| view! {
            <div class="import-progress">
                <progress data-testid="import-progress" max=total.max(1).to_string() value=done.to_string()></progress>
                <span class="muted">{format!("{done} of {total} sent")}</span>
            </div>
        })}
        {move || result.get().map(|r| view! { <ImportSummaryView summary=r /> })}
        <MaybeError error=Signal::derive(move || export.get().and_then(Result::err)) />
    }
}

#[component]
fn ImportSummaryView(summary: ImportSummary) -> impl IntoView {
    let r = summary;
    view! {
        <div class=if r.failed == 0 { "import-summary ok" } else { "import-summary warn" }>
            <p data-testid="import-result">{format!("Imported {}, failed {}", r.imported, r.failed)}</p>
            <ul class="problems">
                {r.problems.iter().take(50).map(|p| view! { <li>{p.clone()}</li> }).collect_view()}
            </ul>
            {(r.problems.len() > 50).then(|| view! { <p class="muted">{format!("… and {} more", r.problems.len() - 50)}</p> })}
        </div>
    }
}
