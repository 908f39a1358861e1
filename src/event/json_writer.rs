//! Compact JSON written byte for byte as serde_json writes it: canonical (keys sorted, what every
//! event id hashes) or with keys as received (what records carry).

use serde_json::{Map, Value};

/// Writes `value` as canonical JSON (sorted keys, compact). Deterministic for a given value.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::Sorted, out);
}

pub(super) fn write_canonical_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    write_map(map, KeyOrder::Sorted, out);
}

/// Appends `value` as compact JSON with keys in their order: the same bytes as
/// `serde_json::to_writer`, written with [`write_json_str`].
pub fn write_json(value: &Value, out: &mut Vec<u8>) {
    write_value(value, KeyOrder::AsReceived, out);
}

/// [`write_json`] for an object.
pub fn write_json_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    write_map(map, KeyOrder::AsReceived, out);
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
        Value::Object(map) => write_map(map, order, out),
    }
}

fn write_map(map: &Map<String, Value>, order: KeyOrder, out: &mut Vec<u8>) {
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
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (i, (key, value)) in members.into_iter().enumerate() {
                member(i, key, value);
            }
        }
        // No copy of the members: this is the path every JSON and ECS record takes.
        KeyOrder::AsReceived => {
            for (i, (key, value)) in map.iter().enumerate() {
                member(i, key, value);
            }
        }
    }
    out.push(b'}');
}

pub(super) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

pub(super) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether any of the 8 bytes in `word` needs an escape, with word-wide arithmetic (the classic
/// "has a zero / has a byte below n" bit tricks; exact about whether any byte matches).
pub(super) fn any_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let control = below(word, 0x20);
    let quote = below(word ^ (ONES * u64::from(b'"')), 1);
    let backslash = below(word ^ (ONES * u64::from(b'\\')), 1);
    control | quote | backslash != 0
}

/// Appends `s` as a JSON string escaped exactly as serde_json escapes it (the same bytes, so
/// canonical JSON and ids do not change). serde_json looks at every byte; this skips runs that
/// need no escape 8 bytes at a time, which is most of a record.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            if !any_needs_escape(u64::from_le_bytes(word)) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        if needs_escape(b) {
            out.extend_from_slice(&bytes[start..i]);
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
        i += 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}
