//! One event's text to a `serde_json::Value`, the same value `serde_json::from_str` gives, with
//! the event's own map sized up front: a map grown from empty rehashes its keys two or three
//! times on the way to an event's ten or so fields.

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::Cell;
use std::fmt;

/// Room for the fields of a typical event.
const FIELDS: usize = 16;

/// Parses `text` as one JSON value (trailing characters are an error, as for `from_str`).
pub(super) fn event_value(text: &str) -> serde_json::Result<Value> {
    let marker = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = TopLevel { marker: &marker }
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value));
    if marker.get() {
        // serde_json's marker for a raw value as the first key: left to serde_json.
        return serde_json::from_str(text);
    }
    parsed
}

/// The outermost value; nested values are serde_json's own.
struct TopLevel<'a> {
    /// Set when the first key is serde_json's raw-value marker.
    marker: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// serde_json's `Value` visitor, but for the capacity of the outermost map.
impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else {
            return Ok(Value::Object(Map::new()));
        };
        if first == RAW_VALUE_TOKEN {
            self.marker.set(true);
            return Err(A::Error::custom("serde_json's raw value marker"));
        }
        let mut members = Map::with_capacity(FIELDS);
        members.insert(first, map.next_value()?);
        while let Some((key, value)) = map.next_entry()? {
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// The key serde_json's `Value` treats as a raw value (`serde_json::value::RawValue`).
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";
