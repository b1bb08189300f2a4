//! The live log: a `tracing` layer that keeps the last entries and broadcasts new ones, so the console's
//! log page (and `GET /diagnostics/logs`) can show every step of a provisioning flow as it happens,
//! filtered by level, registration id, protocol or text. Span fields (`registration_id`, `operation_id`)
//! are carried onto the events inside the span.
//!
//! Bounded whatever peers send: a field value keeps at most [`FIELD_MAX_CHARS`] characters and a message
//! [`MESSAGE_MAX_CHARS`] (cut with a marker by `dps_proto::truncate_chars`, formatted through a writer that
//! stops there, so a huge value is never formatted whole), and the ring keeps at most [`KEPT`] entries *and*
//! [`KEPT_BYTES`] bytes, dropping the oldest first.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Most entries the ring keeps.
pub const KEPT: usize = 2000;
/// Most bytes (messages, targets, field names and values) the ring keeps.
pub const KEPT_BYTES: usize = 4 * 1024 * 1024;
/// Characters kept of one field value.
pub const FIELD_MAX_CHARS: usize = 512;
/// Characters kept of one message.
pub const MESSAGE_MAX_CHARS: usize = 2048;

/// One entry (the wire type the console reads); `seq` is given when the entry is kept.
pub type LogEntry = dps_proto::LogRecord;

/// What a reader asks for.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub min_level: Option<Level>,
    pub registration_id: Option<String>,
    pub protocol: Option<String>,
    pub text: Option<String>,
}

fn rank(level: &str) -> u8 {
    match level {
        "ERROR" => 5,
        "WARN" => 4,
        "INFO" => 3,
        "DEBUG" => 2,
        _ => 1,
    }
}

impl LogFilter {
    pub fn matches(&self, e: &LogEntry) -> bool {
        if let Some(l) = self.min_level {
            if rank(&e.level) < rank(l.as_str()) {
                return false;
            }
        }
        if let Some(r) = &self.registration_id {
            if !e.fields.get("registration_id").is_some_and(|v| v.eq_ignore_ascii_case(r)) {
                return false;
            }
        }
        if let Some(p) = &self.protocol {
            if !e.fields.get("protocol").is_some_and(|v| v.eq_ignore_ascii_case(p)) {
                return false;
            }
        }
        if let Some(t) = &self.text {
            let t = t.to_ascii_lowercase();
            let hay = format!("{} {} {:?}", e.message, e.target, e.fields).to_ascii_lowercase();
            if !hay.contains(&t) {
                return false;
            }
        }
        true
    }
}

/// The kept entries, their size in bytes and the last sequence number given.
#[derive(Default)]
struct Ring {
    entries: VecDeque<LogEntry>,
    bytes: usize,
    last: u64,
}

/// What an entry costs the ring (its strings; the fixed part is bounded by the entry count).
fn entry_bytes(e: &LogEntry) -> usize {
    let fields: usize = e.fields.iter().map(|(k, v)| k.len().saturating_add(v.len())).sum();
    [e.time.len(), e.level.len(), e.target.len(), e.message.len(), fields].iter().fold(0usize, |n, l| n.saturating_add(*l))
}

impl Ring {
    /// Appends `e`, dropping the oldest entries until both bounds hold.
    fn push(&mut self, e: LogEntry, max_entries: usize, max_bytes: usize) {
        self.bytes = self.bytes.saturating_add(entry_bytes(&e));
        self.entries.push_back(e);
        while self.entries.len() > max_entries || (self.bytes > max_bytes && self.entries.len() > 1) {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes = self.bytes.saturating_sub(entry_bytes(&old));
        }
    }
}

/// The process's live log.
pub struct LogHub {
    recent: Mutex<Ring>,
    tx: broadcast::Sender<LogEntry>,
}

impl LogHub {
    /// The one hub of this process (the `tracing` subscriber is process-wide too).
    pub fn global() -> &'static LogHub {
        static HUB: OnceLock<LogHub> = OnceLock::new();
        HUB.get_or_init(|| LogHub { recent: Mutex::new(Ring::default()), tx: broadcast::channel(1024).0 })
    }

    /// The layer to add to the subscriber (`dps serve`, the desktop shell).
    pub fn layer() -> LogLayer {
        LogLayer
    }

    fn push(&self, mut e: LogEntry) {
        {
            let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            r.last = r.last.saturating_add(1);
            e.seq = r.last;
            r.push(e.clone(), KEPT, KEPT_BYTES);
            // Sent under the lock so subscribers see entries in `seq` order.
            let _ = self.tx.send(e);
        }
    }

    /// The newest `limit` matching entries, oldest first.
    pub fn recent(&self, f: &LogFilter, limit: usize) -> Vec<LogEntry> {
        self.since(f, 0, limit)
    }

    /// The newest `limit` matching entries with `seq > after`, oldest first (a poller passes the last `seq`
    /// it saw).
    pub fn since(&self, f: &LogFilter, after: u64, limit: usize) -> Vec<LogEntry> {
        let g = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<LogEntry> =
            g.entries.iter().rev().take_while(|e| e.seq > after).filter(|e| f.matches(e)).take(limit).cloned().collect();
        out.reverse();
        out
    }

    pub fn subscribe(&self) -> broadcast::Receiver<LogEntry> {
        self.tx.subscribe()
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, String>);

/// A `fmt::Write` that keeps the first `max` characters and counts the bytes it drops.
struct Bounded {
    out: String,
    chars: usize,
    max: usize,
    dropped: usize,
}

impl Bounded {
    fn new(max: usize) -> Self {
        Self { out: String::new(), chars: 0, max, dropped: 0 }
    }
    fn finish(self) -> String {
        if self.dropped == 0 {
            self.out
        } else {
            format!("{}…[{} more bytes]", self.out, self.dropped)
        }
    }
}

