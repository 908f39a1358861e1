//! An event's top-level fields in the order received: a list, not a hash map. An event has about
//! ten fields; finding one by comparing names is cheaper than hashing it, and parsing an event
//! hashes nothing (serde_json's order-preserving map hashes every key it inserts, with SipHash).

use serde_json::{Map, Value};
use std::fmt;

/// Above this many fields, a repeated name is looked for with a hash map (a list scan per field
/// would be quadratic in an object of thousands of fields).
const SCAN_LIMIT: usize = 64;

/// The fields of one event, in the order received. A repeated name keeps its first place and
/// takes the last value, as serde_json's order-preserving map does.
#[derive(Clone, Default)]
pub struct Fields(Vec<(String, Value)>);

impl Fields {
    pub fn with_capacity(capacity: usize) -> Self {
        Fields(Vec::with_capacity(capacity))
    }

    /// The value of field `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find_map(|(k, v)| (k.as_str() == name).then_some(v))
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields in the order received.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    /// Adds field `name`; when it is there already, its value is replaced in place and the old
    /// one returned.
    pub fn insert(&mut self, name: String, value: Value) -> Option<Value> {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some((_, old)) => Some(std::mem::replace(old, value)),
            None => {
                self.0.push((name, value));
                None
            }
        }
    }

    /// Builds the fields from `(name, value)` pairs in order, repeated names as in [`Fields::insert`].
    pub fn from_pairs<E>(
        mut next: impl FnMut() -> Result<Option<(String, Value)>, E>,
    ) -> Result<Fields, E> {
        let mut fields = Fields::with_capacity(16);
        while let Some((name, value)) = next()? {
            fields.insert(name, value);
            if fields.len() > SCAN_LIMIT {
                let mut map = Map::from(fields);
                while let Some((name, value)) = next()? {
                    map.insert(name, value);
                }
                return Ok(Fields::from(map));
            }
        }
        Ok(fields)
    }
}

impl From<Map<String, Value>> for Fields {
    fn from(map: Map<String, Value>) -> Self {
        Fields(map.into_iter().collect())
    }
}

impl From<Fields> for Map<String, Value> {
    fn from(fields: Fields) -> Self {
        fields.0.into_iter().collect()
    }
}

/// Equal when they hold the same fields, in any order (as serde_json's maps compare).
impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

/// As a map, as serde_json's maps print.
impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `fields["name"]`: the value, or null when absent (as `Value` indexes).
impl std::ops::Index<&str> for Fields {
    type Output = Value;
    fn index(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.get(name).unwrap_or(&NULL)
    }
}

/// The fields in the order received, as `(&name, &value)`.
pub struct Iter<'a>(std::slice::Iter<'a, (String, Value)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a String, &'a Value);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Fields {
    type Item = (&'a String, &'a Value);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}
