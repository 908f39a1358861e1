//! Poll loop (being written).
