//! Crate-wide error type (being written).
