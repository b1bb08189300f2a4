//! Enrollments: the list (search, paging, count), the detail panel (keys, enable/disable, key renewal, delete,
//! JSON), the create/edit form, import and export. The Groups page uses the same views with
//! [`FormKind::Group`]; test ids then start with `group-` instead of `enrollment-`.

use dps_console_model::document::{attestation_label, mask_secret, Document};
use dps_console_model::enrollment_form::{error_for, field, EnrollmentForm, FieldError, FormKind, TPM_NOTE};
use dps_console_model::format;
use dps_console_model::paging::PageStack;
use dps_console_model::transfer::{self, Format, ImportError, BATCH_SIZE};
use dps_proto::{BulkEnrollmentGroupOperation, BulkEnrollmentOperation, BulkMode};
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::enrollments::PAGE_SIZE;
use crate::api::{ApiClient, ApiError, PageOf};
use crate::components::confirm::ConfirmDialog;
use crate::components::copy::CopyButton;
use crate::components::files::{clear_input, download_text, files_of_input, native_picker, read_all, Picked};
use crate::components::json::ShowJson;
use crate::components::notice::use_notices;
use crate::components::pager::Pager;
use crate::components::poll::now;
use crate::components::search::DebouncedSearch;
use crate::components::status::{EmptyState, ErrorPanel, Loading, MaybeError};
use crate::pages::{Page, PageHeader};

/// The Enrollments page (individual enrollments).
#[component]
pub fn Enrollments() -> impl IntoView {
    view! { <EnrollmentsPage kind=FormKind::Individual /> }
}

/// Words and test-id prefixes of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    pub prefix: &'static str,
    pub title: &'static str,
    pub noun: &'static str,
    pub id_label: &'static str,
    pub empty: &'static str,
}

pub fn words(kind: FormKind) -> Words {
    match kind {
        FormKind::Individual => Words {
            prefix: "enrollment",
            title: "Enrollments",
            noun: "enrollment",
            id_label: "Registration id",
            empty: "No enrollments yet — create one or import a CSV.",
        },
        FormKind::Group => Words {
            prefix: "group",
            title: "Groups",
            noun: "enrollment group",
            id_label: "Group id",
            empty: "No enrollment groups yet — create one or import a CSV.",
        },
    }
}

// ---- calls, for either kind ----

async fn fetch_page(client: ApiClient, kind: FormKind, search: String, token: Option<String>) -> Result<PageOf<Document>, ApiError> {
    Ok(match kind {
        FormKind::Individual => {
            let (items, next, total) = client.enrollments_page(&search, token).await?;
            (items.into_iter().map(|e| Document::Individual(Box::new(e))).collect(), next, total)
        }
        FormKind::Group => {
            let (items, next, total) = client.groups_page(&search, token).await?;
            (items.into_iter().map(|g| Document::Group(Box::new(g))).collect(), next, total)
        }
    })
}

async fn fetch_doc(client: &ApiClient, kind: FormKind, id: &str) -> Result<Document, ApiError> {
    Ok(match kind {
        FormKind::Individual => Document::Individual(Box::new(client.enrollment(id).await?)),
        FormKind::Group => Document::Group(Box::new(client.group(id).await?)),
    })
}

async fn put_doc(client: &ApiClient, doc: &Document) -> Result<Document, ApiError> {
    Ok(match doc {
        Document::Individual(e) => Document::Individual(Box::new(client.put_enrollment(e).await?)),
        Document::Group(g) => Document::Group(Box::new(client.put_group(g).await?)),
    })
}

/// Creates a document with a bulk `create`: refused when the id exists (a plain PUT would replace it).
async fn create_doc(client: &ApiClient, doc: &Document) -> Result<(), ApiError> {
    let result = match doc {
        Document::Individual(e) => {
            client.bulk_enrollments(&BulkEnrollmentOperation { enrollments: vec![(**e).clone()], mode: BulkMode::Create }).await?
        }
        Document::Group(g) => {
            client.bulk_groups(&BulkEnrollmentGroupOperation { enrollment_groups: vec![(**g).clone()], mode: BulkMode::Create }).await?
        }
    };
    match result.errors.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(ApiError::Service {
            status: u16::try_from(e.error_code / 1000).unwrap_or(400),
            details: dps_proto::ProvisioningServiceErrorDetails {
                error_code: e.error_code,
                tracking_id: String::new(),
                message: e.error_status,
                timestamp_utc: String::new(),
                info: None,
            },
        }),
    }
}

async fn delete_doc(client: &ApiClient, doc: &Document) -> Result<(), ApiError> {
    match doc {
        Document::Individual(e) => client.delete_enrollment(&e.registration_id, e.etag.as_deref()).await,
        Document::Group(g) => client.delete_group(&g.enrollment_group_id, g.etag.as_deref()).await,
    }
}

