//! `type = "file"`: append-only NDJSON that Filebeat, Splunk UF or `tail -F | jq` can follow.
//!
//! A batch is acknowledged only after it is written and fsynced. A failed write is rolled back
//! (truncated to the length before it), so a retry never leaves half a line. The file is reopened
//! when its path no longer names the open file (moved away by logrotate, deleted) and on SIGHUP.

use super::registry::{Preflight, SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use super::{Record, Sink, SinkContext, SinkError};
use crate::config::{from_table, FieldError};
use crate::format::Format;
use async_trait::async_trait;
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    pub path: PathBuf,
    /// Permissions of a newly created file: an octal string ("0640") or a TOML octal (0o640).
    #[serde(default)]
    pub mode: Option<FileMode>,
    /// Rotate when the file would grow past this many bytes (off when unset).
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Rotated files kept (`audit.ndjson.1` .. `.N`); default 5.
    #[serde(default)]
    pub max_files: Option<u32>,
    /// A line that starts every new or empty file (CSV's column names): set from the sink's
    /// format, not a key of its own.
    #[serde(skip)]
    pub header: Option<&'static str>,
}

/// Permission bits, from an octal string (`"0640"`) or a TOML octal integer (`0o640`). Parsed
/// by hand: an untagged enum could only say that nothing matched, not what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMode(u32);

