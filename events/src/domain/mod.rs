//! Typed domain events (being written).
