//! Certificates: the CA store with Azure's proof of possession (upload a CA, generate a verification code, upload
//! a certificate whose CN is the code, signed by the CA → verified), and the chain inspector (files, a drop zone or
//! pasted PEM → `POST /certificates/inspect` → every certificate's fields and whether they form a valid chain).

use dps_console_model::{format, validation};
use dps_proto::{CaCertificate, CertificateDetails, ChainReport};
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{Page, PageHeader};
use crate::api::{ApiClient, ApiError};
use crate::components::confirm::ConfirmDialog;
use crate::components::copy::CopyButton;
use crate::components::files::{clear_input, files_of_drop, files_of_input, native_picker, read_all, Picked};

/// What the certificate pickers offer.
const CERT_EXTENSIONS: &[&str] = &["pem", "cer", "crt", "der"];
use crate::components::json::{pretty, ShowJson};
use crate::components::loaded::{load, Loaded};
use crate::components::notice::use_notices;
use crate::components::poll::now;
use crate::components::status::{EmptyState, ErrorPanel, MaybeError};

/// A CA name from a file name: `contoso-root.pem` → `contoso-root` (lower case, other characters → `-`).
fn name_of_file(file: &str) -> String {
    let stem = file.rsplit_once('.').map(|(s, _)| s).unwrap_or(file);
    let stem = stem.strip_suffix(".key").unwrap_or(stem);
    let name: String = stem.to_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() || "-._:".contains(c) { c } else { '-' }).collect();
    name.trim_matches('-').to_string()
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(format::date_time).unwrap_or_else(|| "—".into())
}

#[component]
pub fn Certificates() -> impl IntoView {
    let cas = load(|c| async move { c.cas().await });
    let reload = Callback::new(move |()| cas.refetch());

    view! {
        <section class="page">
            <PageHeader page=Page::Certificates />
            <div class="card">
                <h3>"CA certificates"</h3>
                <p class="muted">"X.509 enrollment groups can trust a CA from this store once it is verified: prove you hold its "
                    "key by signing a certificate whose common name is the verification code."</p>
                <Loaded data=cas what="CA certificates" let:list>
                    <CaTable list=list reload=reload />
                </Loaded>
                <CaUpload reload=reload />
            </div>
            <super::credentials::CredentialPolicies />
            <super::credentials::IssuedCertificates />
            <Inspector />
        </section>
    }
}