async fn renew_keys(client: &ApiClient, doc: &Document) -> Result<(), ApiError> {
    match doc {
        Document::Individual(e) => client.renew_enrollment_keys(&e.registration_id, "both").await.map(|_| ()),
        Document::Group(g) => client.renew_group_keys(&g.enrollment_group_id, "both").await.map(|_| ()),
    }
}

/// What an export or an import is doing.
#[derive(Debug, Clone, PartialEq, Default)]
struct ImportSummary {
    imported: usize,
    failed: usize,
    problems: Vec<String>,
}

/// Sends the importable documents in batches of [`BATCH_SIZE`] (bulk `create`), reporting progress.
async fn run_import(
    client: ApiClient,
    kind: FormKind,
    name: String,
    text: String,
    mode: BulkMode,
    progress: RwSignal<Option<(usize, usize)>>,
) -> ImportSummary {
    let describe = |errors: Vec<ImportError>| errors.iter().map(ImportError::to_string).collect::<Vec<_>>();
    let mut summary = ImportSummary::default();
    match kind {
        FormKind::Individual => {
            let read = transfer::import_enrollments(&name, &text);
            summary.failed += read.errors.len();
            summary.problems.extend(describe(read.errors));
            let total = read.items.len();
            progress.set(Some((0, total)));
            for (n, chunk) in read.items.chunks(BATCH_SIZE).enumerate() {
                let op = BulkEnrollmentOperation { enrollments: chunk.to_vec(), mode };
                add_answer(&mut summary, chunk.len(), client.bulk_enrollments(&op).await);
                progress.set(Some(((n * BATCH_SIZE + chunk.len()).min(total), total)));
            }
        }
        FormKind::Group => {
            let read = transfer::import_groups(&name, &text);
            summary.failed += read.errors.len();
            summary.problems.extend(describe(read.errors));
            let total = read.items.len();
            progress.set(Some((0, total)));
            for (n, chunk) in read.items.chunks(BATCH_SIZE).enumerate() {
                let op = BulkEnrollmentGroupOperation { enrollment_groups: chunk.to_vec(), mode };
                add_answer(&mut summary, chunk.len(), client.bulk_groups(&op).await);
                progress.set(Some(((n * BATCH_SIZE + chunk.len()).min(total), total)));
            }
        }
    }
    summary
}

/// Counts one bulk answer for a batch of `sent` documents.
fn add_answer(summary: &mut ImportSummary, sent: usize, answer: Result<dps_proto::BulkEnrollmentOperationResult, ApiError>) {
    match answer {
        Ok(r) => {
            let (ok, failed) = transfer::tally(sent, &r);
            summary.imported += ok;
            summary.failed += failed;
            summary.problems.extend(transfer::bulk_failures(&r));
        }
        Err(e) => {
            summary.failed += sent;
            summary.problems.push(format!("a batch of {sent} was refused: {e}"));
        }
    }
}

/// Every document of a kind in a file's format.
async fn export_text(client: ApiClient, kind: FormKind, format: Format) -> Result<String, ApiError> {
    Ok(match (kind, format) {
        (FormKind::Individual, Format::Json) => transfer::enrollments_to_json(&client.all_enrollments().await?),
        (FormKind::Individual, Format::Csv) => transfer::enrollments_to_csv(&client.all_enrollments().await?),
        (FormKind::Group, Format::Json) => transfer::groups_to_json(&client.all_groups().await?),
        (FormKind::Group, Format::Csv) => transfer::groups_to_csv(&client.all_groups().await?),
    })
}

// ---- pieces ----

/// A table cell with how long ago `t` was (the exact time as its tooltip).
pub fn time_cell(t: Option<chrono::DateTime<chrono::Utc>>) -> impl IntoView {
    let full = t.map(format::date_time).unwrap_or_default();
    let short = t.map(|t| format::ago(t, now())).unwrap_or_default();
    view! { <td class="muted nowrap" title=full>{short}</td> }
}

/// A status badge.
pub fn status_badge(enabled: bool) -> impl IntoView {
    view! {
        <span class=if enabled { "badge ok" } else { "badge warn" }>{if enabled { "enabled" } else { "disabled" }}</span>
    }
}

// ---- the page ----

/// What the panel beside the list shows.
#[derive(Debug, Clone, PartialEq)]
enum Panel {
    None,
    Detail(String),
    Form(Box<EnrollmentForm>),
}

