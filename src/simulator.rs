//! Embedded Codacy API simulator (being written).
