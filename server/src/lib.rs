//! Kenning's server: configuration, HTTP API, metadata store and the service layer behind the UI.

pub mod audit;
pub mod auth;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod cli;
pub mod config;
pub mod csrf;
pub mod domain;
pub mod embed;
pub mod generate;
pub mod health;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod points;
pub mod redis_link;
pub mod resilience;
pub mod retrieve;
pub mod serve;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod vector;
