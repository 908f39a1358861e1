//! Temporary until the simulator lands.
use crate::agent::StartError;
use crate::clock::SharedClock;
use std::path::PathBuf;
use std::time::Duration;
pub async fn run(_out: PathBuf, _d: Option<Duration>, _c: SharedClock) -> Result<(), StartError> {
    Err(StartError::Other("demo not ready".into()))
}
pub fn preview(
    _f: &str,
    _o: &str,
    _n: &str,
    _file: Option<&std::path::Path>,
    _c: &SharedClock,
) -> Result<(), String> {
    Err("not ready".into())
}
