//! One event's text to an [`AuditEvent`]: its top-level fields parsed straight into [`Fields`]
//! (nothing hashed; nested values are serde_json's own), giving the event
//! `AuditEvent::from_value(serde_json::from_str(text)?)` gives.

use super::Bad;
use crate::event::{AuditEvent, Fields};
use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Parses `text` as one event (trailing characters are a JSON error, as for `from_str`).
pub(super) fn event(text: &str) -> Result<AuditEvent, Bad> {
    match parse(text).map_err(Bad::Json)? {
        Parsed::Object(fields) => AuditEvent::from_fields(fields),
        Parsed::Other(value) => AuditEvent::from_value(value),
    }
    .map_err(Bad::Event)
}

/// `text` as the `Value` `serde_json::from_str` gives (what the tests compare).
#[cfg(test)]
pub(super) fn event_value(text: &str) -> serde_json::Result<Value> {
    Ok(match parse(text)? {
        Parsed::Object(fields) => Value::Object(fields.into()),
        Parsed::Other(value) => value,
    })
}

fn parse(text: &str) -> serde_json::Result<Parsed> {
    let marker = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = TopLevel { marker: &marker }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    if marker.get() {
        // serde_json's marker for a raw value as the first key: left to serde_json.
        return serde_json::from_str(text).map(Parsed::Other);
    }
    parsed
}

/// The outermost value: an object's fields, or any other value (not an event).
enum Parsed {
    Object(Fields),
    Other(Value),
}

/// The outermost value; nested values are serde_json's own.
struct TopLevel<'a> {
    /// Set when the first key is serde_json's raw-value marker.
    marker: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Parsed;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Parsed, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// serde_json's `Value` visitor, but for the outermost map.
impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::Number(v.into())))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::Number(v.into())))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Parsed, E> {
        Ok(Parsed::Other(
            Number::from_f64(v).map_or(Value::Null, Value::Number),
        ))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::String(v)))
    }

    fn visit_none<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::Null))
    }

    fn visit_unit<E>(self) -> Result<Parsed, E> {
        Ok(Parsed::Other(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Parsed::Other(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Parsed::Other(Value::Object(Map::new())));
        };
        if first == RAW_VALUE_TOKEN {
            self.marker.set(true);
            return Err(A::Error::custom("serde_json's raw value marker"));
        }
        let mut first = Some((first, map.next_value()?));
        let fields = Fields::from_pairs(|| match first.take() {
            Some(pair) => Ok(Some(pair)),
            None => map.next_entry(),
        })?;
        Ok(Parsed::Object(fields))
    }
}

/// The key serde_json's `Value` treats as a raw value (`serde_json::value::RawValue`).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