#[component]
pub fn EnrollmentsPage(kind: FormKind) -> impl IntoView {
    let w = words(kind);
    let client = expect_context::<RwSignal<ApiClient>>();
    let search = DebouncedSearch::new();
    let pages = RwSignal::new(PageStack::default());
    let refresh = RwSignal::new(0u32);
    let panel = RwSignal::new(Panel::None);

    let list = LocalResource::new(move || {
        refresh.track();
        fetch_page(client.get(), kind, search.applied.get(), pages.with(PageStack::current))
    });

    let on_search = search.on_input(move || pages.update(PageStack::reset));

    // Import and export.
    let progress = RwSignal::new(None::<(usize, usize)>);
    let import_result = RwSignal::new(None::<ImportSummary>);
    let transfer_error = RwSignal::new(None::<ApiError>);
    let replace = RwSignal::new(false);
    // One import, whichever way the file came (the page's file input, or the desktop shell's Open dialog).
    let import_file = move |picked: Result<Vec<Picked>, String>| {
        import_result.set(None);
        progress.set(None);
        let file = match picked {
            Ok(files) => match files.into_iter().next() {
                Some(f) => f,
                None => return,
            },
            Err(m) => {
                import_result.set(Some(ImportSummary { imported: 0, failed: 0, problems: vec![m] }));
                return;
            }
        };
        spawn_local(async move {
            let summary = match file.text() {
                Ok(text) => {
                    let mode = if replace.get_untracked() { BulkMode::Update } else { BulkMode::Create };
                    run_import(client.get_untracked(), kind, file.name.clone(), text, mode, progress).await
                }
                Err(m) => ImportSummary { imported: 0, failed: 0, problems: vec![m] },
            };
            import_result.set(Some(summary));
            refresh.update(|n| *n += 1);
        });
    };
    let on_import = move |ev: leptos::ev::Event| {
        let files = files_of_input(&ev);
        clear_input(&ev);
        spawn_local(async move { import_file(read_all(files).await) });
    };
    let export = move |format: Format| {
        transfer_error.set(None);
        spawn_local(async move {
            match export_text(client.get_untracked(), kind, format).await {
                Ok(text) => download_text(format.file_name(kind == FormKind::Group), format.mime(), &text),
                Err(e) => transfer_error.set(Some(e)),
            }
        });
    };

    let id = move |s: &str| format!("{}-{s}", w.prefix);
    let total = move || {
        list.get().and_then(|r| r.ok()).map(|(items, _, total)| total.unwrap_or(items.len() as u64).to_string()).unwrap_or_default()
    };
    let next_token = move || list.get().and_then(|r| r.ok()).and_then(|(_, next, _)| next);
    let page = if kind == FormKind::Group { Page::Groups } else { Page::Enrollments };

    view! {
        <section class="page">
            <PageHeader page=page>
                <button type="button" class="btn primary" data-testid=id("new")
                    on:click=move |_| panel.set(Panel::Form(Box::new(EnrollmentForm::new(kind))))>"New " {w.noun}</button>
                <button type="button" class="btn" data-testid=id("export-csv") on:click=move |_| export(Format::Csv)>"Export CSV"</button>
                <button type="button" class="btn" data-testid=id("export-json") on:click=move |_| export(Format::Json)>"Export JSON"</button>
                <label class="btn file-button" title="A CSV or JSON file, as the exports write them">
                    "Import CSV/JSON…"
                    <input type="file" accept=".csv,.json,text/csv,application/json" data-testid=id("import") class="file-hidden"
                        on:change=on_import on:click=native_picker(false, &["csv", "json"], import_file) />
                </label>
            </PageHeader>
            <div class="toolbar">
                <input type="search" class="search" data-testid=id("search") placeholder=format!("Search by {}", w.id_label.to_lowercase())
                    prop:value=move || search.input.get() on:input=on_search />
                <span class="muted">"Total: " <span data-testid=id("count")>{total}</span></span>
                <span class="spacer"></span>
                <label class="check muted" title="Off: rows whose id exists are reported as failed. On: they are replaced.">
                    <input type="checkbox" data-testid=id("import-replace") prop:checked=move || replace.get()
                        on:change=move |ev| replace.set(event_target_checked(&ev)) />
                    "Import replaces existing " {w.noun} "s"
                </label>
            </div>
            <ImportStatus progress=progress result=import_result />
            <MaybeError error=transfer_error />
            <div class="split" class:with-panel=move || panel.with(|p| *p != Panel::None)>
                <div class="list">
                    {move || match list.get() {
                        None => view! { <Loading what=w.title /> }.into_any(),
                        Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                        Some(Ok((items, _, _))) if items.is_empty() => {
                            if search.applied.get().is_empty() {
                                let hint = format!(
                                    "Create one with “New {}”, or import a CSV or JSON file (the Export buttons write the format).",
                                    w.noun
                                );
                                view! { <EmptyState title=w.empty hint=hint /> }.into_any()
                            } else {
                                let title = format!("Nothing matches “{}”.", search.applied.get());
                                view! { <EmptyState title=title hint="The search looks for the text anywhere in the id, ignoring case." /> }
                                    .into_any()
                            }
                        }
                        Some(Ok((items, _, total))) => {
                            let label = pages.with(|p| p.range_label(PAGE_SIZE as usize, items.len(), total));
                            view! { <DocTable kind=kind items=items panel=panel /> <p class="muted small">{label}</p> }.into_any()
                        }
                    }}
                    <Pager prefix=w.prefix pages=pages next=Signal::derive(next_token) />
                </div>
                {move || match panel.get() {
                    Panel::None => ().into_any(),
                    Panel::Detail(doc_id) => view! { <DetailPanel kind=kind doc_id=doc_id panel=panel refresh=refresh /> }.into_any(),
                    Panel::Form(f) => view! { <FormPanel form=*f panel=panel refresh=refresh /> }.into_any(),
                }}
            </div>
        </section>
    }
}

