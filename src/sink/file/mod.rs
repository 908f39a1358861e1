//! `type = "file"`: append-only NDJSON that Filebeat, Splunk UF or `tail -F | jq` can follow.
//!
//! A batch is acknowledged only after it is written and fsynced. A failed write is rolled back
//! (truncated to the length before it), so a retry never leaves half a line. The file is reopened
//! when its path no longer names the open file (moved away by logrotate, deleted) and on SIGHUP.

pub mod config;

pub use self::config::{FileMode, FileSinkConfig, TYPE};

use self::config::directory_of;
use super::{Record, Sink, SinkContext, SinkError};
use crate::format::framing;
use async_trait::async_trait;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Open {
    file: File,
    dev: u64,
    ino: u64,
    len: u64,
}

#[derive(Debug)]
struct State {
    config: FileSinkConfig,
    open: Option<Open>,
}

pub struct FileSink {
    ctx: SinkContext,
    state: Arc<Mutex<State>>,
}

/// Why the directory of `path` cannot take our file, in words a user can act on.
fn directory_problem(path: &Path) -> Option<String> {
    let dir = directory_of(path);
    match std::fs::metadata(dir) {
        Err(_) => Some(format!(
            "directory {} does not exist; create it (and let the service user write to it) or change `path`",
            dir.display()
        )),
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => None,
    }
}

impl Open {
    /// Opens (creating with the configured mode) the file at `config.path` for appending.
    fn new(config: &FileSinkConfig) -> Result<Open, SinkError> {
        let path = &config.path;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(config.mode_bits())
            .open(path)
            .map_err(|e| {
                let hint = directory_problem(path).unwrap_or_else(|| match e.kind() {
                    std::io::ErrorKind::PermissionDenied => {
                        "the service user may not write there; fix ownership or permissions".into()
                    }
                    _ => "check the path".into(),
                });
                SinkError::transient(format!("cannot open {}: {e}; {hint}", path.display()))
            })?;
        let meta = file
            .metadata()
            .map_err(|e| SinkError::transient(format!("cannot stat {}: {e}", path.display())))?;
        if meta.len() == 0 {
            // umask may have narrowed the mode; a fresh file gets exactly what was asked.
            if let Err(e) =
                file.set_permissions(std::fs::Permissions::from_mode(config.mode_bits()))
            {
                tracing::warn!(path = %path.display(), error = %e,
                    "cannot set the configured mode on the new file; it keeps the umask's");
            }
        }
        Ok(Open {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            file,
        })
    }

    /// Whether `path` still names this file (not rotated away or replaced).
    fn is_at(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.dev() == self.dev && m.ino() == self.ino)
    }
}

impl State {
    fn open(&mut self) -> Result<&mut Open, SinkError> {
        let open = match self.open.take() {
            Some(open) if open.is_at(&self.config.path) => open,
            _ => Open::new(&self.config)?,
        };
        Ok(self.open.insert(open))
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        let path = self.config.path.clone();
        let keep = self.config.max_files.unwrap_or(5);
        let numbered = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        // Each rename replaces its target, so the oldest kept file goes without a removal.
        for n in (1..keep).rev() {
            let from = numbered(n);
            if from.exists() {
                std::fs::rename(&from, numbered(n + 1)).map_err(|e| {
                    SinkError::transient(format!("cannot rotate {}: {e}", from.display()))
                })?;
            }
        }
        std::fs::rename(&path, numbered(1))
            .map_err(|e| SinkError::transient(format!("cannot rotate {}: {e}", path.display())))?;
        self.open = None;
        tracing::info!(path = %path.display(), kept = keep, "rotated file sink");
        Ok(())
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), SinkError> {
        if let Some(max) = self.config.max_bytes {
            let len = self.open()?.len;
            if len > 0 && len + buf.len() as u64 > max {
                self.rotate()?;
            }
        }
        let path = self.config.path.clone();
        let header = self.config.header;
        let open = self.open()?;
        let before = open.len;
        // A new, emptied or just rotated file starts with the header, in the same rolled-back write.
        let mut head = Vec::new();
        if let Some(h) = header.filter(|_| before == 0) {
            framing::line(h.as_bytes(), &mut head);
        }
        let result = open
            .file
            .write_all(&head)
            .and_then(|_| open.file.write_all(buf))
            .and_then(|_| open.file.sync_data());
        match result {
            Ok(()) => {
                open.len = before + (head.len() + buf.len()) as u64;
                Ok(())
            }
            Err(e) => {
                // Roll back a partial append so the retry does not follow half a line.
                let rollback = match open.file.set_len(before) {
                    Ok(()) => String::new(),
                    Err(e) => format!(
                        "; rolling back failed too ({e}): the file may end with a partial line"
                    ),
                };
                self.open = None;
                Err(SinkError::transient(format!(
                    "cannot write {}: {e}{rollback}",
                    path.display()
                )))
            }
        }
    }
}

