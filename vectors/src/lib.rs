//! Vector engines: passage vectors and client points on the embedded engine, Qdrant Edge, pgvector or a Qdrant server.

pub mod points;
pub mod vector;