#[component]
fn ImportStatus(progress: RwSignal<Option<(usize, usize)>>, result: RwSignal<Option<ImportSummary>>) -> impl IntoView {
    view! {
        {move || progress.get().map(|(done, total)| view! {
            <div class="import-progress">
                <progress data-testid="import-progress" max=total.max(1).to_string() value=done.to_string()></progress>
                <span class="muted">{format!("{done} of {total} sent")}</span>
            </div>
        })}
        {move || result.get().map(|r| view! {
            <div class=if r.failed == 0 { "import-summary ok" } else { "import-summary warn" }>
                <p data-testid="import-result">{format!("Imported {}, failed {}", r.imported, r.failed)}</p>
                <ul class="problems">
                    {r.problems.iter().take(50).map(|p| view! { <li>{p.clone()}</li> }).collect_view()}
                </ul>
                {(r.problems.len() > 50).then(|| view! { <p class="muted">{format!("… and {} more", r.problems.len() - 50)}</p> })}
            </div>
        })}
    }
}

#[component]
fn DocTable(kind: FormKind, items: Vec<Document>, panel: RwSignal<Panel>) -> impl IntoView {
    let w = words(kind);
    let selected = move |id: &str| matches!(panel.get(), Panel::Detail(ref s) if s == id);
    view! {
        <table class="table">
            <thead>
                <tr>
                    <th>{w.id_label}</th>
                    {(kind == FormKind::Individual).then(|| view! { <th>"Device id"</th> })}
                    <th>"Attestation"</th>
                    <th>"Status"</th>
                    <th class="optional">"Hubs"</th>
                    <th class="optional">"Policy"</th>
                    <th>"Last updated"</th>
                </tr>
            </thead>
            <tbody>
                {items
                    .into_iter()
                    .map(|d| {
                        let doc_id = d.id().to_string();
                        let click_id = doc_id.clone();
                        let sel_id = doc_id.clone();
                        let device = match &d {
                            Document::Individual(e) => Some(e.device_id.clone().unwrap_or_default()),
                            Document::Group(_) => None,
                        };
                        let data_id = doc_id.clone();
                        view! {
                            <tr data-testid=format!("{}-row", w.prefix) data-id=data_id class="clickable" tabindex="0"
                                class:selected=move || selected(&sel_id)
                                on:click={
                                    let id = click_id.clone();
                                    move |_| panel.set(Panel::Detail(id.clone()))
                                }
                                on:keydown=move |ev| {
                                    if ev.key() == "Enter" {
                                        panel.set(Panel::Detail(click_id.clone()));
                                    }
                                }>
                                <td class="mono">{doc_id}</td>
                                {device.map(|dv| view! { <td class="mono">{dv}</td> })}
                                <td>{attestation_label(d.attestation().kind)}</td>
                                <td>{status_badge(d.enabled())}</td>
                                <td class="optional">{d.hubs().join(", ")}</td>
                                <td class="optional">{d.policy_label()}</td>
                                {time_cell(d.last_updated())}
                            </tr>
                        }
                    })
                    .collect_view()}
            </tbody>
        </table>
    }
}

// ---- detail ----

