//! A checkpoint from a newer agent is refused with the version it really has, however large.

use codacy_audit_forwarder::checkpoint::{load, CheckpointError};
use codacy_audit_forwarder::event::{OrgRef, Provider};

#[test]
fn a_future_version_is_reported_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("archive.json");
    let version = 1u64 << 40;
    std::fs::write(&path, format!("{{\"version\": {version}}}")).unwrap();
    let err = load(&path, &OrgRef::new(Provider::Gh, "acme"), "archive", 0).unwrap_err();
    assert!(
        matches!(err, CheckpointError::FutureVersion { found, .. } if found == version),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("has version 1099511627776,"), "{msg}");
    assert!(msg.contains("upgrade the agent"), "{msg}");
}
