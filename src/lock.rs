//! Temporary: replaced by the ops work.
use std::path::Path;
#[derive(Debug)]
pub struct StateLock(std::fs::File);
impl StateLock {
    pub fn acquire(state_dir: &Path) -> Result<StateLock, String> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(state_dir.join("lock"))
            .map_err(|e| e.to_string())?;
        f.try_lock().map_err(|_| {
            format!(
                "another codacy-audit-forwarder is using {}",
                state_dir.display()
            )
        })?;
        Ok(StateLock(f))
    }
    pub fn is_held(state_dir: &Path) -> bool {
        match std::fs::OpenOptions::new()
            .write(true)
            .open(state_dir.join("lock"))
        {
            Ok(f) => f.try_lock().is_err(),
            Err(_) => false,
        }
    }
}
