//! Codacy API client (being written).
