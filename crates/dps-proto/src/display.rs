//! Peer-supplied text in messages, logs and traces: one helper cuts it to a bounded length, on a character
//! boundary, with a marker saying how much was left out. Every place that echoes what a device or client sent
//! (an id, a path, a token's resource, an answer of a webhook, an error text carrying either) goes through it,
//! so no peer can make a log line, a trace or an error body grow with its input.

use std::borrow::Cow;

/// How many characters of a peer-supplied string an error message, log field or trace keeps.
pub const DISPLAY_MAX_CHARS: usize = 256;

/// Longest request id accepted from a peer (MQTT `$rid`, AMQP correlation id, echoed HTTP request ids).
/// SDKs send small integers or UUIDs (36 characters).
pub const MAX_REQUEST_ID_CHARS: usize = 128;

/// Longest operation id accepted in a request; ours are 55 characters (`4.<16 hex>.<uuid>`).
pub const MAX_OPERATION_ID_CHARS: usize = 128;

/// `s` cut to [`DISPLAY_MAX_CHARS`] characters (see [`truncate_chars`]).
pub fn truncate_for_display(s: &str) -> Cow<'_, str> {
    truncate_chars(s, DISPLAY_MAX_CHARS)
}

/// `s` unchanged if it has at most `max` characters; else its first `max` characters followed by
/// `…[N more bytes]`. Never splits a character.
pub fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => {
            let (kept, rest) = s.split_at(cut);
            Cow::Owned(format!("{kept}…[{} more bytes]", rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_as_is() {
        assert!(matches!(truncate_for_display("dev-1"), Cow::Borrowed("dev-1")));
        let exact = "x".repeat(DISPLAY_MAX_CHARS);
        assert_eq!(truncate_for_display(&exact), exact.as_str());
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary_with_a_marker() {
        let long = "é".repeat(1000);
        let cut = truncate_for_display(&long);
        assert!(cut.starts_with(&"é".repeat(DISPLAY_MAX_CHARS)));
        assert!(cut.ends_with(&format!("…[{} more bytes]", (1000 - DISPLAY_MAX_CHARS) * 2)), "{cut}");
        assert!(cut.chars().count() < DISPLAY_MAX_CHARS + 32);
        assert_eq!(truncate_chars("ab", 0), "…[2 more bytes]");
    }
}
