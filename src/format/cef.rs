//! `format = "cef"`: one ArcSight Common Event Format line per event.
//!
//! `CEF:0|Codacy|Codacy|<agent version>|<action>|<name>|<severity>|<extensions>`
//! (ArcSight "Implementing ArcSight CEF" revision 25, the CEF specification). Rules, all from it:
//! - header fields escape `\` and `|`; CR and LF (a CRLF pair counts as one) become a space;
//! - extension values escape `\` first, then `=`; CR and LF become the two characters `\r` / `\n`
//!   each, so a CRLF round-trips exactly as `\r\n` (lossless, unlike Logstash's CRLF -> `\n`);
//!   pipes and spaces stay as they are;
//! - lengths (of header fields and of extension keys) are enforced on the value *before* escaping, in UTF-8
//!   bytes and cut at a character boundary, so an escape sequence is never split and the value a
//!   parser recovers is a prefix of the original. Bytes are at least characters, so this also
//!   meets a limit counted in characters;
//! - integer severity 0-10; timestamps as epoch milliseconds (`rt`, `end`);
//! - custom strings `cs1..cs6` with labels (`cs1Label`..`cs6Label`).
//!
//! Fields absent from (or empty in) the event are omitted, never invented.

use super::catalog::{self, Classification};
use super::FormatOptions;
use crate::event::{write_json, IdentifiedEvent};

/// Header maximum lengths (the CEF specification, as Vector.s CEF encoder applies them).
pub const MAX_VENDOR: usize = 63;
pub const MAX_PRODUCT: usize = 63;
pub const MAX_VERSION: usize = 31;
pub const MAX_EVENT_CLASS_ID: usize = 1023;
pub const MAX_NAME: usize = 512;

/// Extension maximum lengths (the CEF specification's extension dictionary; [U] rows could not be verified and are used as given).
pub const MAX_ACT: usize = 63;
pub const MAX_OUTCOME: usize = 63;
pub const MAX_REASON: usize = 1023;
pub const MAX_SUSER: usize = 1023;
pub const MAX_MSG: usize = 1023;
pub const MAX_CAT: usize = 1023;
pub const MAX_CUSTOM_STRING: usize = 4000;
pub const MAX_LABEL: usize = 1023;
pub const MAX_EXTERNAL_ID: usize = 40;
pub const MAX_DVCHOST: usize = 100;
pub const MAX_PROCESS_NAME: usize = 1023;

/// The prefix of `s` that fits in `max` bytes, cut at a UTF-8 character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Whether `bytes` holds any of the four `special` bytes, 8 bytes at a time (the "has a zero
/// byte" bit trick on the word xor each, exact about whether one matches). Most values hold none
/// and are then copied whole.
fn holds_any(bytes: &[u8], special: [u8; 4]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let mut words = bytes.chunks_exact(8);
    for chunk in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        if special
            .iter()
            .any(|&c| has_zero(word ^ (ONES * u64::from(c))))
        {
            return true;
        }
    }
    words.remainder().iter().any(|b| special.contains(b))
}

