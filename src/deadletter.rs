//! Dead-letter files: records a destination rejected for good, and events the API sent that could
//! not be parsed, go to NDJSON files in `state_dir/dead-letter/` with the reason. Nothing is ever
//! dropped silently. Secrets the writer was given are blanked from each entry: reasons quote
//! what a destination answered, and a destination may echo the credentials it was sent.

use crate::secret::Redactor;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Mutex;

/// Appends entries to one dead-letter file (created 0640 in a 0750 directory: they hold audit
/// records); each append is fsynced before it returns.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    path: Arc<PathBuf>,
    lock: Arc<Mutex<()>>,
    redactor: Redactor,
}

impl DeadLetter {
    /// A dead-letter file `state_dir/dead-letter/<name>.ndjson` (created on first write).
    pub fn in_state_dir(state_dir: &Path, name: &str) -> Self {
        DeadLetter::at(state_dir.join("dead-letter").join(format!("{name}.ndjson")))
    }

    pub fn at(path: PathBuf) -> Self {
        DeadLetter {
            path: Arc::new(path),
            lock: Arc::new(Mutex::new(())),
            redactor: Redactor::default(),
        }
    }

    /// The same file, with the secrets of `redactor` blanked from every entry as well.
    pub fn redacting(self, redactor: &Redactor) -> Self {
        DeadLetter {
            redactor: self.redactor.merge(redactor),
            ..self
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one entry `{time, reason, ...fields}`; `fields` is merged in (an object).
    pub async fn write(&self, time_ms: i64, reason: &str, fields: Value) -> std::io::Result<()> {
        let mut entry = json!({
            "time": chrono::DateTime::from_timestamp_millis(time_ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
            "reason": reason,
        });
        if let (Value::Object(e), Value::Object(f)) = (&mut entry, fields) {
            e.extend(f);
        }
        // A `Value` with string keys always serialises; an empty line would lose the entry.
        let text = serde_json::to_string(&entry).map_err(std::io::Error::other)?;
        // The whole line: JSON string escaping is one of the forms a redactor knows.
        let mut line = self.redactor.redact(&text).into_owned().into_bytes();
        line.push(b'\n');
        let _guard = self.lock.lock().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                crate::private::create_dir_all(dir)?;
            }
            let mut f = crate::private::append(&path)?;
            f.write_all(&line)?;
            f.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn appends_one_json_line_per_entry() {
        let dir = tempfile::tempdir().unwrap();
        let dl = DeadLetter::in_state_dir(dir.path(), "es");
        dl.write(0, "mapper_parsing_exception", json!({"x": 1}))
            .await
            .unwrap();
        dl.write(1, "second", json!({})).await.unwrap();
        let text = std::fs::read_to_string(dl.path()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["reason"], "mapper_parsing_exception");
        assert_eq!(lines[0]["x"], 1);
        assert_eq!(lines[0]["time"], "1970-01-01T00:00:00.000Z");
        use std::os::unix::fs::MetadataExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(
            mode(dl.path()),
            0o640,
            "audit records are not world-readable"
        );
        assert_eq!(mode(dl.path().parent().unwrap()), 0o750);
    }

    #[tokio::test]
    async fn entries_blank_the_secrets_they_were_given() {
        let dir = tempfile::tempdir().unwrap();
        let secret = crate::secret::Secret::new("hook-token-123");
        let dl = DeadLetter::in_state_dir(dir.path(), "hook").redacting(&Redactor::of([&secret]));
        dl.write(
            0,
            "400 Bad Request: you sent Authorization: Bearer hook-token-123",
            json!({"record": "{\"echo\":\"hook-token-123\"}"}),
        )
        .await
        .unwrap();
        let text = std::fs::read_to_string(dl.path()).unwrap();
        assert!(!text.contains("hook-token-123"), "{text}");
        let entry: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(
            entry["reason"],
            "400 Bad Request: you sent Authorization: Bearer [redacted]"
        );
        assert_eq!(entry["record"], "{\"echo\":\"[redacted]\"}");
    }
}
