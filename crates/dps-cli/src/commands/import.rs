//! `dps enrollment import` and `dps enrollment-group import`: many items through the service API's bulk
//! operation (`POST /enrollments` | `/enrollmentGroups` with `{ "mode", "enrollments" | "enrollmentGroups" }`,
//! §5.3), in chunks of `--batch`, `--parallel` operations in flight.
//!
//! The input is a JSON array or NDJSON (one item per line), from a file or standard input (`-`). Each item is
//! checked here against the wire type, so a malformed one is reported alone instead of failing the bulk
//! operation it would travel in; the items are sent as the text they were read as (no re-serialisation).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dps_proto::{BulkEnrollmentOperationError, BulkEnrollmentOperationResult, EnrollmentGroup, IndividualEnrollment};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::client::{Client, Target};
use crate::output::Output;

/// The bulk modes an import can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ImportMode {
    /// New items only: an item whose id exists fails (409).
    #[default]
    Create,
    /// Create or replace.
    Update,
}

impl ImportMode {
    fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// A JSON array of items or NDJSON (one item per line); `-` reads standard input.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t)]
    pub mode: ImportMode,
    /// Items per bulk operation (the `azure` limits profile allows 10).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Bulk operations in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
}

/// What is imported: individual enrollments or enrollment groups.
pub trait Kind: Send + Sync + 'static {
    /// The wire type each item must parse as.
    type Item: DeserializeOwned;
    /// The collection's path, which is also the bulk operation's.
    const PATH: &'static str;
    /// The bulk body's member holding the items.
    const MEMBER: &'static str;
    /// The item's id member.
    const ID: &'static str;
    const NOUN: &'static str;
    fn error_id(e: &BulkEnrollmentOperationError) -> Option<&str>;
}

pub struct Enrollments;
pub struct Groups;

impl Kind for Enrollments {
    type Item = IndividualEnrollment;
    const PATH: &'static str = "/enrollments";
    const MEMBER: &'static str = "enrollments";
    const ID: &'static str = "registrationId";
    const NOUN: &'static str = "enrollments";
    fn error_id(e: &BulkEnrollmentOperationError) -> Option<&str> {
        e.registration_id.as_deref()
    }
}

impl Kind for Groups {
    type Item = EnrollmentGroup;
    const PATH: &'static str = "/enrollmentGroups";
    const MEMBER: &'static str = "enrollmentGroups";
    const ID: &'static str = "enrollmentGroupId";
    const NOUN: &'static str = "enrollment groups";
    fn error_id(e: &BulkEnrollmentOperationError) -> Option<&str> {
        e.enrollment_group_id.as_deref()
    }
}

/// One item that was not imported.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The item's id, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the item is in the input (1-based: the line for NDJSON, the element for an array), for items
    /// refused before sending.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    pub error_code: i64,
    pub message: String,
}

/// At most this many failures are listed one by one (all are counted by code).
const LISTED_FAILURES: usize = 100;

/// The outcome of an import.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub mode: &'static str,
    pub total: usize,
    pub imported: usize,
    pub failed: usize,
    /// Failed items per DPS error code.
    pub failed_by_code: BTreeMap<i64, usize>,
    pub seconds: f64,
    /// Imported items per second, reading the input included.
    pub per_second: f64,
    pub batch: usize,
    pub parallel: usize,
    /// The first failures (at most 100).
    pub failures: Vec<Failure>,
}

impl Summary {
    pub fn new(mode: ImportMode, batch: usize, parallel: usize) -> Self {
        Self {
            mode: mode.as_str(),
            total: 0,
            imported: 0,
            failed: 0,
            failed_by_code: BTreeMap::new(),
            seconds: 0.0,
            per_second: 0.0,
            batch,
            parallel,
            failures: Vec::new(),
        }
    }

    fn fail(&mut self, f: Failure) {
        self.failed += 1;
        *self.failed_by_code.entry(f.error_code).or_default() += 1;
        if self.failures.len() < LISTED_FAILURES {
            self.failures.push(f);
        }
    }
}