/// Appends a header field: truncated to `max` bytes, then `\` and `|` escaped and CR/LF replaced.
pub fn push_header(out: &mut Vec<u8>, value: &str, max: usize) {
    let bytes = truncate(value, max).as_bytes();
    if !holds_any(bytes, [b'\\', b'|', b'\r', b'\n']) {
        out.extend_from_slice(bytes);
        return;
    }
    // Bytes, not chars: every byte we touch is ASCII, and ASCII bytes never occur inside a
    // multi-byte UTF-8 sequence.
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (esc, skip): (&[u8], usize) = match bytes[i] {
            b'\\' => (b"\\\\", 1),
            b'|' => (b"\\|", 1),
            // CRLF is one line break: one space.
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => (b" ", 2),
            b'\r' | b'\n' => (b" ", 1),
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        i += skip;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends an extension value: truncated to `max` bytes, then `\` and `=` escaped and CR/LF encoded.
pub fn push_value(out: &mut Vec<u8>, value: &str, max: usize) {
    let value = truncate(value, max);
    // Work on bytes: every byte we escape is ASCII, so UTF-8 sequences pass through untouched.
    let bytes = value.as_bytes();
    if !holds_any(bytes, [b'\\', b'=', b'\n', b'\r']) {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'=' => b"\\=",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Writes ` key=value` pairs; keys are compile-time constants made of `[A-Za-z0-9]` (as CEF requires).
struct Extensions<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Extensions<'_> {
    fn key(&mut self, key: &str) {
        debug_assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
        if !self.first {
            self.out.push(b' ');
        }
        self.first = false;
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'=');
    }

    fn str(&mut self, key: &str, value: &str, max: usize) {
        self.key(key);
        push_value(self.out, value, max);
    }

    /// Omits the pair when the value is absent or empty (nothing to say, and an empty value is
    /// easy for parsers to misread).
    fn opt(&mut self, key: &str, value: Option<&str>, max: usize) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.str(key, v, max);
        }
    }

    fn int(&mut self, key: &str, value: i64) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
    }

    /// `csN` with its label.
    fn custom(&mut self, n: u8, label: &str, value: Option<&str>) {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            let (k, l) = CS_KEYS[usize::from(n - 1)];
            self.str(l, label, MAX_LABEL);
            self.str(k, v, MAX_CUSTOM_STRING);
        }
    }
}

const CS_KEYS: [(&str, &str); 6] = [
    ("cs1", "cs1Label"),
    ("cs2", "cs2Label"),
    ("cs3", "cs3Label"),
    ("cs4", "cs4Label"),
    ("cs5", "cs5Label"),
    ("cs6", "cs6Label"),
];

/// `succeed` -> `success`, `failed`/`rejected` -> `failure` (the CEF `outcome` key); anything else has no
/// outcome (its raw value still goes to `reason`).
pub fn outcome(result: Option<&str>) -> Option<&'static str> {
    match result? {
        "succeed" => Some("success"),
        "failed" | "rejected" => Some("failure"),
        _ => None,
    }
}

/// Appends the CEF record for `event` to `out` (one line, no trailing newline).
pub fn encode(event: &IdentifiedEvent, options: &FormatOptions, out: &mut Vec<u8>) {
    let ev = &event.event;
    let action = ev.action();
    let result = ev.result();
    let result = result.as_deref();
    let class: Classification = catalog::classify(action, result);

    out.extend_from_slice(b"CEF:0|");
    push_header(out, "Codacy", MAX_VENDOR);
    out.push(b'|');
    push_header(out, "Codacy", MAX_PRODUCT);
    out.push(b'|');
    push_header(out, super::AGENT_VERSION, MAX_VERSION);
    out.push(b'|');
    push_header(out, action, MAX_EVENT_CLASS_ID);
    out.push(b'|');
    push_header(out, &class.name, MAX_NAME);
    out.push(b'|');
    out.extend_from_slice(
        itoa::Buffer::new()
            .format(class.severity.min(10))
            .as_bytes(),
    );
    out.push(b'|');

    let mut x = Extensions { out, first: true };
    // rt and end both carry the Codacy timestamp, as epoch milliseconds.
    x.int("rt", ev.timestamp_ms);
    x.int("end", ev.timestamp_ms);
    x.str("act", action, MAX_ACT);
    x.opt("cat", Some(class.cef_category.as_ref()), MAX_CAT);
    x.opt("outcome", outcome(result), MAX_OUTCOME);
    x.opt("reason", result.filter(|r| *r != "succeed"), MAX_REASON);
    x.opt("suser", ev.actor_email().as_deref(), MAX_SUSER);
    // The custom string slots.
    x.custom(1, "repository", ev.repository().as_deref());
    x.custom(2, "actorRole", ev.actor_role().as_deref());
    x.custom(3, "entityId", ev.entity_id().as_deref());
    let details = ev.details().map(|d| match d {
        // A string is carried as is rather than as a quoted JSON string.
        serde_json::Value::String(s) => std::borrow::Cow::Borrowed(s.as_str()),
        // The same text as `to_string`, without serde's formatter machinery.
        other => {
            let mut text = Vec::with_capacity(128);
            write_json(other, &mut text);
            std::borrow::Cow::Owned(String::from_utf8_lossy(&text).into_owned())
        }
    });
    x.custom(4, "details", details.as_deref());
    x.custom(5, "source", ev.source().as_deref());
    x.custom(6, "organization", Some(&event.org.key()));
    // externalId = first 40 hex characters of the event id.
    x.str("externalId", event.id.as_str(), MAX_EXTERNAL_ID);
    x.opt("dvchost", Some(&options.hostname), MAX_DVCHOST);
    x.str("deviceProcessName", super::AGENT_NAME, MAX_PROCESS_NAME);
    x.opt("msg", ev.description().as_deref(), MAX_MSG);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &str, max: usize) -> String {
        let mut o = Vec::new();
        push_header(&mut o, v, max);
        String::from_utf8(o).unwrap()
    }

    fn value(v: &str, max: usize) -> String {
        let mut o = Vec::new();
        push_value(&mut o, v, max);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn header_escaping() {
        assert_eq!(header(r"a|b\c=d", 100), r"a\|b\\c=d");
        assert_eq!(header("a\r\nb\nc\rd", 100), "a b c d");
    }

    #[test]
    fn extension_escaping_backslash_first() {
        assert_eq!(value(r"set x=y", 100), r"set x\=y");
        assert_eq!(value(r"a\=b", 100), r"a\\\=b");
        assert_eq!(value("l1\r\nl2\nl3|p", 100), r"l1\r\nl2\nl3|p");
    }

    #[test]
    fn truncation_happens_before_escaping_and_respects_utf8() {
        // 3 characters of 2 bytes each; a limit of 5 keeps two.
        assert_eq!(truncate("ééé", 5), "éé");
        assert_eq!(truncate("abc", 3), "abc");
        // The cut lands right after a backslash: the escape is still whole.
        assert_eq!(value(r"ab\cd", 3), r"ab\\");
        assert_eq!(value("a=b", 2), r"a\=");
        assert_eq!(header(r"ab|cd", 3), r"ab\|");
        assert_eq!(header("€€", 4), "€");
    }

    proptest::proptest! {
        #[test]
        fn the_word_test_finds_a_special_byte_wherever_it_is(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
        ) {
            for special in [*b"\\|\r\n", *b"\\=\n\r"] {
                proptest::prop_assert_eq!(
                    holds_any(&bytes, special),
                    bytes.iter().any(|b| special.contains(b))
                );
            }
        }
    }

    #[test]
    fn outcome_mapping() {
        assert_eq!(outcome(Some("succeed")), Some("success"));
        assert_eq!(outcome(Some("failed")), Some("failure"));
        assert_eq!(outcome(Some("rejected")), Some("failure"));
        assert_eq!(outcome(Some("other")), None);
        assert_eq!(outcome(None), None);
    }
}
