//! Durable per-(organization, sink) cursor (being written).
