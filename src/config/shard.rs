//! `agent.shard`: several agents split one organization list without talking to each other.

use crate::event::OrgRef;
use std::fmt;

/// `agent.shard = "k/n"`: this agent serves the organizations whose stable hash of
/// `provider/name` is `k` modulo `n` (0-based, like Prometheus' `hashmod`), so `n` agents with the
/// same organization list split it without talking to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn serves(&self, org: &OrgRef) -> bool {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(org.key().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

pub(super) fn parse_shard(text: &str) -> Result<Shard, String> {
    let bad = || {
        format!("{text:?} is not a shard; write \"k/n\" with 0 <= k < n, e.g. \"0/3\" for the first of three agents")
    };
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let index: u64 = k.trim().parse().map_err(|_| bad())?;
    let count: u64 = n.trim().parse().map_err(|_| bad())?;
    if count == 0 || index >= count {
        return Err(bad());
    }
    Ok(Shard { index, count })
}