/// The code a malformed item is reported with (the service answers 400004 for an invalid body).
const INVALID: i64 = 400004;

/// `dps … import`: reads, checks, sends, prints the summary; an error when any item failed.
pub async fn run<K: Kind>(a: ImportArgs, target: &Target, output: Output) -> Result<()> {
    let started = Instant::now();
    let text = read_input(&a.file)?;
    let client = Client::new(target)?;
    let (batch, parallel) = (a.batch as usize, a.parallel as usize);
    check_bulk_limit(&client, batch).await?;
    let mut summary = Summary::new(a.mode, batch, parallel);
    let items = parse_items::<K>(&text, &mut summary)?;
    let valid = items.len();
    summary.total += valid;
    send::<K>(&client, a.mode, items.into_iter(), batch, parallel, &mut summary).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.per_second = summary.imported as f64 / summary.seconds.max(1e-9);
    print_summary::<K>(output, &summary);
    if summary.failed > 0 {
        bail!("{} of {} {} were not imported", summary.failed, summary.total, K::NOUN);
    }
    Ok(())
}

fn read_input(file: &std::path::Path) -> Result<String> {
    if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("cannot read standard input")?;
        Ok(s)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// Under the `azure` limits profile the service takes at most `maxBulkItems` per operation: say so before
/// sending anything. (A service without `/service/limits`, e.g. Azure's own, answers with its error instead.)
async fn check_bulk_limit(client: &Client, batch: usize) -> Result<()> {
    let Ok(limits) = client.call::<(), serde_json::Value>(Method::GET, "/service/limits", None, &[]).await else { return Ok(()) };
    let max = limits.pointer("/azure/maxBulkItems").and_then(serde_json::Value::as_u64);
    if let (Some("azure"), Some(max)) = (limits["profile"].as_str(), max) {
        if batch as u64 > max {
            bail!(
                "the service runs the Azure limits profile: a bulk operation holds at most {max} items, --batch is {batch}; \
                 use --batch {max} (or switch the profile: Settings in the console)"
            );
        }
    }
    Ok(())
}

/// The items of a JSON array or of NDJSON, each checked against `K::Item`; the malformed ones are counted as
/// failures (with their position) and left out.
fn parse_items<'t, K: Kind>(text: &'t str, summary: &mut Summary) -> Result<Vec<&'t str>> {
    let raw: Vec<&'t str> = if text.trim_start().starts_with('[') { split_array(text)? } else { text.lines().map(str::trim).collect() };
    let mut items = Vec::with_capacity(raw.len());
    for (i, item) in raw.into_iter().enumerate() {
        if item.is_empty() {
            continue;
        }
        match serde_json::from_str::<K::Item>(item) {
            Ok(_) => items.push(item),
            Err(e) => {
                let id = serde_json::from_str::<serde_json::Value>(item).ok().and_then(|v| v.get(K::ID)?.as_str().map(str::to_owned));
                summary.total += 1;
                summary.fail(Failure { id, position: Some(i + 1), error_code: INVALID, message: e.to_string() });
            }
        }
    }
    Ok(items)
}

