//! Secrets are a type: they redact themselves in Debug and Display, so a token can never reach a
//! log line or an error message by accident.
//!
//! A server can still hand a secret back: a proxy or API that echoes request headers in its error
//! body puts our token into the text we quote. [`Redactor`] knows every secret value the agent
//! loaded (and the forms in which it travels) and blanks them out of whatever the agent writes.

use crate::config::FieldError;
use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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

/// Where one secret is read from. Every secret the agent loads (the API token, HTTP credentials,
/// the HEC token, the SASL password) is read through this type, so each is trimmed, checked for
/// emptiness and reported the same way, and errors name the key that chose the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `<x>_file = "/path"`: the file's content, trimmed.
    File { key: String, path: PathBuf },
    /// `<x>_env = "VAR"`: an environment variable of the agent's process.
    Env { key: String, var: String },
    /// A systemd credential (`LoadCredential=`): `$CREDENTIALS_DIRECTORY/<name>`.
    Credential { directory: PathBuf, name: String },
}

impl SecretSource {
    /// The source chosen by a `<x>_file` / `<x>_env` pair of keys; at most one may be set.
    pub fn from_keys(
        file: Option<&Path>,
        env: Option<&str>,
        file_key: &str,
        env_key: &str,
    ) -> Result<Option<SecretSource>, FieldError> {
        match (file, env) {
            (Some(_), Some(_)) => Err(FieldError::new(
                env_key,
                format!("set `{file_key}` or `{env_key}`, not both"),
            )),
            (Some(path), None) => Ok(Some(SecretSource::File {
                key: file_key.to_string(),
                path: path.to_path_buf(),
            })),
            (None, Some(var)) => Ok(Some(SecretSource::Env {
                key: env_key.to_string(),
                var: var.to_string(),
            })),
            (None, None) => Ok(None),
        }
    }

    /// Reads the secret now. Errors name the key (or the credential) and never the content.
    pub fn read(&self) -> Result<Secret, FieldError> {
        match self {
            SecretSource::File { key, path } => {
                Secret::from_file(path).map_err(|m| FieldError::new(key.as_str(), m))
            }
            SecretSource::Env { key, var } => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Ok(Secret::new(v.trim())),
                Ok(_) => Err(FieldError::new(
                    key.as_str(),
                    format!("environment variable {var} is empty"),
                )),
                Err(_) => Err(FieldError::new(
                    key.as_str(),
                    format!("environment variable {var} is not set"),
                )),
            },
            SecretSource::Credential { directory, name } => {
                Secret::from_file(&directory.join(name)).map_err(FieldError::whole)
            }
        }
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

/// What replaces a secret in anything the agent writes.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not blanked: a two-letter password would turn every log line
/// into confetti, and such a credential protects nothing anyway.
pub const MIN_REDACTED_CHARS: usize = 4;

/// Blanks known secret values out of text. Built from the secrets a component sends (the Codacy
/// client its token, an HTTP sink its credentials) or from the whole configuration
/// ([`crate::config::Config::redactor`]) for the places the agent writes to: logs, `/health`,
/// `status.json`, dead letters, `check` and `once` output. Cheap to clone.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Longest first, so that a secret containing another one is blanked whole.
    needles: Arc<[String]>,
}

impl Redactor {
    /// A redactor for `secrets`, each also in its JSON-escaped form (how it looks when a server
    /// echoes it inside a JSON string, and in JSON log lines).
    pub fn of<'a>(secrets: impl IntoIterator<Item = &'a Secret>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for s in secrets {
            let value = s.expose();
            if value.chars().count() < MIN_REDACTED_CHARS {
                continue;
            }
            needles.push(value.to_string());
            let quoted = serde_json::to_string(value).unwrap_or_default();
            let escaped = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .unwrap_or_default();
            if escaped != value && !escaped.is_empty() {
                needles.push(escaped.to_string());
            }
        }
        Redactor::from_needles(needles)
    }

    fn from_needles(mut needles: Vec<String>) -> Self {
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Redactor {
            needles: needles.into(),
        }
    }

    /// Both sets of secrets.
    pub fn merge(&self, other: &Redactor) -> Redactor {
        Redactor::from_needles(
            self.needles
                .iter()
                .chain(other.needles.iter())
                .cloned()
                .collect(),
        )
    }

    /// Length in bytes of the longest form blanked (0 when none).
    pub fn longest(&self) -> usize {
        self.needles.first().map_or(0, String::len)
    }

    /// `text` with every known secret replaced by [`REDACTED`].
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for n in self.needles.iter() {
            if out.contains(n.as_str()) {
                out = Cow::Owned(out.replace(n.as_str(), REDACTED));
            }
        }
        out
    }

    /// [`Redactor::redact`] for bytes that should be UTF-8 (log lines); invalid sequences are
    /// replaced, as a terminal or the journal would show them anyway.
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        if self.needles.is_empty() {
            return Cow::Borrowed(bytes);
        }
        match String::from_utf8_lossy(bytes) {
            Cow::Borrowed(text) => match self.redact(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            },
            Cow::Owned(text) => Cow::Owned(self.redact(&text).into_owned().into_bytes()),
        }
    }
}

/// One [`Redactor`] shared by the daemon's outputs (log lines, `/health`, `status.json`) that
/// grows with each configuration loaded: logging starts before the configuration is read, and
/// a reload may bring new secrets. Secrets known before stay blanked (lines about the previous
/// configuration may still be written).
#[derive(Debug, Clone, Default)]
pub struct SharedRedactor(Arc<RwLock<Redactor>>);

impl SharedRedactor {
    pub fn add(&self, redactor: &Redactor) {
        let mut current = self.0.write().unwrap_or_else(|e| e.into_inner());
        *current = current.merge(redactor);
    }

    /// The secrets known now.
    pub fn current(&self) -> Redactor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} forms)", self.needles.len())
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

    #[test]
    fn redactor_blanks_every_secret_and_its_json_form_longest_first() {
        let token = Secret::new("tok-123456");
        let longer = Secret::new("tok-123456-and-more");
        let quoted = Secret::new(r#"pa"ss\word"#);
        let r = Redactor::of([&token, &longer, &quoted, &Secret::new("abc")]);
        let text = format!(
            "api-token: tok-123456; x: tok-123456-and-more; json: {}; raw: {}; short: abc",
            serde_json::to_string(quoted.expose()).unwrap(),
            quoted.expose()
        );
        let out = r.redact(&text);
        assert_eq!(
            out,
            "api-token: [redacted]; x: [redacted]; json: \"[redacted]\"; raw: [redacted]; short: abc"
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
        assert_eq!(r.longest(), "tok-123456-and-more".len());
        assert!(!format!("{r:?}").contains("tok"));
        let merged = Redactor::of([&Secret::new("other-secret")]).merge(&r);
        assert_eq!(
            merged.redact("other-secret tok-123456"),
            "[redacted] [redacted]"
        );
        assert_eq!(
            r.redact_bytes(b"a tok-123456 \xff").as_ref(),
            "a [redacted] \u{fffd}".as_bytes()
        );
        assert!(Redactor::default().redact("tok-123456") == "tok-123456");
    }
}