#[component]
fn DetailPanel(kind: FormKind, doc_id: String, panel: RwSignal<Panel>, refresh: RwSignal<u32>) -> impl IntoView {
    let w = words(kind);
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    let reload = RwSignal::new(0u32);
    let lookup = doc_id.clone();
    let doc = LocalResource::new(move || {
        reload.track();
        let id = lookup.clone();
        let c = client.get();
        async move { fetch_doc(&c, kind, &id).await }
    });
    let action_error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let confirm_delete = RwSignal::new(false);
    let confirm_renew = RwSignal::new(false);
    let revealed = RwSignal::new(false);
    // The document the actions apply to (the one shown, with its etag).
    let current = RwSignal::new(None::<Document>);
    Effect::new(move |_| current.set(doc.get().and_then(|r| r.ok())));

    #[derive(Clone, Copy, PartialEq)]
    enum Action {
        Toggle,
        Renew,
        Delete,
    }
    let act = move |action: Action| {
        let Some(d) = current.get_untracked() else { return };
        busy.set(true);
        action_error.set(None);
        spawn_local(async move {
            let c = client.get_untracked();
            let r = match action {
                Action::Toggle => put_doc(&c, &d.with_enabled(!d.enabled())).await.map(|_| ()),
                Action::Renew => renew_keys(&c, &d).await,
                Action::Delete => delete_doc(&c, &d).await,
            };
            busy.set(false);
            match r {
                Ok(()) => {
                    match action {
                        Action::Toggle => notices.info(format!("{} {}", d.id(), if d.enabled() { "disabled" } else { "enabled" })),
                        Action::Renew => notices.info(format!("New keys for {}", d.id())),
                        Action::Delete => notices.info(format!("Deleted {}", d.id())),
                    }
                    if action == Action::Delete {
                        panel.set(Panel::None);
                    } else {
                        reload.update(|n| *n += 1);
                    }
                }
                Err(e) => action_error.set(Some(e)),
            }
            refresh.update(|n| *n += 1);
        });
    };
    let id = move |s: &str| format!("{}-{s}", w.prefix);
    let shown_id = doc_id.clone();

    view! {
        <aside class="card side-panel" data-testid=id("detail")>
            <div class="panel-head">
                <h3 class="mono">{doc_id.clone()}</h3>
                <button type="button" class="btn small" title="Close" on:click=move |_| panel.set(Panel::None)>"Close"</button>
            </div>
            <MaybeError error=action_error />
            {move || match doc.get() {
                None => view! { <Loading what=w.noun /> }.into_any(),
                Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                Some(Ok(d)) => {
                    let enabled = d.enabled();
                    let has_keys = d.keys().is_some();
                    let edit = d.clone();
                    let d_id = d.id().to_string();
                    let json = d.to_json_pretty();
                    let group_key = d.keys().map(|k| k.0).filter(|_| kind == FormKind::Group);
                    view! {
                        <div class="panel-actions">
                            <button type="button" class="btn" data-testid=id("edit")
                                on:click=move |_| panel.set(Panel::Form(Box::new(edit.to_form())))>"Edit"</button>
                            <button type="button" class="btn" data-testid=id("toggle") disabled=move || busy.get()
                                on:click=move |_| act(Action::Toggle)>
                                {if enabled { "Disable" } else { "Enable" }}
                            </button>
                            {has_keys.then(|| view! {
                                <button type="button" class="btn" data-testid=id("renew-key") disabled=move || busy.get()
                                    on:click=move |_| confirm_renew.set(true)>"Regenerate keys"</button>
                            })}
                            <button type="button" class="btn danger" data-testid=id("delete") disabled=move || busy.get()
                                on:click=move |_| confirm_delete.set(true)>"Delete"</button>
                        </div>
                        <DocFacts doc=d revealed=revealed />
                        {group_key.map(|k| view! { <crate::pages::groups::DerivedKey group_key=k /> })}
                        {(kind == FormKind::Group).then(|| view! { <crate::pages::groups::GroupRegistrations group_id=d_id.clone() /> })}
                        <ShowJson json=json />
                    }
                    .into_any()
                }
            }}
            <ConfirmDialog
                open=confirm_delete
                title=format!("Delete {}", w.noun)
                message=format!("Delete {} '{}'? Devices that use it can no longer register.", w.noun, shown_id)
                on_confirm=Callback::new(move |()| act(Action::Delete))
            />
            <ConfirmDialog
                open=confirm_renew
                title="Regenerate keys"
                message=format!(
                    "New primary and secondary keys for '{}'. Devices using the old keys can no longer register until they are given the new ones.",
                    doc_id
                )
                confirm_label="Regenerate"
                on_confirm=Callback::new(move |()| act(Action::Renew))
            />
        </aside>
    }
}

