//! Durable cursor per (organization, sink).
//!
//! Invariant kept by the pipeline: every event with a timestamp below `cursor_ms` that the API
//! held when it was fetched has been delivered to this sink, and every event delivered at or above
//! `cursor_ms - overlap` is listed in `recent`. Each poll re-reads from `cursor_ms - overlap`, so
//! late events (a timestamp already passed) are still caught within the overlap, and `recent`
//! keeps what was delivered from being delivered twice.
//!
//! One format, versioned, human-readable JSON, written with write-temp + fsync + rename +
//! fsync(dir). A corrupt or future-version file is an error, never a silent reset.

use crate::event::{EventId, OrgRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const VERSION: u32 = 1;

/// How far a cursor may be ahead of this host's clock before the checkpoint is refused: clocks
/// of hosts that share a state directory (a restored backup, a failover) differ by a little.
pub const AHEAD_TOLERANCE_MS: i64 = 5 * 60 * 1000;

/// The pure cursor logic, independent of files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Never deliver events older than this (first start: now - initial_lookback).
    pub start_ms: i64,
    /// Everything below this was delivered (see module docs).
    pub cursor_ms: i64,
    /// Ids delivered at or above `cursor_ms - overlap`, with their timestamps.
    pub recent: BTreeMap<EventId, i64>,
}

impl Cursor {
    /// A new sink or organization: start at `start_ms`.
    pub fn starting_at(start_ms: i64) -> Self {
        Cursor {
            start_ms,
            cursor_ms: start_ms,
            recent: BTreeMap::new(),
        }
    }

    /// The earliest timestamp the next fetch must include for this sink.
    pub fn fetch_from(&self, overlap_ms: i64) -> i64 {
        (self.cursor_ms - overlap_ms).max(self.start_ms)
    }

    /// Whether the event still has to be delivered to this sink.
    pub fn wants(&self, id: &EventId, timestamp_ms: i64, overlap_ms: i64) -> bool {
        timestamp_ms >= self.fetch_from(overlap_ms) && !self.recent.contains_key(id)
    }

