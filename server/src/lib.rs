//! Kenning's server: configuration, HTTP API, metadata store and the service layer behind the UI.

pub mod api_client;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod error;
pub mod health;
pub mod http;
pub mod retrieve;
pub mod serve;
pub mod service;
pub mod sources;
pub mod startup;
pub mod telemetry;
pub mod ui;
pub use kenning_core::{config, domain, redis_link, resilience, text};
pub use kenning_ingest as ingest;
pub use kenning_metrics as metrics;
pub use kenning_models::{embed, generate};
pub use kenning_store as store;
pub use kenning_vectors::{points, vector};