#[component]
fn DocFacts(doc: Document, revealed: RwSignal<bool>) -> impl IntoView {
    let a = doc.attestation().clone();
    let keys = doc.keys();
    let (twin, edge, reprovision, state, device_id, created) = match &doc {
        Document::Individual(e) => (
            e.initial_twin.clone(),
            e.capabilities.is_some_and(|c| c.iot_edge),
            e.reprovision_policy.unwrap_or_default(),
            e.registration_state.clone(),
            e.device_id.clone(),
            e.created_date_time_utc,
        ),
        Document::Group(g) => (
            g.initial_twin.clone(),
            g.capabilities.is_some_and(|c| c.iot_edge),
            g.reprovision_policy.unwrap_or_default(),
            None,
            None,
            g.created_date_time_utc,
        ),
    };
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
    let certs = a.x509.as_ref().map(|x| {
        let infos: Vec<String> = [&x.client_certificates, &x.signing_certificates]
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
        let cas: Vec<String> = x.ca_references.iter().flat_map(|r| [r.primary.clone(), r.secondary.clone()]).flatten().collect();
        (infos, cas)
    });
    view! {
        <dl class="pairs">
            <dt>"Status"</dt>
            <dd>{status_badge(doc.enabled())}</dd>
            <dt>"Attestation"</dt>
            <dd>{attestation_label(a.kind)}</dd>
            {device_id.map(|d| view! { <dt>"Device id"</dt> <dd class="mono">{d}</dd> })}
            {keys.map(|(p, s)| view! {
                {key_row("Primary key", "primary-key", p)}
                {key_row("Secondary key", "secondary-key", s)}
                <dt></dt>
                <dd>
                    <button type="button" class="btn small" data-testid="reveal-keys" on:click=move |_| revealed.update(|r| *r = !*r)>
                        {move || if revealed.get() { "Hide keys" } else { "Reveal keys" }}
                    </button>
                </dd>
            })}
            {certs.map(|(infos, cas)| view! {
                <dt>"Certificates"</dt>
                <dd>{if infos.is_empty() { "—".to_string() } else { infos.join("; ") }}</dd>
                <dt>"CA references"</dt>
                <dd>{if cas.is_empty() { "—".to_string() } else { cas.join(", ") }}</dd>
            })}
            {a.tpm.as_ref().map(|t| {
                let ek: String = t.endorsement_key.clone().unwrap_or_default().chars().take(40).collect();
                view! { <dt>"Endorsement key"</dt> <dd class="mono">{ek} "…"</dd> <dt></dt> <dd class="muted">{TPM_NOTE}</dd> }
            })}
            <dt>"Hubs"</dt>
            <dd>{let h = doc.hubs(); if h.is_empty() { "every linked hub".to_string() } else { h.join(", ") }}</dd>
            <dt>"Allocation policy"</dt>
            <dd>{doc.policy_label()}</dd>
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
            <dt>"Last updated"</dt>
            <dd class="muted">{doc.last_updated().map(format::date_time).unwrap_or_default()}</dd>
        </dl>
    }
}

// ---- the form ----

/// Which field errors are on screen: a field's once it has been left, every field's after a submit.
#[derive(Debug, Clone, Default, PartialEq)]
struct Shown {
    all: bool,
    touched: Vec<&'static str>,
}

impl Shown {
    fn shows(&self, field: &str) -> bool {
        self.all || self.touched.contains(&field)
    }
    fn touch(&mut self, field: &'static str) {
        if !self.touched.contains(&field) {
            self.touched.push(field);
        }
    }
}

/// One text input or textarea of the form, with its error line.
#[allow(clippy::too_many_arguments)]
fn text_field(
    form: RwSignal<EnrollmentForm>,
    errors: Memo<Vec<FieldError>>,
    show: RwSignal<Shown>,
    label: &'static str,
    testid: &'static str,
    name: &'static str,
    get: fn(&EnrollmentForm) -> &String,
    set: fn(&mut EnrollmentForm) -> &mut String,
    multiline: bool,
    hint: &'static str,
) -> impl IntoView {
    let value = move || form.with(|f| get(f).clone());
    let on_input = move |ev: leptos::ev::Event| {
        let v = event_target_value(&ev);
        form.update(|f| *set(f) = v);
    };
    let readonly = move || (name == field::ID || name == field::GROUP_ID) && form.with(EnrollmentForm::is_edit);
    let input = if multiline {
        view! {
            <textarea data-testid=testid rows="4" placeholder=hint prop:value=value on:input=on_input
                on:blur=move |_| show.update(|s| s.touch(name))></textarea>
        }
        .into_any()
    } else {
        view! {
            <input type="text" data-testid=testid placeholder=hint prop:value=value readonly=readonly on:input=on_input
                on:blur=move |_| show.update(|s| s.touch(name)) />
        }
        .into_any()
    };
    view! {
        <label class="field">
            <span>{label}</span>
            {input}
            <FieldErrorLine errors=errors show=show name=name />
        </label>
    }
}

#[component]
fn FieldErrorLine(errors: Memo<Vec<FieldError>>, show: RwSignal<Shown>, name: &'static str) -> impl IntoView {
    move || {
        show.with(|s| s.shows(name))
            .then(|| errors.with(|e| error_for(e, name).map(str::to_string)))
            .flatten()
            .map(|m| view! { <span class="field-error" data-testid="field-error" data-field=name>{m}</span> })
    }
}

fn select_field(
    form: RwSignal<EnrollmentForm>,
    label: &'static str,
    testid: &'static str,
    options: &'static [(&'static str, &'static str)],
    get: fn(&EnrollmentForm) -> &String,
    set: fn(&mut EnrollmentForm) -> &mut String,
) -> impl IntoView {
    view! {
        <label class="field">
            <span>{label}</span>
            <select data-testid=testid prop:value=move || form.with(|f| get(f).clone())
                on:change=move |ev| { let v = event_target_value(&ev); form.update(|f| *set(f) = v) }>
                {options
                    .iter()
                    .map(|(value, text)| {
                        let v = *value;
                        view! { <option value=v selected=move || form.with(|f| get(f) == v)>{*text}</option> }
                    })
                    .collect_view()}
            </select>
        </label>
    }
}