    /// Records a delivered batch (sorted by timestamp) and moves the cursor to `up_to_ms` (never
    /// backwards). Pass the last delivered timestamp mid-window, the window's end after it.
    pub fn advance<'a>(
        &mut self,
        delivered: impl IntoIterator<Item = (&'a EventId, i64)>,
        up_to_ms: i64,
        overlap_ms: i64,
    ) {
        self.cursor_ms = self.cursor_ms.max(up_to_ms);
        let keep_from = self.cursor_ms - overlap_ms;
        // Only what the overlap keeps is copied in: in a backfill nearly every delivered id lies
        // far below it, and copying each one in only to drop it again cost every lane an
        // allocation and a tree insert and removal per event.
        for (id, ts) in delivered {
            if ts >= keep_from {
                self.recent.insert(id.clone(), ts);
            } else {
                self.recent.remove(id);
            }
        }
        self.recent.retain(|_, ts| *ts >= keep_from);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {path}: cannot read: {source}; check that the state directory and its files are readable by the service user (a `once` or `state reset` run as root leaves root-owned files)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is corrupt ({reason}); it was not reset. Inspect it, restore it from backup, or move it away to restart this sink from agent.initial_lookback (or use `state reset`)")]
    Corrupt { path: String, reason: String },
    #[error("checkpoint {path} has version {found}, newer than this agent understands ({VERSION}); upgrade the agent or restore an older state directory")]
    FutureVersion { path: String, found: u64 },
    #[error("checkpoint {path}: cannot write: {source}; check that the state directory is writable by the service user and that its file system is not full")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("checkpoint {path} belongs to {found}, not to {expected} (copied from another organization or sink?); it was not used, so nothing is skipped or replayed by mistake. Move it away, or set this sink's position with `codacy-audit-forwarder state reset --org {org} --sink {sink} --to <RFC 3339 time>`")]
    Foreign {
        path: String,
        found: String,
        expected: String,
        org: String,
        sink: String,
    },
    #[error("checkpoint {path} says everything before {cursor} was delivered, but this host's clock says {now}: the clock was ahead when it was written (corrected since?), or the file was edited. Trusted, it would deliver nothing until then. Check the clock, then set the position with `codacy-audit-forwarder state reset --org {org} --sink {sink} --to <RFC 3339 time>` (the last time you know was delivered)")]
    AheadOfClock {
        path: String,
        cursor: String,
        now: String,
        org: String,
        sink: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    organization: String,
    sink: String,
    /// Human-readable copy of `cursor_ms`.
    cursor: String,
    cursor_ms: i64,
    start_ms: i64,
    /// `event id -> timestamp ms` for events delivered inside the overlap window.
    recent: BTreeMap<String, i64>,
    updated: String,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// `state_dir/checkpoints/<provider>/<organization, percent-encoded>/<sink>.json`
pub fn path_for(state_dir: &Path, org: &OrgRef, sink: &str) -> PathBuf {
    path_under(&state_dir.join("checkpoints"), org, sink)
}

/// Where `state reset` asks a running daemon to move a checkpoint: the daemon owns the
/// checkpoint while it runs (and would overwrite a direct edit), so it applies the request at its
/// next poll of that organization and removes the file.
pub fn reset_request_path(state_dir: &Path, org: &OrgRef, sink: &str) -> PathBuf {
    path_under(&state_dir.join("reset-requests"), org, sink)
}

#[derive(Debug, Serialize, Deserialize)]
struct ResetRequest {
    version: u32,
    organization: String,
    sink: String,
    cursor_ms: i64,
}

/// Writes a reset request (see [`reset_request_path`]), atomically.
pub fn request_reset(path: &Path, org: &OrgRef, sink: &str, to_ms: i64) -> std::io::Result<()> {
    let request = ResetRequest {
        version: VERSION,
        organization: org.key(),
        sink: sink.to_string(),
        cursor_ms: to_ms,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::private::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{sink}.request.{}.tmp", std::process::id()));
    crate::private::create(&tmp)?.write_all(&serde_json::to_vec_pretty(&request)?)?;
    std::fs::rename(&tmp, path)
}

/// The position a pending reset request asks for, if there is one for (`org`, `sink`). A request
/// that cannot be read or names another lane is an error (left in place for a human).
pub fn pending_reset(path: &Path, org: &OrgRef, sink: &str) -> Result<Option<i64>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "reset request {}: cannot read: {e}",
                path.display()
            ))
        }
    };
    let r: ResetRequest = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "reset request {} is not valid ({e}); remove it",
            path.display()
        )
    })?;
    if r.organization != org.key() || r.sink != sink {
        return Err(format!(
            "reset request {} is for {} / {}, not {org} / {sink}; remove it",
            path.display(),
            r.organization,
            r.sink
        ));
    }
    Ok(Some(r.cursor_ms))
}

fn path_under(root: &Path, org: &OrgRef, sink: &str) -> PathBuf {
    let mut enc = String::new();
    for b in org.name.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.') && !(enc.is_empty() && b == b'.')
        {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    root.join(org.provider.as_str())
        .join(enc)
        .join(format!("{sink}.json"))
}

/// Reads the checkpoint of (`org`, `sink`); `Ok(None)` when there is none yet. A checkpoint that
/// names another organization or sink, or whose cursor is ahead of `now_ms` (plus
/// [`AHEAD_TOLERANCE_MS`]), is an error: trusting it would skip events without a trace.
pub fn load(
    path: &Path,
    org: &OrgRef,
    sink: &str,
    now_ms: i64,
) -> Result<Option<Cursor>, CheckpointError> {
    let Some((cursor, found_org, found_sink)) = read(path)? else {
        return Ok(None);
    };
    let p = path.display().to_string();
    if found_org != org.key() || found_sink != sink {
        return Err(CheckpointError::Foreign {
            path: p,
            found: format!("{found_org} / {found_sink}"),
            expected: format!("{org} / {sink}"),
            org: org.key(),
            sink: sink.to_string(),
        });
    }
    check_not_ahead(path, org, sink, &cursor, now_ms)?;
    Ok(Some(cursor))
}

/// Whether a cursor held in memory has got ahead of the clock (the clock was set back while the
/// agent ran): the same error as at load.
pub fn check_not_ahead(
    path: &Path,
    org: &OrgRef,
    sink: &str,
    cursor: &Cursor,
    now_ms: i64,
) -> Result<(), CheckpointError> {
    if cursor.cursor_ms > now_ms.saturating_add(AHEAD_TOLERANCE_MS) {
        return Err(CheckpointError::AheadOfClock {
            path: path.display().to_string(),
            cursor: rfc3339(cursor.cursor_ms),
            now: rfc3339(now_ms),
            org: org.key(),
            sink: sink.to_string(),
        });
    }
    Ok(())
}

/// The file as written: the cursor and the organization and sink it names.
fn read(path: &Path) -> Result<Option<(Cursor, String, String)>, CheckpointError> {
    let p = path.display().to_string();
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(CheckpointError::Read { path: p, source }),
    };
    let version = serde_json::from_slice::<serde_json::Value>(&text)
        .map_err(|e| CheckpointError::Corrupt {
            path: p.clone(),
            reason: e.to_string(),
        })?
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| CheckpointError::Corrupt {
            path: p.clone(),
            reason: "no version".into(),
        })?;
    if version > VERSION as u64 {
        return Err(CheckpointError::FutureVersion {
            path: p,
            found: version,
        });
    }
    let disk: OnDisk = serde_json::from_slice(&text).map_err(|e| CheckpointError::Corrupt {
        path: p.clone(),
        reason: e.to_string(),
    })?;
    let mut recent = BTreeMap::new();
    for (id, ts) in disk.recent {
        let id = EventId::from_hex(&id).ok_or_else(|| CheckpointError::Corrupt {
            path: p.clone(),
            reason: format!("{id:?} is not an event id"),
        })?;
        recent.insert(id, ts);
    }
    Ok(Some((
        Cursor {
            start_ms: disk.start_ms,
            cursor_ms: disk.cursor_ms,
            recent,
        },
        disk.organization,
        disk.sink,
    )))
}

