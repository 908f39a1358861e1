//! Compact JSON written byte for byte as serde_json writes it: canonical (keys sorted, what every
//! event id hashes) or with keys as received (what records carry).

use serde_json::Value;

/// Writes `value` as canonical JSON (sorted keys, compact). Deterministic for a given value.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::Sorted, out);
}

/// [`write_canonical`] for an object: a serde_json `Map` or an event's [`super::Fields`].
pub(super) fn write_canonical_map<'a, M>(map: &'a M, out: &mut Vec<u8>)
where
    &'a M: IntoIterator<Item = (&'a String, &'a Value), IntoIter: ExactSizeIterator>,
{
    write_map(map.into_iter(), KeyOrder::Sorted, out);
}

/// Appends `value` as compact JSON with keys in their order: the same bytes as
/// `serde_json::to_writer`, written with [`write_json_str`].
pub fn write_json(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::AsReceived, out);
}

/// [`write_json`] for an object: a serde_json `Map` or an event's [`super::Fields`].
pub fn write_json_map<'a, M>(map: &'a M, out: &mut Vec<u8>)
where
    &'a M: IntoIterator<Item = (&'a String, &'a Value), IntoIter: ExactSizeIterator>,
{
    write_map(map.into_iter(), KeyOrder::AsReceived, out);
}

#[derive(Clone, Copy, PartialEq)]
enum KeyOrder {
    Sorted,
    AsReceived,
}

fn write_value(value: &Value, order: KeyOrder, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            // Serialising a number into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, n);
        }
        Value::String(s) => write_json_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, order, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(map.iter(), order, out),
    }
}

/// Objects up to this many members are sorted without an allocation.
const SORT_ON_STACK: usize = 16;

fn write_map<'a>(
    map: impl ExactSizeIterator<Item = (&'a String, &'a Value)>,
    order: KeyOrder,
    out: &mut Vec<u8>,
) {
    out.push(b'{');
    let mut member = |i: usize, key: &str, value: &Value| {
        if i > 0 {
            out.push(b',');
        }
        write_json_str(out, key);
        out.push(b':');
        write_value(value, order, out);
    };
    match order {
        KeyOrder::Sorted => {
            // An event's objects have a handful of members: sorted on the stack, not in a Vec.
            static NULL: Value = Value::Null;
            let mut small = [("", &NULL); SORT_ON_STACK];
            let mut large = Vec::new();
            let len = map.len();
            let members = if len <= SORT_ON_STACK {
                for (slot, (key, value)) in small.iter_mut().zip(map) {
                    *slot = (key.as_str(), value);
                }
                &mut small[..len]
            } else {
                large.extend(map.map(|(k, v)| (k.as_str(), v)));
                &mut large[..]
            };
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (key, value)) in members.iter().enumerate() {
                member(i, key, value);
            }
        }
        // No copy of the members: this is the path every JSON and ECS record takes.
        KeyOrder::AsReceived => {
            for (i, (key, value)) in map.enumerate() {
                member(i, key, value);
            }
        }
    }
    out.push(b'}');
}

/// What [`write_json_str`] escapes (the tests check the word-wide checks against it).
#[cfg(test)]
pub(super) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

pub(super) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The bytes of `word` that need an escape, as the high bit of each (the classic "has a zero /
/// has a byte below n" bit tricks). Exact about whether any byte matches, and about the lowest
/// one: a false mark can only follow a true one (a borrow runs upwards).
fn escape_marks(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    control | quote | backslash
}

/// Whether any of the 8 bytes in `word` needs an escape.
#[cfg(test)]
pub(super) fn any_needs_escape(word: u64) -> bool {
    escape_marks(word) != 0
}

/// Where the first byte that needs an escape is in `bytes[i..]`, looking 8 bytes at a time. The
/// last part shorter than 8 is looked at as the string's last 8 bytes when those were all found
/// clean here (a byte escaped before `i` could give false marks after it); when fewer than 8
/// bytes follow `i`, with [`short_first`].
pub(super) fn next_escape(bytes: &[u8], i: usize) -> Option<usize> {
    let marks_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        escape_marks(u64::from_le_bytes(word))
    };
    let first = |at: usize, marks: u64| at + (marks.trailing_zeros() / 8) as usize;
    let mut at = i;
    while at + 8 <= bytes.len() {
        let marks = marks_at(at);
        if marks != 0 {
            return Some(first(at, marks));
        }
        at += 8;
    }
    if at == bytes.len() {
        return None;
    }
    match bytes.len().checked_sub(8).filter(|&last| last >= i) {
        Some(last) => {
            let marks = marks_at(last);
            (marks != 0).then(|| first(last, marks))
        }
        // Fewer than 8 bytes from `i` (then `at == i`): most keys and many values.
        None => short_first(&bytes[at..]).map(|k| at + k),
    }
}

/// The first byte of `rest` (1 to 7 bytes) that needs an escape, with one word test: the word
/// holds the first and the last `half` bytes (overlapping), letters fill the rest. A mark in the
/// second half is real only when the first has none, and then every byte before it is in the
/// first half, which is clean.
fn short_first(rest: &[u8]) -> Option<usize> {
    const LETTERS: u64 = 0x6161_6161_6161_6161;
    let n = rest.len();
    let (word, half) = match n {
        4.. => {
            let (lo, hi) = (&rest[..4], &rest[n - 4..]);
            let lo = u32::from_le_bytes([lo[0], lo[1], lo[2], lo[3]]);
            let hi = u32::from_le_bytes([hi[0], hi[1], hi[2], hi[3]]);
            (u64::from(lo) | u64::from(hi) << 32, 4)
        }
        2.. => {
            let lo = u16::from_le_bytes([rest[0], rest[1]]);
            let hi = u16::from_le_bytes([rest[n - 2], rest[n - 1]]);
            (u64::from(lo) | u64::from(hi) << 16 | LETTERS << 32, 2)
        }
        1 => (u64::from(rest[0]) | LETTERS << 8, 1),
        0 => return None,
    };
    let marks = escape_marks(word);
    if marks == 0 {
        return None;
    }
    let k = (marks.trailing_zeros() / 8) as usize;
    Some(if k < half { k } else { n - half + (k - half) })
}

/// Appends `s` as a JSON string escaped exactly as serde_json escapes it (the same bytes, so
/// canonical JSON and ids do not change). serde_json looks at every byte; this jumps from one
/// byte that needs an escape to the next ([`next_escape`]), and most strings have none.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// [`write_json_str`] of the concatenation of `parts`, without building it (escapes are per
/// character, so escaping the parts one by one gives the same bytes).
pub fn write_json_str_parts(out: &mut Vec<u8>, parts: &[&str]) {
    out.push(b'"');
    for part in parts {
        write_escaped(out, part);
    }
    out.push(b'"');
}

/// The inside of a JSON string: `s` with what needs an escape escaped.
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    while let Some(i) = next_escape(bytes, start) {
        out.extend_from_slice(&bytes[start..i]);
        let b = bytes[i];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX_DIGITS[usize::from(b >> 4)],
                HEX_DIGITS[usize::from(b & 0xf)],
            ]),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}