fn check_field(
    form: RwSignal<EnrollmentForm>,
    label: &'static str,
    testid: &'static str,
    get: fn(&EnrollmentForm) -> bool,
    set: fn(&mut EnrollmentForm) -> &mut bool,
) -> impl IntoView {
    view! {
        <label class="check">
            <input type="checkbox" data-testid=testid prop:checked=move || form.with(get)
                on:change=move |ev| { let v = event_target_checked(&ev); form.update(|f| *set(f) = v) } />
            <span>{label}</span>
        </label>
    }
}

#[component]
fn FormPanel(form: EnrollmentForm, panel: RwSignal<Panel>, refresh: RwSignal<u32>) -> impl IntoView {
    let kind = form.kind;
    let w = words(kind);
    let editing = form.is_edit();
    let client = expect_context::<RwSignal<ApiClient>>();
    let form = RwSignal::new(form);
    let errors = Memo::new(move |_| form.with(EnrollmentForm::errors));
    let show = RwSignal::new(Shown::default());
    let busy = RwSignal::new(false);
    let save_error = RwSignal::new(None::<ApiError>);
    let exists_error = RwSignal::new(None::<String>);
    let notices = use_notices();
    let linked = LocalResource::new(move || {
        let c = client.get();
        async move { c.hubs().await.map(|h| h.into_iter().map(|h| h.host_name).collect::<Vec<_>>()).unwrap_or_default() }
    });

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        show.update(|s| s.all = true);
        exists_error.set(None);
        save_error.set(None);
        let f = form.get_untracked();
        let doc = match kind {
            FormKind::Individual => f.to_enrollment().map(|e| Document::Individual(Box::new(e))),
            FormKind::Group => f.to_group().map(|g| Document::Group(Box::new(g))),
        };
        let Ok(doc) = doc else { return };
        busy.set(true);
        spawn_local(async move {
            let c = client.get_untracked();
            let r = if f.is_edit() { put_doc(&c, &doc).await.map(|_| ()) } else { create_doc(&c, &doc).await };
            busy.set(false);
            match r {
                Ok(()) => {
                    notices.info(format!("Saved {}", doc.id()));
                    refresh.update(|n| *n += 1);
                    panel.set(Panel::Detail(doc.id().to_string()));
                }
                Err(e) if e.status() == Some(409) && !f.is_edit() => {
                    exists_error.set(Some(format!("{} '{}' already exists: pick another id, or edit it from the list", w.noun, doc.id())));
                }
                Err(e) => save_error.set(Some(e)),
            }
        });
    };

    let attestation = move || form.with(|f| f.attestation.clone());
    let policy = move || form.with(|f| f.allocation_policy.clone());
    let attestations: &'static [(&'static str, &'static str)] = match kind {
        FormKind::Individual => &[("symmetricKey", "Symmetric key"), ("x509", "X.509 certificate"), ("tpm", "TPM")],
        FormKind::Group => &[("symmetricKey", "Symmetric key"), ("x509", "X.509 (signing certificate or CA)")],
    };
    let (cert_label, cert2_label) = match kind {
        FormKind::Individual => ("Client certificate (PEM)", "Secondary client certificate (PEM, optional)"),
        FormKind::Group => ("Signing certificate (PEM)", "Secondary signing certificate (PEM, optional)"),
    };

    view! {
        <aside class="card side-panel" data-testid=format!("{}-form", w.prefix)>
            <div class="panel-head">
                <h3>{if editing { format!("Edit {}", w.noun) } else { format!("New {}", w.noun) }}</h3>
            </div>
            <form on:submit=submit novalidate=true>
                {text_field(form, errors, show, w.id_label, "form-registration-id", field::id(kind), |f| &f.id, |f| &mut f.id, false, "")}
                {move || exists_error.get().map(|m| view! { <span class="field-error" data-testid="field-error" data-field=field::id(kind)>{m}</span> })}
                {(kind == FormKind::Individual).then(|| text_field(
                    form, errors, show, "Device id", "form-device-id", field::DEVICE_ID,
                    |f| &f.device_id, |f| &mut f.device_id, false, "blank = the registration id"))}
                {select_field(form, "Attestation", "form-attestation", attestations, |f| &f.attestation, |f| &mut f.attestation)}
                <FieldErrorLine errors=errors show=show name=field::ATTESTATION />
                {move || match attestation().as_str() {
                    "x509" => view! {
                        {text_field(form, errors, show, cert_label, "form-primary-certificate", field::PRIMARY_CERTIFICATE,
                            |f| &f.primary_certificate, |f| &mut f.primary_certificate, true, "-----BEGIN CERTIFICATE-----")}
                        {text_field(form, errors, show, cert2_label, "form-secondary-certificate", field::SECONDARY_CERTIFICATE,
                            |f| &f.secondary_certificate, |f| &mut f.secondary_certificate, true, "")}
                        {text_field(form, errors, show, "…or the name of a CA certificate", "form-ca-reference", field::CA_REFERENCE,
                            |f| &f.ca_reference, |f| &mut f.ca_reference, false, "as listed under Certificates")}
                    }.into_any(),
                    "tpm" => view! {
                        <p class="note">{TPM_NOTE}</p>
                        {text_field(form, errors, show, "Endorsement key (base64)", "form-endorsement-key", field::ENDORSEMENT_KEY,
                            |f| &f.endorsement_key, |f| &mut f.endorsement_key, true, "")}
                        {move || form.with(|f| dps_console_model::tpm::registration_id_of_ek(&f.endorsement_key).ok()).map(|id| view! {
                            <p class="note" data-testid="form-ek-registration-id">
                                "Registration id derived from this EK (the C, Node and Java SDKs use it): " <code>{id}</code>
                            </p>
                        })}
                        {text_field(form, errors, show, "Storage root key (base64, optional)", "form-storage-root-key", field::STORAGE_ROOT_KEY,
                            |f| &f.storage_root_key, |f| &mut f.storage_root_key, true, "")}
                    }.into_any(),
                    _ => view! {
                        {text_field(form, errors, show, "Primary key", "form-primary-key", field::PRIMARY_KEY,
                            |f| &f.primary_key, |f| &mut f.primary_key, false, "blank = generated by the service")}
                        {text_field(form, errors, show, "Secondary key", "form-secondary-key", field::SECONDARY_KEY,
                            |f| &f.secondary_key, |f| &mut f.secondary_key, false, "blank = generated by the service")}
                    }.into_any(),
                }}
                {select_field(form, "Provisioning status", "form-status", &[("enabled", "Enabled"), ("disabled", "Disabled")],
                    |f| &f.status, |f| &mut f.status)}
                {text_field(form, errors, show, "IoT hubs", "form-iot-hubs", field::IOT_HUBS,
                    |f| &f.iot_hubs, |f| &mut f.iot_hubs, true, "blank = every linked hub; one host name per line")}
                {move || linked.get().filter(|h| !h.is_empty()).map(|h| view! {
                    <p class="muted small">"Linked hubs: " {h.join(", ")}</p>
                })}
                {select_field(form, "Allocation policy", "form-allocation-policy",
                    &[("", "Service default"), ("hashed", "Hashed (weighted)"), ("geoLatency", "Lowest latency"),
                      ("static", "Static (one hub)"), ("custom", "Custom (webhook)")],
                    |f| &f.allocation_policy, |f| &mut f.allocation_policy)}
                <FieldErrorLine errors=errors show=show name=field::ALLOCATION_POLICY />
                {move || (policy() == "custom").then(|| view! {
                    {text_field(form, errors, show, "Webhook URL", "form-webhook-url", field::WEBHOOK_URL,
                        |f| &f.webhook_url, |f| &mut f.webhook_url, false, "https://…")}
                    {text_field(form, errors, show, "Webhook API version", "form-api-version", field::API_VERSION,
                        |f| &f.api_version, |f| &mut f.api_version, false, "2021-10-01")}
                })}
                <fieldset class="checks">
                    <legend>"When the device registers again"</legend>
                    {check_field(form, "Re-assign its hub", "form-update-hub-assignment", |f| f.update_hub_assignment, |f| &mut f.update_hub_assignment)}
                    {check_field(form, "Migrate its data to the new hub", "form-migrate-device-data", |f| f.migrate_device_data, |f| &mut f.migrate_device_data)}
                </fieldset>
                {text_field(form, errors, show, "Initial twin (JSON)", "form-initial-twin", field::INITIAL_TWIN,
                    |f| &f.initial_twin, |f| &mut f.initial_twin, true,
                    r#"{ "tags": { … }, "properties": { "desired": { … } } }"#)}
                {check_field(form, "IoT Edge device", "form-edge", |f| f.iot_edge, |f| &mut f.iot_edge)}
                {move || save_error.get().map(|e| view! { <ErrorPanel error=e /> })}
                {move || (show.with(|s| s.all) && !errors.with(Vec::is_empty)).then(|| view! {
                    <p class="field-error">"Correct the fields marked above."</p>
                })}
                <div class="panel-actions">
                    <button type="submit" class="btn primary" data-testid="form-submit" disabled=move || busy.get()>
                        {if editing { "Save" } else { "Create" }}
                    </button>
                    <button type="button" class="btn" data-testid="form-cancel" on:click=move |_| panel.set(Panel::None)>"Cancel"</button>
                </div>
            </form>
        </aside>
    }
}
