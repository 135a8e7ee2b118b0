//! Settings, input types, circuit breakers and small shared parts every other Kenning crate builds on.

pub mod config;
pub mod domain;
pub mod redis_link;
pub mod resilience;
pub mod text;