#[component]
fn CaTable(list: Vec<CaCertificate>, reload: Callback<()>) -> impl IntoView {
    if list.is_empty() {
        return view! {
            <EmptyState title="No CA certificate"
                hint="Upload a root or intermediate CA (PEM) below, then verify it. For tests, dps cert create-root makes one." />
        }
        .into_any();
    }
    view! {
        <table class="table">
            <thead>
                <tr><th>"Name"</th><th>"Subject"</th><th>"Expires"</th><th>"SHA-1 thumbprint"</th><th>"State"</th><th></th></tr>
            </thead>
            <tbody>
                {list.into_iter().map(|ca| view! { <CaRow ca=ca reload=reload /> }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// What a CA row's buttons do: a verification code, the proof (a verification certificate's PEM), deletion.
#[derive(Debug, Clone, PartialEq)]
enum CaChange {
    Generate,
    Verify(String),
    Delete,
}

/// The action behind a CA row's buttons; a new verification code goes to `code`.
fn ca_action(name: String, code: RwSignal<Option<String>>, reload: Callback<()>) -> Action<CaChange, Result<(), ApiError>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    Action::new_local(move |change: &CaChange| {
        let (c, name, change) = (client.get_untracked(), name.clone(), change.clone());
        async move {
            match change {
                CaChange::Generate => code.set(c.generate_verification_code(&name).await?.verification_code),
                CaChange::Verify(pem) => {
                    c.verify_ca(&name, &pem).await?;
                    notices.info(format!("CA {name} verified."));
                    reload.run(());
                }
                CaChange::Delete => {
                    c.delete_ca(&name).await?;
                    notices.info(format!("CA {name} deleted."));
                    reload.run(());
                }
            }
            Ok(())
        }
    })
}

#[component]
fn CaRow(ca: CaCertificate, reload: Callback<()>) -> impl IntoView {
    let notices = use_notices();
    let name = ca.name.clone();
    let code = RwSignal::new(ca.verification_code.clone());
    let change = ca_action(name.clone(), code, reload);
    let changed = change.value();
    let run = Callback::new(move |what: CaChange| {
        change.clear();
        change.dispatch_local(what);
    });
    let confirm = RwSignal::new(false);
    let info = ca.info.clone();
    let subject = info.as_ref().map(|i| i.subject_name.clone()).unwrap_or_default();
    let expires = info.as_ref().and_then(|i| i.not_after_utc);
    let validity = info.as_ref().map(|i| format::validity(i.not_before_utc, i.not_after_utc, now())).unwrap_or_default();
    let thumb = info.as_ref().map(|i| i.sha1_thumbprint.clone()).unwrap_or_default();
    let verified = ca.is_verified;

    // The verification certificate, from the file input or the desktop shell's Open dialog.
    let verify_picked = move |picked: Result<Vec<Picked>, String>| {
        let pem = picked.and_then(|files| files.into_iter().next().map(|f| f.certificate_pem()).transpose());
        match pem {
            Ok(Some(pem)) => run.run(CaChange::Verify(pem)),
            Ok(None) => {}
            Err(e) => notices.error(e),
        }
    };
    let verify = move |ev: leptos::ev::Event| {
        let files = files_of_input(&ev);
        clear_input(&ev);
        spawn_local(async move { verify_picked(read_all(files).await) });
    };
    let delete_message = format!("Delete the CA {name}? Enrollment groups that reference it stop accepting its devices.");
    let verify_id = format!("verify-{name}");

    view! {
        <tr data-testid="ca-row" data-id=name.clone()>
            <td><strong>{name.clone()}</strong></td>
            <td class="wrap">{subject}</td>
            <td title=validity.clone()>{time(expires)} <br/> <span class="muted small">{validity.clone()}</span></td>
            <td><code class="small">{thumb}</code></td>
            <td>
                {if verified {
                    view! { <span class="badge ok" data-testid="ca-verified">"verified"</span> }.into_any()
                } else {
                    view! { <span class="badge warn" data-testid="ca-unverified">"not verified"</span> }.into_any()
                }}
            </td>
            <td class="actions">
                {(!verified).then(|| view! {
                    <button type="button" class="btn small" data-testid="ca-generate-code" on:click=move |_| run.run(CaChange::Generate)>
                        "Generate code"
                    </button>
                })}
                <button type="button" class="btn small danger" data-testid="ca-delete" on:click=move |_| confirm.set(true)>"Delete"</button>
                <ConfirmDialog open=confirm title="Delete the CA?" message=delete_message
                    on_confirm=Callback::new(move |()| run.run(CaChange::Delete)) />
            </td>
        </tr>
        {move || (!verified && code.get().is_some()).then(|| {
            let c = code.get().unwrap_or_default();
            view! { <VerifySteps code=c verify_id=verify_id.clone() verify=verify verify_picked=verify_picked /> }
        })}
        {move || changed.get().and_then(Result::err).map(|e| view! { <tr class="sub-row"><td colspan="6"><ErrorPanel error=e /></td></tr> })}
    }
}

/// The proof of possession: the code to sign, and the upload of the signed certificate.
#[component]
fn VerifySteps(
    code: String,
    verify_id: String,
    verify: impl Fn(leptos::ev::Event) + Clone + 'static,
    verify_picked: impl Fn(Result<Vec<Picked>, String>) + Clone + 'static,
) -> impl IntoView {
    let copy = code.clone();
    view! {
        <tr class="sub-row">
            <td colspan="6">
                <div class="verify-steps">
                    <span>"1. Verification code: "</span>
                    <code data-testid="ca-verification-code">{code}</code>
                    <CopyButton text=copy />
                    <span class="muted">" 2. Sign a certificate with CN = this code with the CA's key ("
                        <code>"dps cert create-verification"</code> "). 3. Upload it: "</span>
                    <label class="btn small" for=verify_id.clone()>"Upload verification certificate"</label>
                    <input id=verify_id type="file" accept=".pem,.cer,.crt,.der" class="file-hidden"
                        data-testid="ca-verify-upload" on:change=verify
                        on:click=native_picker(false, CERT_EXTENSIONS, verify_picked) />
                </div>
            </td>
        </tr>
    }
}

/// Uploads a CA; on success tells the user, clears the form and reads the list again.
fn upload_action(
    name: RwSignal<String>,
    pem: RwSignal<String>,
    reload: Callback<()>,
) -> Action<(String, String, bool), Result<(), ApiError>> {
    let client = expect_context::<RwSignal<ApiClient>>();
    let notices = use_notices();
    Action::new_local(move |(n, p, trusted): &(String, String, bool)| {
        let (c, n, p, trusted) = (client.get_untracked(), n.clone(), p.clone(), *trusted);
        async move {
            let ca = c.put_ca(&n, &p, trusted).await?;
            notices.info(format!("CA {} uploaded{}.", ca.name, if ca.is_verified { " and trusted" } else { "; verify it next" }));
            name.set(String::new());
            pem.set(String::new());
            reload.run(());
            Ok(())
        }
    })
}

#[component]
fn CaUpload(reload: Callback<()>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let pem = RwSignal::new(String::new());
    let trusted = RwSignal::new(false);
    let problem = RwSignal::new(None::<String>);
    let save = upload_action(name, pem, reload);
    let (saved, pending) = (save.value(), save.pending());

    let upload = move |n: String, p: String| {
        if let Err(e) = validation::group_id(&n) {
            problem.set(Some(format!("Name: {e}")));
            return;
        }
        if let Err(e) = validation::certificate(&p) {
            problem.set(Some(format!("Certificate: {e}")));
            return;
        }
        problem.set(None);
        save.dispatch_local((n, p, trusted.get_untracked()));
    };
    // Choosing a file uploads it at once (named after the file when the name is blank).
    let upload_picked = move |picked: Result<Vec<Picked>, String>| {
        let file = match picked {
            Ok(files) => match files.into_iter().next() {
                Some(f) => f,
                None => return,
            },
            Err(e) => {
                problem.set(Some(e));
                return;
            }
        };
        match file.certificate_pem() {
            Ok(p) => {
                let n = Some(name.get_untracked().trim().to_string()).filter(|n| !n.is_empty()).unwrap_or_else(|| name_of_file(&file.name));
                name.set(n.clone());
                pem.set(p.clone());
                upload(n, p);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    let on_file = move |ev: leptos::ev::Event| {
        let files = files_of_input(&ev);
        clear_input(&ev);
        spawn_local(async move { upload_picked(read_all(files).await) });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        upload(name.get_untracked().trim().to_string(), pem.get_untracked());
    };

    view! {
        <form class="form upload" on:submit=submit>
            <h4>"Upload a CA"</h4>
            <label for="ca-name">"Name"</label>
            <input id="ca-name" data-testid="ca-name" placeholder="e.g. contoso-root (blank: the file's name)"
                prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
            <label for="ca-file">"Certificate file"</label>
            <input id="ca-file" type="file" accept=".pem,.cer,.crt,.der" data-testid="ca-upload" on:change=on_file
                on:click=native_picker(false, CERT_EXTENSIONS, upload_picked) />
            <label for="ca-pem">"…or paste PEM"</label>
            <textarea id="ca-pem" rows="4" data-testid="ca-pem" placeholder="-----BEGIN CERTIFICATE-----"
                prop:value=move || pem.get() on:input=move |ev| pem.set(event_target_value(&ev))></textarea>
            <label for="ca-trusted">"Trust without proof"</label>
            <label class="check">
                <input id="ca-trusted" type="checkbox" data-testid="ca-trusted" prop:checked=move || trusted.get()
                    on:change=move |ev| trusted.set(event_target_checked(&ev)) />
                " mark it verified on upload (for test CAs; Azure requires the proof)"
            </label>
            <div class="form-actions">
                <button type="submit" class="btn primary" data-testid="ca-submit" disabled=move || pending.get()>"Upload"</button>
            </div>
            {move || problem.get().map(|p| view! { <p class="form-error" role="alert">{p}</p> })}
            <MaybeError error=Signal::derive(move || saved.get().and_then(Result::err)) />
        </form>
    }
}

#[component]
fn Inspector() -> impl IntoView {
    let client = expect_context::<RwSignal<ApiClient>>();
    // (file name, PEM) in the order chosen: the device certificate first.
    let files = RwSignal::new(Vec::<(String, String)>::new());
    let paste = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let inspect = Action::new_local(move |bundle: &String| {
        let (c, bundle) = (client.get_untracked(), bundle.clone());
        async move { c.inspect(&bundle).await }
    });
    let (result, busy) = (inspect.value(), inspect.pending());

    let run = move || {
        let mut bundle: Vec<String> = files.get_untracked().into_iter().map(|(_, p)| p).collect();
        let pasted = paste.get_untracked();
        if !pasted.trim().is_empty() {
            bundle.push(pasted);
        }
        if bundle.is_empty() {
            problem.set(Some("Choose or drop certificate files, or paste PEM text, first.".into()));
            return;
        }
        problem.set(None);
        inspect.dispatch_local(bundle.join("\n"));
    };
    let run_cb = Callback::new(move |()| run());

    view! {
        <div class="card">
            <h3>"Chain inspector"</h3>
            <p class="muted">"Check certificate material before a device uses it: the device certificate first, then its "
                "intermediates and root in any order (PEM or DER files, or pasted PEM)."</p>
            <DropZone files=files problem=problem on_added=run_cb on_clear=Callback::new(move |()| inspect.clear()) />
            <label for="inspect-paste">"PEM text"</label>
            <textarea id="inspect-paste" rows="5" data-testid="inspect-paste" placeholder="-----BEGIN CERTIFICATE-----"
                prop:value=move || paste.get() on:input=move |ev| paste.set(event_target_value(&ev))></textarea>
            <div class="form-actions">
                <button type="button" class="btn primary" data-testid="inspect-run" disabled=move || busy.get() on:click=move |_| run()>
                    {move || if busy.get() { "Inspecting…" } else { "Inspect" }}
                </button>
            </div>
            {move || problem.get().map(|p| view! { <p class="form-error" role="alert">{p}</p> })}
            {move || match result.get() {
                None => ().into_any(),
                Some(Err(e)) => view! { <ErrorPanel error=e /> }.into_any(),
                Some(Ok(r)) => view! { <Report report=r /> }.into_any(),
            }}
        </div>
    }
}

/// The inspector's files: dropped or chosen (PEM or DER, read as PEM), listed in order; `on_added` runs after
/// files were added, `on_clear` when they are cleared.
#[component]
fn DropZone(
    files: RwSignal<Vec<(String, String)>>,
    problem: RwSignal<Option<String>>,
    on_added: Callback<()>,
    on_clear: Callback<()>,
) -> impl IntoView {
    let dragging = RwSignal::new(false);
    let add_picked = move |picked: Result<Vec<Picked>, String>| {
        let list = match picked {
            Ok(list) => list,
            Err(e) => {
                problem.set(Some(e));
                return;
            }
        };
        if list.is_empty() {
            return;
        }
        let mut added = Vec::new();
        for f in list {
            match f.certificate_pem() {
                Ok(p) => added.push((f.name, p)),
                Err(e) => problem.set(Some(e)),
            }
        }
        files.update(|fs| fs.extend(added));
        on_added.run(());
    };
    let add_files = move |list: Vec<web_sys::File>| {
        spawn_local(async move { add_picked(read_all(list).await) });
    };
    view! {
        <div class="drop-zone" class:dragging=move || dragging.get() data-testid="inspect-drop"
            on:dragover=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); dragging.set(true); }
            on:dragleave=move |_| dragging.set(false)
            on:drop=move |ev: leptos::ev::DragEvent| { ev.prevent_default(); dragging.set(false); add_files(files_of_drop(&ev)); }>
            <p>"Drop certificate files here, or "
                <label class="btn small" for="inspect-files">"choose files"</label></p>
            <input id="inspect-files" type="file" multiple accept=".pem,.cer,.crt,.der" class="file-hidden" data-testid="inspect-input"
                on:change=move |ev| { let list = files_of_input(&ev); clear_input(&ev); add_files(list); }
                on:click=native_picker(true, CERT_EXTENSIONS, add_picked) />
            {move || {
                let fs = files.get();
                (!fs.is_empty()).then(|| view! {
                    <ol class="file-list">
                        {fs.into_iter().map(|(n, _)| view! { <li><code>{n}</code></li> }).collect_view()}
                    </ol>
                    <button type="button" class="btn small link" on:click=move |_| { files.set(Vec::new()); on_clear.run(()); }>
                        "Clear files"
                    </button>
                })
            }}
        </div>
    }
}

#[component]
fn Report(report: ChainReport) -> impl IntoView {
    let v = report.verdict.clone();
    let verdict = if v.valid {
        match &v.anchor {
            Some(a) => format!("Valid chain, up to {a}"),
            None => "Valid chain".to_string(),
        }
    } else {
        "Not a valid chain".to_string()
    };
    let json = pretty(&report);
    view! {
        <div data-testid="inspect-result" class="inspect-result">
            <div class="verdict" class:ok=v.valid class:bad=!v.valid data-testid="chain-verdict">
                <strong>{verdict}</strong>
                {(!v.problems.is_empty()).then(|| view! {
                    <ul class="problems">{v.problems.iter().map(|p| view! { <li>{p.clone()}</li> }).collect_view()}</ul>
                })}
                {(!v.notes.is_empty()).then(|| view! {
                    <ul class="notes muted">{v.notes.iter().map(|p| view! { <li>{p.clone()}</li> }).collect_view()}</ul>
                })}
            </div>
            {report.certificates.into_iter().enumerate().map(|(i, c)| view! { <CertCard index=i cert=c /> }).collect_view()}
            <ShowJson json=json />
        </div>
    }
}

#[component]
fn CertCard(index: usize, cert: CertificateDetails) -> impl IntoView {
    let role = if cert.basic_constraints.is_some_and(|b| b.ca) {
        if cert.self_signed {
            "root CA"
        } else {
            "intermediate CA"
        }
    } else if cert.self_signed {
        "self-signed certificate"
    } else {
        "end-entity certificate"
    };
    let ca_flag = match cert.basic_constraints {
        Some(b) if b.ca => match b.path_len_constraint {
            Some(n) => format!("CA: yes (path length ≤ {n})"),
            None => "CA: yes".to_string(),
        },
        Some(_) => "CA: no".to_string(),
        None => "no basic constraints".to_string(),
    };
    let list = |v: &[String]| if v.is_empty() { "—".to_string() } else { v.join(", ") };
    let validity = format::validity(cert.not_before_utc, cert.not_after_utc, now());
    let expired = validity.starts_with("expired") || validity.starts_with("not valid yet");
    view! {
        <div class="cert-card" data-testid="inspect-certificate">
            <div class="row">
                <strong>{format!("#{} ", index + 1)} {cert.common_name.clone().unwrap_or_else(|| cert.subject.clone())}</strong>
                <span class="badge">{role}</span>
                <span class="badge" class:bad=expired class:ok=!expired>{validity}</span>
            </div>
            <dl class="pairs">
                <dt>"Subject"</dt><dd>{cert.subject.clone()}</dd>
                <dt>"Issuer"</dt><dd>{cert.issuer.clone()}</dd>
                <dt>"Valid"</dt><dd>{format!("{} → {}", time(cert.not_before_utc), time(cert.not_after_utc))}</dd>
                <dt>"Basic constraints"</dt><dd>{ca_flag}</dd>
                <dt>"Key usage"</dt><dd>{list(&cert.key_usage)}</dd>
                <dt>"Extended key usage"</dt><dd>{list(&cert.extended_key_usage)}</dd>
                <dt>"Subject alternative names"</dt><dd>{list(&cert.subject_alternative_names)}</dd>
                <dt>"Public key"</dt><dd>{cert.public_key_algorithm.clone()}</dd>
                <dt>"Signature"</dt><dd>{cert.signature_algorithm.clone()}</dd>
                <dt>"Serial number"</dt><dd><code>{cert.serial_number.clone()}</code></dd>
                <dt>"SHA-1 thumbprint"</dt><dd><code>{cert.sha1_thumbprint.clone()}</code></dd>
                <dt>"SHA-256 thumbprint"</dt><dd><code class="wrap">{cert.sha256_thumbprint.clone()}</code></dd>
            </dl>
        </div>
    }
}