impl FileSink {
    /// Opens (creating if needed) the file. A missing directory is a start-up error.
    pub(crate) async fn open(
        config: FileSinkConfig,
        ctx: SinkContext,
    ) -> Result<FileSink, SinkError> {
        if let Some(problem) = directory_problem(&config.path) {
            return Err(SinkError::fatal(format!(
                "file sink {:?}: {}: {problem}",
                ctx.name,
                config.path.display()
            )));
        }
        let state = Arc::new(Mutex::new(State { config, open: None }));
        let startup = |m: String| SinkError::fatal(format!("file sink {:?}: {m}", ctx.name));
        on_state(&state, |st| st.open().map(|_| ()))
            .await
            .map_err(|e| startup(e.to_string()))?
            .map_err(|e| startup(e.message))?;
        Ok(FileSink { ctx, state })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        on_state(&self.state, f)
            .await
            .map_err(|e| SinkError::transient(format!("file sink {:?}: {e}", self.ctx.name)))?
    }
}

/// Runs `f` on the state on the blocking pool (file I/O blocks). Errs only if `f` panicked.
async fn on_state<T: Send + 'static>(
    state: &Arc<Mutex<State>>,
    f: impl FnOnce(&mut State) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        // Poisoning is recovered from: nothing here panics between changing the file and
        // recording the change.
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut st)
    })
    .await
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.payload.len() + 1).sum());
        for r in batch {
            framing::line(&r.payload, &mut buf);
        }
        self.blocking(move |st| st.write(&buf)).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let path = self.blocking(|st| st.open().map(|_| ())).await;
        path.map(|_| "file open for appending".to_string())
    }

    async fn reopen(&self) {
        // Fails only if the closure panicked; the next write opens the file anyway.
        let _ = self
            .blocking(|st| {
                st.open = None;
                Ok(())
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventId, OrgRef, Provider};

    fn ctx(dir: &Path) -> SinkContext {
        SinkContext::for_test(dir, "t")
    }

    fn rec(text: &str) -> Record {
        Record {
            event_id: EventId::compute(&OrgRef::new(Provider::Gh, "a"), text.as_bytes(), 0),
            org: Arc::new(OrgRef::new(Provider::Gh, "a")),
            timestamp_ms: 0,
            action: "a".into(),
            severity: 3,
            payload: text.as_bytes().into(),
        }
    }

    fn config(path: PathBuf) -> FileSinkConfig {
        FileSinkConfig {
            path,
            ..Default::default()
        }
    }

    /// A sink with the default settings on `dir/out.ndjson`.
    async fn opened(dir: &Path) -> (FileSink, PathBuf) {
        let path = dir.join("out.ndjson");
        let sink = FileSink::open(config(path.clone()), ctx(dir))
            .await
            .unwrap();
        (sink, path)
    }

    #[tokio::test]
    async fn a_header_starts_every_new_or_empty_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.csv");
        let mut cfg = config(path.clone());
        cfg.header = Some("a,b");
        cfg.max_bytes = Some(12);
        let sink = FileSink::open(cfg.clone(), ctx(dir.path())).await.unwrap();
        sink.deliver(&[rec("1,2")]).await.unwrap();
        sink.deliver(&[rec("3,4")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n1,2\n3,4\n");
        // Past max_bytes: the rotated file keeps its header, the new one gets its own.
        sink.deliver(&[rec("5,6")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n5,6\n");
        let mut rotated = path.clone().into_os_string();
        rotated.push(".1");
        assert_eq!(std::fs::read_to_string(rotated).unwrap(), "a,b\n1,2\n3,4\n");
        // A restart appending to a file that has rows writes no second header.
        drop(sink);
        cfg.max_bytes = None;
        let sink = FileSink::open(cfg, ctx(dir.path())).await.unwrap();
        sink.deliver(&[rec("7,8")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a,b\n5,6\n7,8\n");
    }

    #[tokio::test]
    async fn appends_lines_with_the_configured_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = opened(dir.path()).await;
        sink.deliver(&[rec("{\"a\":1}"), rec("{\"b\":2}")])
            .await
            .unwrap();
        sink.deliver(&[rec("{\"c\":3}")]).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }

    #[tokio::test]
    async fn missing_directory_is_a_clear_startup_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = FileSink::open(config(dir.path().join("nope/out.ndjson")), ctx(dir.path()))
            .await
            .err()
            .unwrap();
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[tokio::test]
    async fn reopens_when_the_file_is_moved_away() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = opened(dir.path()).await;
        sink.deliver(&[rec("1")]).await.unwrap();
        std::fs::rename(&path, dir.path().join("out.ndjson.old")).unwrap();
        sink.deliver(&[rec("2")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2\n");
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_written_fails_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (sink, path) = opened(dir.path()).await;
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(sink.deliver(&[rec("1")]).await.is_err());
        std::fs::remove_dir(&path).unwrap();
        sink.deliver(&[rec("1")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "1\n");
    }

    #[tokio::test]
    async fn rotates_by_size_keeping_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let mut c = config(path.clone());
        c.max_bytes = Some(10);
        c.max_files = Some(2);
        let sink = FileSink::open(c, ctx(dir.path())).await.unwrap();
        for i in 0..5 {
            sink.deliver(&[rec(&format!("line-{i}"))]).await.unwrap();
        }
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line-4\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.ndjson.1")).unwrap(),
            "line-3\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("out.ndjson.2")).unwrap(),
            "line-2\n"
        );
        assert!(!dir.path().join("out.ndjson.3").exists());
    }
}