impl std::fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for (i, c) in s.char_indices() {
            if self.chars >= self.max {
                self.dropped = self.dropped.saturating_add(s.len().saturating_sub(i));
                return Ok(());
            }
            self.out.push(c);
            self.chars = self.chars.saturating_add(1);
        }
        Ok(())
    }
}

fn max_chars(field: &Field) -> usize {
    if field.name() == "message" {
        MESSAGE_MAX_CHARS
    } else {
        FIELD_MAX_CHARS
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), dps_proto::truncate_chars(value, max_chars(field)).into_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut w = Bounded::new(max_chars(field));
        let _ = write!(w, "{value:?}");
        self.0.insert(field.name().to_owned(), w.finish().trim_matches('"').to_owned());
    }
}

pub struct LogLayer;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for LogLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(f);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(f) = ext.get_mut::<Fields>() {
                values.record(f);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(sf) = span.extensions().get::<Fields>() {
                    f.0.extend(sf.0.clone());
                }
            }
        }
        event.record(&mut f);
        let message = f.0.remove("message").unwrap_or_default();
        let m = event.metadata();
        #[allow(clippy::disallowed_methods)] // log timestamps are wall-clock by nature
        let now = chrono::Utc::now();
        LogHub::global().push(LogEntry {
            seq: 0,
            time: dps_proto::format_time(&now),
            level: m.level().as_str().to_owned(),
            target: m.target().to_owned(),
            message,
            fields: f.0,
        });
    }
}

/// The process's logging, as `dps serve` and the desktop shell set it up: the configured filter, stderr in the
/// configured format, and the live log.
pub fn init_logging(c: &crate::config::Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_new(&c.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter).with(LogHub::layer());
    let _ = match c.log_format {
        crate::config::LogFormat::Json => registry.with(tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr)).try_init(),
        crate::config::LogFormat::Text => registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn events_carry_their_span_fields_and_filters_select_them() {
        let subscriber = tracing_subscriber::registry().with(LogHub::layer());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("register", registration_id = "dev-42", protocol = "mqtt");
            let _g = span.enter();
            tracing::info!(hub = "hub-a", "registration finished");
            tracing::debug!("noise");
        });
        let hub = LogHub::global();
        let f = LogFilter { registration_id: Some("DEV-42".into()), min_level: Some(Level::INFO), ..Default::default() };
        let got = hub.recent(&f, 10);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].message, "registration finished");
        assert_eq!(got[0].fields.get("hub").map(String::as_str), Some("hub-a"));
        assert_eq!(got[0].fields.get("protocol").map(String::as_str), Some("mqtt"));
        assert!(hub.recent(&LogFilter { text: Some("HUB-A".into()), ..Default::default() }, 10).len() == 1);
        let first = got[0].seq;
        tracing::subscriber::with_default(tracing_subscriber::registry().with(LogHub::layer()), || {
            let span = tracing::info_span!("register", registration_id = "dev-42", protocol = "mqtt");
            let _g = span.enter();
            tracing::info!("assigned");
        });
        let newer = hub.since(&f, first, 10);
        assert_eq!(newer.len(), 1, "{newer:?}");
        assert_eq!(newer[0].message, "assigned");
        assert!(newer[0].seq > first);
        assert!(hub.since(&f, newer[0].seq, 10).is_empty());
        assert!(hub
            .recent(&LogFilter { protocol: Some("https".into()), registration_id: Some("dev-42".into()), ..Default::default() }, 10)
            .is_empty());
    }

    fn entry(message: String) -> LogEntry {
        LogEntry { seq: 0, time: String::new(), level: "INFO".into(), target: "t".into(), message, fields: BTreeMap::new() }
    }

    #[test]
    fn the_ring_is_bounded_by_bytes_as_well_as_by_entries() {
        let mut ring = Ring::default();
        for i in 0..100 {
            ring.push(entry(format!("{i:04}{}", "x".repeat(996))), 50, 10_000);
        }
        assert!(ring.bytes <= 10_000, "{} bytes kept", ring.bytes);
        assert_eq!(ring.entries.len(), 9, "1006 bytes each: nine fit in 10,000");
        assert_eq!(ring.entries.front().map(|e| &e.message[..4]), Some("0091"), "the oldest were dropped");
        for _ in 0..100 {
            ring.push(entry("small".into()), 50, 10_000);
        }
        assert_eq!(ring.entries.len(), 50, "the entry bound still holds");
        assert_eq!(ring.bytes, ring.entries.iter().map(entry_bytes).sum::<usize>(), "the byte count follows drops");
    }

    #[test]
    fn peer_strings_in_fields_and_messages_are_truncated() {
        let huge = "r".repeat(100_000);
        tracing::subscriber::with_default(tracing_subscriber::registry().with(LogHub::layer()), || {
            let span = tracing::info_span!("register", registration_id = %huge, marker = "truncation-test");
            let _g = span.enter();
            tracing::info!(topic = ?huge, "peer said {huge}");
        });
        let got = LogHub::global().recent(&LogFilter { text: Some("truncation-test".into()), ..Default::default() }, 10);
        let e = got.last().expect("the event was kept");
        for field in ["registration_id", "topic"] {
            let v = e.fields.get(field).map(String::as_str).unwrap_or_default();
            assert!(v.chars().count() < FIELD_MAX_CHARS + 32 && v.contains("more bytes]"), "{field}: {} chars", v.chars().count());
        }
        assert!(e.message.chars().count() < MESSAGE_MAX_CHARS + 32 && e.message.contains("more bytes]"), "{}", e.message.len());
    }
}