/// The elements of a JSON array as the text they are (whatever each holds: each is parsed on its own, so a
/// malformed one fails alone). Only strings and nesting are followed, to find the top-level commas.
fn split_array(text: &str) -> Result<Vec<&str>> {
    let body = text.trim();
    let inner = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')).context("the input starts with '[' but does not end with ']'")?;
    let mut items = Vec::new();
    let (mut depth, mut in_string, mut escaped, mut start) = (0i64, false, false, 0usize);
    for (i, b) in inner.bytes().enumerate() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth -= 1,
            b',' if depth == 0 => {
                items.push(inner[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if in_string || depth != 0 {
        bail!("the JSON array is not complete (an unterminated string or unbalanced brackets)");
    }
    let last = inner[start..].trim();
    if !last.is_empty() || !items.is_empty() {
        items.push(last);
    }
    Ok(items)
}

/// Sends `items` (JSON texts) in bulk operations of `batch`, `parallel` at once, and adds what happened to
/// `summary`. A bulk operation the service refuses as a whole stops the import with its error.
pub async fn send<'a, K: Kind>(
    client: &Client,
    mode: ImportMode,
    items: impl Iterator<Item = &'a str>,
    batch: usize,
    parallel: usize,
    summary: &mut Summary,
) -> Result<()> {
    let head = format!("{{\"mode\":\"{}\",\"{}\":[", mode.as_str(), K::MEMBER);
    let mut in_flight: JoinSet<Result<(usize, BulkEnrollmentOperationResult)>> = JoinSet::new();
    let mut items = items.peekable();
    let mut sent = 0usize;
    while items.peek().is_some() {
        let mut body = Vec::with_capacity(head.len() + batch * 512);
        body.extend_from_slice(head.as_bytes());
        let mut n = 0;
        for item in items.by_ref().take(batch) {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(item.as_bytes());
            n += 1;
        }
        body.extend_from_slice(b"]}");
        let (client, first) = (client.clone(), sent + 1);
        sent += n;
        in_flight.spawn(async move {
            let (_, _, answer) = client
                .send_json_text(Method::POST, K::PATH, body)
                .await
                .with_context(|| format!("the bulk operation of items {first}–{} was refused as a whole", first + n - 1))?;
            let r: BulkEnrollmentOperationResult = serde_json::from_slice(&answer).context("the service's bulk answer does not parse")?;
            Ok((n, r))
        });
        while in_flight.len() >= parallel {
            if let Some(done) = in_flight.join_next().await {
                count::<K>(done, summary)?;
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        count::<K>(done, summary)?;
    }
    Ok(())
}

fn count<K: Kind>(
    done: Result<Result<(usize, BulkEnrollmentOperationResult)>, tokio::task::JoinError>,
    summary: &mut Summary,
) -> Result<()> {
    let (n, r) = done.context("a bulk request task failed")??;
    summary.imported += n.saturating_sub(r.errors.len());
    for e in &r.errors {
        summary.fail(Failure {
            id: K::error_id(e).map(str::to_owned),
            position: None,
            error_code: e.error_code,
            message: e.error_status.clone(),
        });
    }
    Ok(())
}

fn print_summary<K: Kind>(out: Output, s: &Summary) {
    match out {
        Output::Json => println!("{}", serde_json::to_string_pretty(s).unwrap_or_default()),
        Output::Table => {
            println!(
                "imported {} of {} {} in {:.2} s ({:.0}/s; bulk of {}, {} in flight); {} failed",
                s.imported,
                s.total,
                K::NOUN,
                s.seconds,
                s.per_second,
                s.batch,
                s.parallel,
                s.failed
            );
            for (code, n) in &s.failed_by_code {
                println!("  error {code}: {n}");
            }
            for f in &s.failures {
                let at = f.position.map(|p| format!(" (item {p})")).unwrap_or_default();
                println!("  {}{at}: {} ({})", f.id.as_deref().unwrap_or("?"), f.message, f.error_code);
            }
            if s.failed > s.failures.len() {
                println!("  … and {} more", s.failed - s.failures.len());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_array;

    #[test]
    fn arrays_split_at_top_level_commas_only() {
        let text = r#" [ {"a": "x,]}\"", "b": [1, 2]}, {"c": {"d": ","}} ,7 ] "#;
        assert_eq!(split_array(text).ok(), Some(vec![r#"{"a": "x,]}\"", "b": [1, 2]}"#, r#"{"c": {"d": ","}}"#, "7"]));
        assert_eq!(split_array("[]").ok(), Some(vec![]));
        assert!(split_array(r#"[{"a": 1}"#).is_err() && split_array(r#"[{"a": "1]"#).is_err());
    }
}
