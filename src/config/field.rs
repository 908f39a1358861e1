//! One configuration problem at one key: the error every part of the configuration returns, so
//! the file's error can name the key at fault without parsing message strings.

use std::fmt;

/// A problem with one key (or with a table as a whole when `key` is empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FieldError {
    /// Dotted path from the table the error was raised in (`url`, `sinks[2].format`); empty for
    /// a problem of the table as a whole.
    pub key: String,
    pub message: String,
}

impl FieldError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            key: key.into(),
            message: message.into(),
        }
    }

    /// A problem of the whole table (cross-field checks).
    pub fn whole(message: impl Into<String>) -> Self {
        FieldError::new("", message)
    }

    /// The same error seen from the enclosing table: `url` in `sinks[2]` becomes `sinks[2].url`.
    pub fn within(self, table: &str) -> Self {
        let key = if self.key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{}", self.key)
        };
        FieldError { key, ..self }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "key `{}`: {}", self.key, self.message)
        }
    }
}

/// Deserialises a table's keys into `T`, naming the key of the first problem (unknown keys are
/// refused by `T`'s `deny_unknown_fields`).
pub fn from_table<T: serde::de::DeserializeOwned>(
    table: serde_json::Value,
) -> Result<T, FieldError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." { String::new() } else { path };
        FieldError::new(key, e.inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_their_key_from_the_outermost_table() {
        let e = FieldError::new("url", "has no host").within("sinks[2]");
        assert_eq!(e.to_string(), "key `sinks[2].url`: has no host");
        let whole = FieldError::whole("set one of a or b").within("sinks[0]");
        assert_eq!(whole.to_string(), "key `sinks[0]`: set one of a or b");
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct T {
            port: u16,
        }
        let e = from_table::<T>(serde_json::json!({"port": "x"})).unwrap_err();
        assert_eq!(e.key, "port");
        let e = from_table::<T>(serde_json::json!({"port": 1, "prot": 2})).unwrap_err();
        assert!(e.message.contains("unknown field `prot`"), "{e}");
    }
}
