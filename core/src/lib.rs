//! Settings, input types, metrics and small shared parts every other Kenning crate builds on.

pub mod config;
pub mod domain;
pub mod metrics;
pub mod redis_link;
pub mod resilience;
pub mod text;
