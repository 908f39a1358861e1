//! Secrets are a type: they redact themselves in Debug and Display, so a token can never reach a
//! log line or an error message by accident.

use std::fmt;
use std::path::Path;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that must send it (a header, a SASL config).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads a secret from a file, dropping surrounding whitespace (editors add a final newline).
    /// The error names the file and never the content.
    pub fn from_file(path: &Path) -> Result<Secret, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let value = text.trim();
        if value.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        Ok(Secret(value.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_value() {
        let s = Secret::new("hunter2-token");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2-token");
    }

    #[test]
    fn file_errors_name_the_file_and_trim_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "abc\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "abc");
        std::fs::write(&p, "\n").unwrap();
        assert!(Secret::from_file(&p).unwrap_err().contains("is empty"));
        let missing = dir.path().join("nope");
        assert!(Secret::from_file(&missing).unwrap_err().contains("nope"));
    }
}
