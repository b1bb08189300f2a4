//! The Logs page's buffer and filters. The page polls `GET /diagnostics/logs?after=<last seq>` and keeps the last
//! entries here; the level, registration id and text filters apply on this side, so changing them never loses
//! history. Download writes the shown entries as plain text, one line each.

use dps_proto::LogRecord;

/// The levels, most severe first (what the level select offers).
pub const LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// How severe a level is: ERROR 4, WARN 3, INFO 2, DEBUG 1, TRACE 0 (an unknown level counts as INFO).
pub fn level_rank(level: &str) -> u8 {
    match level.trim().to_ascii_uppercase().as_str() {
        "ERROR" => 4,
        "WARN" | "WARNING" => 3,
        "DEBUG" => 1,
        "TRACE" => 0,
        _ => 2,
    }
}

/// What the page shows of the buffer. Empty members do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// The least severe level shown (`INFO` shows INFO, WARN and ERROR).
    pub min_level: String,
    /// Part of the `registrationId` field, any case.
    pub registration_id: String,
    /// Part of the message, target, or a field's name or value, any case.
    pub text: String,
}

impl LogFilter {
    pub fn matches(&self, r: &LogRecord) -> bool {
        if !self.min_level.is_empty() && level_rank(&r.level) < level_rank(&self.min_level) {
            return false;
        }
        let reg = self.registration_id.trim().to_lowercase();
        if !reg.is_empty() && !r.fields.get("registrationId").is_some_and(|v| v.to_lowercase().contains(&reg)) {
            return false;
        }
        let text = self.text.trim().to_lowercase();
        text.is_empty()
            || r.message.to_lowercase().contains(&text)
            || r.target.to_lowercase().contains(&text)
            || r.fields.iter().any(|(k, v)| k.to_lowercase().contains(&text) || v.to_lowercase().contains(&text))
    }

    /// The matching records, in order.
    pub fn apply<'a>(&self, records: &'a [LogRecord]) -> Vec<&'a LogRecord> {
        records.iter().filter(|r| self.matches(r)).collect()
    }
}

/// Appends the entries newer than the buffer's last one and drops the oldest beyond `cap`. Returns the sequence
/// number to ask `after` next time (the last kept entry's, or `after` itself when nothing arrived).
pub fn append(buffer: &mut Vec<LogRecord>, new: Vec<LogRecord>, cap: usize, after: u64) -> u64 {
    let mut last = buffer.last().map(|r| r.seq).unwrap_or(after).max(after);
    for r in new {
        if r.seq > last {
            last = r.seq;
            buffer.push(r);
        }
    }
    if buffer.len() > cap {
        let excess = buffer.len() - cap;
        buffer.drain(..excess);
    }
    last
}

/// One entry as a line: `<time> <LEVEL> <target>: <message> key=value …`.
pub fn line(r: &LogRecord) -> String {
    let mut s = format!("{} {:<5} {}: {}", r.time, r.level, r.target, r.message);
    for (k, v) in &r.fields {
        if v.contains(char::is_whitespace) || v.is_empty() {
            s.push_str(&format!(" {k}={v:?}"));
        } else {
            s.push_str(&format!(" {k}={v}"));
        }
    }
    s
}

/// The entries as a `.log` file's text, one line each.
pub fn to_text<'a>(records: impl IntoIterator<Item = &'a LogRecord>) -> String {
    records.into_iter().map(|r| line(r) + "\n").collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rec(seq: u64, level: &str, message: &str, reg: Option<&str>) -> LogRecord {
        let mut fields = BTreeMap::new();
        if let Some(r) = reg {
            fields.insert("registrationId".to_string(), r.to_string());
        }
        fields.insert("protocol".to_string(), "mqtt".to_string());
        LogRecord {
            seq,
            time: "2026-01-01T12:00:00.000Z".into(),
            level: level.into(),
            target: "dps_service::device".into(),
            message: message.into(),
            fields,
        }
    }

    #[test]
    fn levels_rank_by_severity() {
        assert!(level_rank("ERROR") > level_rank("WARN"));
        assert!(level_rank("warn") > level_rank("INFO"));
        assert!(level_rank("INFO") > level_rank("DEBUG"));
        assert!(level_rank("DEBUG") > level_rank("TRACE"));
        assert_eq!(level_rank("whatever"), level_rank("INFO"));
    }

    #[test]
    fn filters_by_level_registration_and_text() {
        let records = vec![
            rec(1, "DEBUG", "tls accepted", None),
            rec(2, "INFO", "device assigned", Some("Dev-1")),
            rec(3, "ERROR", "hub failed", Some("dev-2")),
        ];
        let f = |min_level: &str, reg: &str, text: &str| LogFilter {
            min_level: min_level.into(),
            registration_id: reg.into(),
            text: text.into(),
        };
        let seqs = |f: LogFilter| f.apply(&records).iter().map(|r| r.seq).collect::<Vec<_>>();
        assert_eq!(seqs(f("", "", "")), vec![1, 2, 3]);
        assert_eq!(seqs(f("INFO", "", "")), vec![2, 3]);
        assert_eq!(seqs(f("ERROR", "", "")), vec![3]);
        assert_eq!(seqs(f("", "dev-1", "")), vec![2]);
        assert_eq!(seqs(f("", "DEV", "")), vec![2, 3]);
        assert_eq!(seqs(f("", "", "ASSIGNED")), vec![2]);
        assert_eq!(seqs(f("", "", "mqtt")), vec![1, 2, 3]);
        assert_eq!(seqs(f("", "", "service::dev")), vec![1, 2, 3]);
        assert_eq!(seqs(f("INFO", "dev", "hub")), vec![3]);
    }

    #[test]
    fn append_skips_seen_entries_and_keeps_the_last() {
        let mut buffer = Vec::new();
        assert_eq!(append(&mut buffer, vec![rec(1, "INFO", "a", None), rec(2, "INFO", "b", None)], 3, 0), 2);
        // a repeated entry is not added twice
        assert_eq!(append(&mut buffer, vec![rec(2, "INFO", "b", None), rec(3, "INFO", "c", None), rec(4, "INFO", "d", None)], 3, 2), 4);
        assert_eq!(buffer.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(append(&mut buffer, vec![], 3, 4), 4);
        let mut empty = Vec::new();
        assert_eq!(append(&mut empty, vec![], 3, 7), 7);
    }

    #[test]
    fn lines_for_download() {
        let r = rec(1, "INFO", "device assigned", Some("dev 1"));
        assert_eq!(line(&r), "2026-01-01T12:00:00.000Z INFO  dps_service::device: device assigned protocol=mqtt registrationId=\"dev 1\"");
        assert_eq!(to_text([&r, &r]).lines().count(), 2);
    }
}
