//! What `dps enrollment` and `dps enrollment-group` do alike — create, show, list, update, delete, renew-key —
//! written once over [`Enrollment`]; each command file keeps its own options and builds its kind's document.

use anyhow::{bail, Result};
use dps_proto::{AttestationMechanism, Enrollment, EnrollmentKind};
use reqwest::Method;

use super::enrollment::{apply_common, redact, CommonArgs, KeyType};
use crate::client::{seg, Client, Target};
use crate::output::{print, Output};

/// `/enrollments/{id}` or `/enrollmentGroups/{id}`.
fn path<E: Enrollment>(id: &str) -> String {
    format!("/{}/{}", E::KIND.collection(), seg(id))
}

/// The command that manages this kind.
fn command<E: Enrollment>() -> &'static str {
    match E::KIND {
        EnrollmentKind::Individual => "dps enrollment",
        EnrollmentKind::Group => "dps enrollment-group",
    }
}

/// Creates `doc` (with the common options applied); refuses an id that exists (`update` changes one).
pub async fn create<E: Enrollment>(target: &Target, mut doc: E, common: &CommonArgs, columns: &[(&str, &str)], out: Output) -> Result<()> {
    apply_common(common, doc.shared())?;
    let client = Client::new(target)?;
    let path = path::<E>(doc.id());
    if client.call::<(), E>(Method::GET, &path, None, &[]).await.is_ok() {
        bail!("{} '{}' already exists; change it with `{} update`", E::KIND.noun(), doc.id(), command::<E>());
    }
    let created: E = client.call(Method::PUT, &path, Some(&doc), &[]).await?;
    print(out, &created, columns);
    Ok(())
}

/// Shows one document, its keys hidden unless `show_keys`.
pub async fn show<E: Enrollment>(target: &Target, id: &str, show_keys: bool, columns: &[(&str, &str)], out: Output) -> Result<()> {
    let mut doc: E = Client::new(target)?.call::<(), _>(Method::GET, &path::<E>(id), None, &[]).await?;
    redact(doc.shared().attestation, show_keys);
    print(out, &doc, columns);
    Ok(())
}

/// Lists the documents of a kind (at most `top`), keys hidden.
pub async fn list<E: Enrollment>(target: &Target, top: Option<usize>, columns: &[(&str, &str)], out: Output) -> Result<()> {
    let mut list: Vec<E> = Client::new(target)?.query_all(&format!("/{}/query", E::KIND.collection()), top).await?;
    list.iter_mut().for_each(|doc| redact(doc.shared().attestation, false));
    print(out, &list, columns);
    Ok(())
}

/// Reads a document, lets `change` change it, then writes it back under `etag` (default: the one read).
pub async fn update<E: Enrollment>(
    target: &Target,
    id: &str,
    etag: Option<String>,
    change: impl FnOnce(&mut E) -> Result<()>,
    columns: &[(&str, &str)],
    out: Output,
) -> Result<()> {
    let client = Client::new(target)?;
    let path = path::<E>(id);
    let mut doc: E = client.call::<(), _>(Method::GET, &path, None, &[]).await?;
    let if_match = etag.or_else(|| doc.etag().map(str::to_owned)).unwrap_or_else(|| "*".into());
    change(&mut doc)?;
    let mut updated: E = client.call(Method::PUT, &path, Some(&doc), &[("if-match", if_match)]).await?;
    redact(updated.shared().attestation, false);
    print(out, &updated, columns);
    Ok(())
}

/// Deletes a document (only at `etag` when given).
pub async fn delete<E: Enrollment>(target: &Target, id: &str, etag: Option<String>) -> Result<()> {
    let h: Vec<(&str, String)> = etag.map(|e| ("if-match", e)).into_iter().collect();
    Client::new(target)?.send::<()>(Method::DELETE, &path::<E>(id), None, &h).await?;
    eprintln!("deleted {} '{id}'", E::KIND.noun());
    Ok(())
}

/// Regenerates a document's symmetric keys and prints them.
pub async fn renew_key<E: Enrollment>(target: &Target, id: &str, key_type: KeyType, out: Output) -> Result<()> {
    let body = serde_json::json!({ "keyType": key_type.as_str() });
    let url = format!("{}/renewKey", path::<E>(id));
    let a: AttestationMechanism = Client::new(target)?.call(Method::POST, &url, Some(&body), &[]).await?;
    let columns = [("TYPE", "/type"), ("PRIMARY KEY", "/symmetricKey/primaryKey"), ("SECONDARY KEY", "/symmetricKey/secondaryKey")];
    print(out, &a, &columns);
    Ok(())
}
