//! Files holding event data or state (dead letters, checkpoints, `status.json`) are created for
//! the service user and its group only, whatever the umask: files 0640, directories 0750. Audit
//! records are compliance evidence, and the state says what was delivered where.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;

/// Creates `dir` and its missing parents with mode 0750. Directories that already exist keep
/// their mode: the operator chose it.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(dir) {
        // The umask may have narrowed the mode; a directory we made gets exactly ours.
        Ok(()) => std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE)),
        // Another process made it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` for writing, or truncates it, with mode 0640 (for files the agent owns, such
/// as the temp file of an atomic write).
pub fn create(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Opens `path` for appending, creating it with mode 0640 when missing. An existing file keeps
/// its mode.
pub fn append(path: &Path) -> io::Result<File> {
    match OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(file) => {
            file.set_permissions(Permissions::from_mode(FILE_MODE))?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).open(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn new_files_and_directories_get_exactly_the_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o711)).unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        create_dir_all(&deep).unwrap();
        for d in ["a", "a/b", "a/b/c"] {
            assert_eq!(mode(&dir.path().join(d)), 0o750, "{d}");
        }
        // An existing directory keeps what the operator gave it.
        assert_eq!(mode(dir.path()), 0o711);

        let f = deep.join("x.json");
        create(&f).unwrap().write_all(b"1").unwrap();
        assert_eq!(mode(&f), 0o640);
        let log = deep.join("x.ndjson");
        append(&log).unwrap().write_all(b"a\n").unwrap();
        append(&log).unwrap().write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "a\nb\n");
        assert_eq!(mode(&log), 0o640);
        std::fs::set_permissions(&log, Permissions::from_mode(0o600)).unwrap();
        append(&log).unwrap();
        assert_eq!(mode(&log), 0o600, "an existing file keeps its mode");
    }
}