impl FileMode {
    fn checked<E: serde::de::Error>(bits: u64, shown: &str) -> Result<FileMode, E> {
        match u32::try_from(bits) {
            Ok(b) if b <= 0o777 => Ok(FileMode(b)),
            _ => Err(E::custom(format!(
                "{shown} is not a permission: at most 0777 (write the octal digits as a string, \"0640\", or as 0o640)"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<FileMode, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an octal permission such as \"0640\" or 0o640")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FileMode, E> {
                FileMode::checked(n, &format!("{n:#o}"))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FileMode, E> {
                let bits = u64::try_from(n).map_err(|_| {
                    E::custom(format!("{n} is not a permission; write e.g. \"0640\""))
                })?;
                self.visit_u64(bits)
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<FileMode, E> {
                let digits = s.strip_prefix("0o").unwrap_or(s);
                let bits = u64::from_str_radix(digits, 8).map_err(|_| {
                    E::custom(format!(
                        "{s:?} is not an octal permission such as \"0640\" (digits 0 to 7)"
                    ))
                })?;
                FileMode::checked(bits, &format!("{s:?}"))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl FileSinkConfig {
    pub const DEFAULT_MODE: u32 = 0o640;

    pub fn mode_bits(&self) -> u32 {
        self.mode.map_or(Self::DEFAULT_MODE, |FileMode(bits)| bits)
    }
}

pub const TYPE: SinkType = SinkType {
    name: "file",
    carries_host: false,
    parse: |table, common| {
        let mut config: FileSinkConfig = from_table(table.into())?;
        // CSV is for auditors opening a file in a spreadsheet; the file starts with its header.
        config.header = common.format.header();
        Ok(Box::new(config))
    },
};

#[async_trait]
impl SinkConfig for FileSinkConfig {
    fn formats(&self) -> &'static [Format] {
        &[Format::Json, Format::Ecs, Format::Cef, Format::Csv]
    }

    fn default_batch(&self) -> usize {
        STREAM_BATCH
    }

    fn validate(&self, _common: &mut SinkCommon) -> Result<(), FieldError> {
        if self.path.as_os_str().is_empty() {
            return Err(FieldError::new("path", "must not be empty"));
        }
        if self.max_bytes == Some(0) {
            return Err(FieldError::new(
                "max_bytes",
                "must be positive (leave it out to never rotate)",
            ));
        }
        if self.max_files == Some(0) {
            return Err(FieldError::new("max_files", "must be at least 1"));
        }
        Ok(())
    }

    /// Never opened by `check`: opening creates the file.
    fn preflight(&self, _offline: bool) -> Option<Preflight> {
        Some(match probe(self) {
            Ok(Probe::Appends { bytes }) => Preflight::Ready(format!(
                "{} open for appending ({bytes} bytes)",
                self.path.display()
            )),
            Ok(Probe::WillCreate) => Preflight::Ready(format!(
                "{} does not exist yet; created (mode {:04o}) at the first delivery",
                self.path.display(),
                self.mode_bits()
            )),
            Ok(Probe::NoDirectory(dir)) => Preflight::MissingDirectory(dir),
            Err(e) => Preflight::Failed(e),
        })
    }

    async fn build(&self, ctx: SinkContext) -> Result<Arc<dyn Sink>, SinkError> {
        Ok(Arc::new(FileSink::open(self.clone(), ctx).await?))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

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
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Err(_) => Some(format!(
            "directory {} does not exist; create it (and let the service user write to it) or change `path`",
            dir.display()
        )),
        Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", dir.display())),
        Ok(_) => None,
    }
}

impl State {
    fn open(&mut self) -> Result<&mut Open, SinkError> {
        let path = self.config.path.clone();
        // Reopen when the path no longer names the file we hold (rotated away or replaced).
        if let Some(o) = &self.open {
            match std::fs::metadata(&path) {
                Ok(m) if m.dev() == o.dev && m.ino() == o.ino => {}
                _ => self.open = None,
            }
        }
        if self.open.is_none() {
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(self.config.mode_bits())
                .open(&path)
                .map_err(|e| {
                    let hint = directory_problem(&path).unwrap_or_else(|| match e.kind() {
                        std::io::ErrorKind::PermissionDenied => {
                            "the service user may not write there; fix ownership or permissions"
                                .into()
                        }
                        _ => "check the path".into(),
                    });
                    SinkError::transient(format!("cannot open {}: {e}; {hint}", path.display()))
                })?;
            let meta = file.metadata().map_err(|e| {
                SinkError::transient(format!("cannot stat {}: {e}", path.display()))
            })?;
            if meta.len() == 0 {
                // umask may have narrowed the mode; a fresh file gets exactly what was asked.
                let _ =
                    file.set_permissions(std::fs::Permissions::from_mode(self.config.mode_bits()));
            }
            self.open = Some(Open {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                file,
            });
        }
        self.open
            .as_mut()
            .ok_or_else(|| SinkError::transient("file not open"))
    }

    fn rotate(&mut self) -> Result<(), SinkError> {
        let path = self.config.path.clone();
        let keep = self.config.max_files.unwrap_or(5);
        let numbered = |n: u32| {
            let mut p = path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let _ = std::fs::remove_file(numbered(keep));
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
        let header = header.filter(|_| before == 0).map(|h| format!("{h}\n"));
        let header = header.as_deref().unwrap_or("").as_bytes();
        let result = open
            .file
            .write_all(header)
            .and_then(|_| open.file.write_all(buf))
            .and_then(|_| open.file.sync_data());
        match result {
            Ok(()) => {
                open.len = before + (header.len() + buf.len()) as u64;
                Ok(())
            }
            Err(e) => {
                // Roll back a partial append so the retry does not follow half a line.
                let _ = open.file.set_len(before);
                self.open = None;
                Err(SinkError::transient(format!(
                    "cannot write {}: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// What `check` finds at a file sink's path, without creating or changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The file exists and opens for appending.
    Appends { bytes: u64 },
    /// The file does not exist yet; its directory takes new files.
    WillCreate,
    /// The directory does not exist (systemd may create it: the caller decides).
    NoDirectory(PathBuf),
}

/// Probes `config.path` the way delivery will use it: an existing file is opened for appending
/// (which changes neither its content nor its times); a missing one needs a writable directory.
pub fn probe(config: &FileSinkConfig) -> Result<Probe, String> {
    let path = &config.path;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("{} is a directory, not a file; fix `path`", path.display())),
        Ok(m) => OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| Probe::Appends { bytes: m.len() })
            .map_err(|e| {
                format!(
                    "cannot open {} for appending: {e}; the user running the agent must be able to write it (fix ownership or permissions)",
                    path.display()
                )
            }),
        Err(_) => match std::fs::metadata(dir) {
            Err(_) => Ok(Probe::NoDirectory(dir.to_path_buf())),
            Ok(m) if !m.is_dir() => Err(format!("{} is not a directory", dir.display())),
            Ok(_) => rustix::fs::access(dir, rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK)
                .map(|_| Probe::WillCreate)
                .map_err(|e| {
                    format!(
                        "cannot create {} in {}: {e}; let the user running the agent write to the directory, or change `path`",
                        path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(),
                        dir.display()
                    )
                }),
        },
    }
}

impl FileSink {
    /// Opens (creating if needed) the file. A missing directory is a start-up error.
    pub async fn open(config: FileSinkConfig, ctx: SinkContext) -> Result<FileSink, SinkError> {
        if let Some(problem) = directory_problem(&config.path) {
            return Err(SinkError::fatal(format!(
                "file sink {:?}: {}: {problem}",
                ctx.name,
                config.path.display()
            )));
        }
        let state = Arc::new(Mutex::new(State { config, open: None }));
        let s = state.clone();
        let name = ctx.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = s.lock().unwrap_or_else(|p| p.into_inner());
            st.open().map(|_| ())
        })
        .await
        .map_err(|e| SinkError::fatal(format!("file sink {name:?}: {e}")))?
        .map_err(|e| SinkError::fatal(format!("file sink {name:?}: {}", e.message)))?;
        Ok(FileSink { ctx, state })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, SinkError> + Send + 'static,
    ) -> Result<T, SinkError> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut st)
        })
        .await
        .map_err(|e| SinkError::transient(format!("file sink {:?}: {e}", self.ctx.name)))?
    }
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: &[Record]) -> Result<(), SinkError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.payload.len() + 1).sum());
        for r in batch {
            buf.extend_from_slice(&r.payload);
            buf.push(b'\n');
        }
        self.blocking(move |st| st.write(&buf)).await
    }

    async fn check(&self) -> Result<String, SinkError> {
        let path = self.blocking(|st| st.open().map(|_| ())).await;
        path.map(|_| "file open for appending".to_string())
    }

    async fn reopen(&self) {
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
            mode: None,
            max_bytes: None,
            max_files: None,
            header: None,
        }
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
        let path = dir.path().join("out.ndjson");
        let sink = FileSink::open(config(path.clone()), ctx(dir.path()))
            .await
            .unwrap();
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
        let path = dir.path().join("out.ndjson");
        let sink = FileSink::open(config(path.clone()), ctx(dir.path()))
            .await
            .unwrap();
        sink.deliver(&[rec("1")]).await.unwrap();
        std::fs::rename(&path, dir.path().join("out.ndjson.old")).unwrap();
        sink.deliver(&[rec("2")]).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "2\n");
    }

    #[tokio::test]
    async fn a_path_that_cannot_be_written_fails_then_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        let sink = FileSink::open(config(path.clone()), ctx(dir.path()))
            .await
            .unwrap();
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

    #[test]
    fn probe_creates_nothing_and_says_what_delivery_will_find() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.ndjson");
        assert_eq!(probe(&config(path.clone())), Ok(Probe::WillCreate));
        assert!(!path.exists(), "probe created the file");
        std::fs::write(&path, "x\n").unwrap();
        assert_eq!(
            probe(&config(path.clone())),
            Ok(Probe::Appends { bytes: 2 })
        );
        let missing = dir.path().join("nope");
        assert_eq!(
            probe(&config(missing.join("out.ndjson"))),
            Ok(Probe::NoDirectory(missing.clone()))
        );
        assert!(!missing.exists());
    }

    #[test]
    fn mode_accepts_octal_text_and_numbers() {
        let c: FileSinkConfig =
            serde_json::from_value(serde_json::json!({"path": "/x", "mode": "0600"})).unwrap();
        assert_eq!(c.mode_bits(), 0o600);
        let c: FileSinkConfig =
            serde_json::from_value(serde_json::json!({"path": "/x", "mode": 0o644})).unwrap();
        assert_eq!(c.mode_bits(), 0o644);
        let c: FileSinkConfig =
            serde_json::from_value(serde_json::json!({"path": "/x", "mode": "0o640"})).unwrap();
        assert_eq!(c.mode_bits(), 0o640);
    }

    #[test]
    fn a_bad_mode_says_what_is_wrong_with_it() {
        let err = |mode: serde_json::Value| {
            from_table::<FileSinkConfig>(serde_json::json!({"path": "/x", "mode": mode}))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("0999".into()),
            "key `mode`: \"0999\" is not an octal permission such as \"0640\" (digits 0 to 7)"
        );
        // TOML decimal 640 is 0o1200: not a permission, and the fix is named.
        let e = err(640.into());
        assert!(
            e.starts_with("key `mode`: 0o1200 is not a permission") && e.contains("\"0640\""),
            "{e}"
        );
        assert!(err("07777".into()).contains("at most 0777"));
        assert!(err(true.into()).contains("expected an octal permission"));
        assert!(!err((-1).into()).contains("untagged"));
    }
}
