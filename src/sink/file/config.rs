//! The file sink's keys, what `check` can say of its path without creating anything, and its
//! entry in the sink registry.

use super::FileSink;
use crate::config::{from_table, FieldError};
use crate::format::Format;
use crate::sink::registry::{Preflight, SinkCommon, SinkConfig, SinkType, STREAM_BATCH};
use crate::sink::{Sink, SinkContext, SinkError};
use async_trait::async_trait;
use serde::Deserialize;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
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
    pub(crate) const DEFAULT_MODE: u32 = 0o640;

    pub(crate) fn mode_bits(&self) -> u32 {
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

/// What `check` finds at a file sink's path, without creating or changing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Probe {
    /// The file exists and opens for appending.
    Appends { bytes: u64 },
    /// The file does not exist yet; its directory takes new files.
    WillCreate,
    /// The directory does not exist (systemd may create it: the caller decides).
    NoDirectory(PathBuf),
}

/// Probes `config.path` the way delivery will use it: an existing file is opened for appending
/// (which changes neither its content nor its times); a missing one needs a writable directory.
pub(crate) fn probe(config: &FileSinkConfig) -> Result<Probe, String> {
    let path = &config.path;
    let dir = directory_of(path);
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

/// The directory that holds `path` (`.` for a bare file name).
pub(super) fn directory_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: PathBuf) -> FileSinkConfig {
        FileSinkConfig {
            path,
            ..Default::default()
        }
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
