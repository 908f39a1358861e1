//! One agent per state directory: an exclusive `flock` on the state directory itself and on
//! `STATE_DIR/lock`.
//!
//! Two agents sharing checkpoints would each commit the other's cursors and duplicate or skip
//! events. `flock` is released by the kernel when the process dies, even on `kill -9`, so there is
//! no stale lock to clean up; the pid written into the file is only for the error message.
//! The directory lock is what holds: a lock file can be deleted while its holder runs (a clean-up
//! script, an operator), and a second agent would then lock a fresh file. The directory cannot
//! go away while it holds checkpoints. The file lock stays for older agents and `flock(1)` users.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "lock";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another codacy-audit-forwarder ({}) is using {}; stop it first \
         (systemctl stop codacy-audit-forwarder) or give this agent its own [agent] state_dir",
        .pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "pid unknown".into()),
        .dir.display()
    )]
    Busy { dir: PathBuf, pid: Option<u32> },
    #[error(
        "cannot lock {}: {source}; check that the state directory exists and is writable by this user",
        .path.display()
    )]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held for as long as the agent runs; dropping it releases the lock.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
    /// The locked state directory (`None` where its filesystem cannot lock directories).
    _dir: Option<File>,
}

impl StateLock {
    /// Creates `state_dir` if needed, then takes the lock without waiting.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let path = state_dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        crate::private::create_dir_all(state_dir).map_err(io)?;
        let busy = |file: Option<&mut File>| LockError::Busy {
            dir: state_dir.to_path_buf(),
            pid: file.and_then(read_pid),
        };
        let dir = File::open(state_dir).map_err(io)?;
        let dir = match flock(&dir, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Some(dir),
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(busy(File::open(&path).ok().as_mut()));
            }
            // Some network filesystems lock only files opened for writing.
            Err(e) => {
                tracing::warn!(path = %state_dir.display(), error = %e,
                    "cannot lock the state directory itself; only its lock file is locked, so deleting that file while the agent runs would let a second agent start");
                None
            }
        };
        // No truncate on open: the file may belong to a running agent whose pid we want to report.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(io)?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(busy(Some(&mut file))),
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock {
            file,
            path,
            _dir: dir,
        })
    }

    /// Whether a live process holds the lock on `state_dir` (used by `state reset`).
    /// A missing state directory, or a missing or unreadable lock file where the directory
    /// cannot be locked, counts as not held.
    pub fn is_held(state_dir: &Path) -> bool {
        Self::holder(state_dir).is_some()
    }

    /// `Some(pid)` (pid if known) when another open file holds the lock on `state_dir`.
    pub fn holder(state_dir: &Path) -> Option<Option<u32>> {
        let mut file = File::open(state_dir.join(LOCK_FILE)).ok();
        // A shared lock conflicts with the agent's exclusive one but not with another checker's;
        // it is released when the descriptor closes.
        let held = |f: &File| {
            matches!(
                flock(f, FlockOperation::NonBlockingLockShared),
                Err(rustix::io::Errno::WOULDBLOCK)
            )
        };
        let dir_held = File::open(state_dir).is_ok_and(|d| held(&d));
        if dir_held || file.as_ref().is_some_and(held) {
            Some(file.as_mut().and_then(read_pid))
        } else {
            None
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Clear the pid so nobody reads a stale one; the lock itself goes with the file descriptor.
        let _ = self.file.set_len(0);
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.take(32).read_to_string(&mut s).ok()?;
    s.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn a_second_acquisition_fails_with_the_holders_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(!StateLock::is_held(&state));
        let first = StateLock::acquire(&state).unwrap();
        assert!(StateLock::is_held(&state));
        let content = std::fs::read_to_string(first.path()).unwrap();
        assert_eq!(content.trim(), std::process::id().to_string());

        let err = StateLock::acquire(&state).unwrap_err();
        match &err {
            LockError::Busy { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("expected Busy, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(msg.contains(&state.display().to_string()), "{msg}");

        drop(first);
        // Eventually, not at once: a process another test thread forks in this instant briefly
        // shares our descriptors (until its exec), and with them the lock.
        wait_for("release after drop", || !StateLock::is_held(&state));
        let again = StateLock::acquire(&state).unwrap();
        assert!(StateLock::is_held(&state));
        drop(again);
    }

    /// Deleting the lock file while an agent runs must not let a second agent start.
    #[test]
    fn the_lock_holds_when_its_file_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(first.path()).unwrap();
        assert!(StateLock::is_held(dir.path()));
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Busy { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("another codacy-audit-forwarder")
                && msg.contains(&dir.path().display().to_string())
                && msg.contains("stop it first"),
            "{msg}"
        );
        drop(first);
        wait_for("release after drop", || {
            StateLock::acquire(dir.path()).is_ok()
        });
    }

    #[test]
    fn checking_does_not_block_acquiring() {
        let dir = tempfile::tempdir().unwrap();
        drop(StateLock::acquire(dir.path()).unwrap());
        wait_for("release after drop", || !StateLock::is_held(dir.path()));
        // is_held took and released a shared lock; the exclusive one must be free again.
        wait_for("acquire after a check", || {
            StateLock::acquire(dir.path()).is_ok()
        });
    }

    #[test]
    fn an_unwritable_state_dir_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = StateLock::acquire(&file).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Another process holds the lock (util-linux `flock`), then dies by SIGKILL: the kernel frees it.
    #[test]
    fn a_lock_held_by_another_process_is_released_when_it_is_killed() {
        if Command::new("flock").arg("--version").output().is_err() {
            eprintln!("skipped: util-linux flock(1) is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let lock_path = dir.path().join(LOCK_FILE);
        std::fs::write(&lock_path, b"").unwrap();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        // One process holds the lock: the shell opens fd 9, flock(1) locks it and exits, and
        // `exec cat` keeps fd 9 open while it waits on stdin, until we kill it.
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec 9>>"$1" && flock -x 9 && exec cat"#)
            .arg("sh")
            .arg(&lock_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Kill(child);
        wait_for("the child to take the lock", || {
            StateLock::is_held(dir.path())
        });
        assert!(matches!(
            StateLock::acquire(dir.path()),
            Err(LockError::Busy { .. })
        ));
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        wait_for("the kernel to release the lock", || {
            StateLock::acquire(dir.path()).is_ok()
        });
    }
}
