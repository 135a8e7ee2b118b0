//! Ingestion: a durable job queue in the metadata store, workers that take jobs under a lease,
//! and the pipeline each job runs — parse, chunk, (embed), index.

pub mod chunk;
mod discard;
pub mod isolate;
pub mod parse;
mod worker;

pub use discard::discard;
pub use worker::{backoff, Indexing, Worker, WorkerSettings};