/// Removes the temp files a crash left next to `path` (`.<name>.<pid>.<rand>.tmp`). Call only
/// while holding the state lock, so that no other writer's temp file is taken.
pub fn remove_stale_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(f) = file_name.to_str() else {
            continue;
        };
        if f.starts_with(&prefix) && f.ends_with(".tmp") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed a checkpoint temp file left by an interrupted write")
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a checkpoint temp file left by an interrupted write")
                }
            }
        }
    }
}

/// Writes a checkpoint atomically and durably (blocking; call from `spawn_blocking`).
pub fn store(
    path: &Path,
    org: &OrgRef,
    sink: &str,
    cursor: &Cursor,
    now_ms: i64,
) -> Result<(), CheckpointError> {
    let p = path.display().to_string();
    let werr = |source| CheckpointError::Write {
        path: p.clone(),
        source,
    };
    let disk = OnDisk {
        version: VERSION,
        organization: org.key(),
        sink: sink.to_string(),
        cursor: rfc3339(cursor.cursor_ms),
        cursor_ms: cursor.cursor_ms,
        start_ms: cursor.start_ms,
        recent: cursor
            .recent
            .iter()
            .map(|(id, ts)| (id.as_str().to_string(), *ts))
            .collect(),
        updated: rfc3339(now_ms),
    };
    let mut bytes = serde_json::to_vec_pretty(&disk).map_err(|e| werr(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::private::create_dir_all(dir).map_err(werr)?;
    // Unique per process and write, so that even a misbehaving second writer cannot interleave.
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("checkpoint"),
        std::process::id(),
        rand::random::<u32>()
    ));
    let written = crate::private::create(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // A full disk must not also fill the directory with empty temp files, one per attempt.
        let _ = std::fs::remove_file(&tmp);
        return Err(werr(e));
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(werr)?;
    Ok(())
}

/// Async wrapper: the fsyncs run on the blocking pool.
pub async fn store_async(
    path: PathBuf,
    org: OrgRef,
    sink: String,
    cursor: Cursor,
    now_ms: i64,
) -> Result<(), CheckpointError> {
    let p = path.display().to_string();
    tokio::task::spawn_blocking(move || store(&path, &org, &sink, &cursor, now_ms))
        .await
        .map_err(|e| CheckpointError::Write {
            path: p,
            source: std::io::Error::other(e),
        })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Provider;

    fn id(n: u8) -> EventId {
        EventId::compute(&OrgRef::new(Provider::Gh, "a"), &[n], 0)
    }

    #[test]
    fn round_trips_and_is_human_readable() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgRef::new(Provider::Gh, "acme corp/x");
        let path = path_for(dir.path(), &org, "archive");
        assert!(path.to_string_lossy().contains("acme%20corp%2Fx"));
        assert_eq!(load(&path, &org, "archive", 3_000).unwrap(), None);
        let mut c = Cursor::starting_at(1_000);
        c.advance([(&id(1), 1_500)], 2_000, 1_000);
        store(&path, &org, "archive", &c, 3_000).unwrap();
        assert_eq!(load(&path, &org, "archive", 3_000).unwrap(), Some(c));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1") && text.contains("1970-01-01T00:00:02.000Z"));
    }

    #[test]
    fn corrupt_and_future_files_are_errors_not_resets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let org = OrgRef::new(Provider::Gh, "a");
        std::fs::write(&path, "{\"version\": 1, \"cursor_ms\": ").unwrap();
        assert!(matches!(
            load(&path, &org, "c", 0),
            Err(CheckpointError::Corrupt { .. })
        ));
        std::fs::write(&path, "{\"version\": 2}").unwrap();
        let e = load(&path, &org, "c", 0).unwrap_err();
        assert!(matches!(e, CheckpointError::FutureVersion { found: 2, .. }));
        assert!(e.to_string().contains("upgrade"));
    }

    #[test]
    fn a_checkpoint_of_another_organization_or_sink_is_refused_with_the_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let acme = OrgRef::new(Provider::Gh, "acme");
        let other = OrgRef::new(Provider::Gh, "other");
        let path = path_for(dir.path(), &acme, "siem");
        store(&path, &other, "siem", &Cursor::starting_at(1_000), 2_000).unwrap();
        let e = load(&path, &acme, "siem", 2_000).unwrap_err();
        assert!(matches!(e, CheckpointError::Foreign { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("gh/other / siem") && msg.contains("gh/acme / siem"),
            "{msg}"
        );
        assert!(
            msg.contains("state reset --org gh/acme --sink siem"),
            "{msg}"
        );
        store(&path, &acme, "archive", &Cursor::starting_at(1_000), 2_000).unwrap();
        assert!(matches!(
            load(&path, &acme, "siem", 2_000),
            Err(CheckpointError::Foreign { .. })
        ));
    }

    #[test]
    fn a_cursor_ahead_of_the_clock_is_refused_with_the_remedy() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgRef::new(Provider::Gh, "acme");
        let path = path_for(dir.path(), &org, "siem");
        let now = 1_900_000_000_000;
        let year_2100 = 4_102_444_800_000;
        store(&path, &org, "siem", &Cursor::starting_at(year_2100), now).unwrap();
        let e = load(&path, &org, "siem", now).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CheckpointError::AheadOfClock { .. }), "{msg}");
        assert!(
            msg.contains("2100-01-01T00:00:00.000Z")
                && msg.contains("state reset --org gh/acme --sink siem"),
            "{msg}"
        );
        // A few minutes ahead (another host's clock) is tolerated.
        let near = Cursor::starting_at(now + AHEAD_TOLERANCE_MS);
        store(&path, &org, "siem", &near, now).unwrap();
        assert_eq!(load(&path, &org, "siem", now).unwrap(), Some(near));
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file_and_crash_leftovers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let org = OrgRef::new(Provider::Gh, "acme");
        let path = path_for(dir.path(), &org, "siem");
        // The rename fails: a directory stands where the checkpoint goes.
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("x"), "keep the directory non-empty").unwrap();
        let e = store(&path, &org, "siem", &Cursor::starting_at(1), 2).unwrap_err();
        assert!(matches!(e, CheckpointError::Write { .. }));
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        let parent = path.parent().unwrap();
        assert_eq!(names(parent), vec!["siem.json".to_string()]);
        // Leftovers of a kill -9 between create and rename, for this sink and another one.
        std::fs::write(parent.join(".siem.json.123.abc.tmp"), "").unwrap();
        std::fs::write(parent.join(".other.json.123.abc.tmp"), "").unwrap();
        remove_stale_temp_files(&path);
        let mut left = names(parent);
        left.sort();
        assert_eq!(left, vec![".other.json.123.abc.tmp", "siem.json"]);
    }

    #[test]
    fn overlap_keeps_recent_ids_and_prunes_old_ones() {
        let mut c = Cursor::starting_at(0);
        c.advance([(&id(1), 100), (&id(2), 900)], 1_000, 500);
        assert!(!c.wants(&id(2), 900, 500));
        assert!(!c.recent.contains_key(&id(1)));
        // A late event inside the overlap is still wanted; one before it is not.
        assert!(c.wants(&id(3), 600, 500));
        assert!(!c.wants(&id(4), 400, 500));
        // The cursor never moves backwards.
        c.advance([], 10, 500);
        assert_eq!(c.cursor_ms, 1_000);
        assert_eq!(c.fetch_from(500), 500);
    }
}
