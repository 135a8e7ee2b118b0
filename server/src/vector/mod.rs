//! Vector stores: the dense side of retrieval. One trait; `pgvector` keeps vectors in the same
//! PostgreSQL as the metadata (HNSW), `sqlite-exact` in the embedded database (exact scan). Vectors are keyed by chunk id; search results are joined back to
//! chunk rows in the metadata store, so a vector whose chunk is gone can never surface.

mod pgvector;
mod sqlite;

pub use pgvector::PgVectorStore;
pub(crate) use pgvector::{hnsw_search_transaction, literal};
pub use sqlite::SqliteVectorStore;

use uuid::Uuid;

/// Failures of a vector store.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("vector store unavailable: {0}")]
    Unavailable(String),
    #[error("invalid vector: {0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for VectorError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                VectorError::Unavailable(e.to_string())
            }
            other => VectorError::Other(anyhow::Error::new(other)),
        }
    }
}

/// One chunk's embedding with the ids search filters on.
#[derive(Debug, Clone)]
pub struct VectorPoint {
    pub chunk_id: Uuid,
    pub space_id: Uuid,
    pub document_id: Uuid,
    pub vector: Vec<f32>,
}

/// A nearest-neighbour query within one space.
#[derive(Debug, Clone)]
pub struct VectorQuery {
    pub space_id: Uuid,
    pub vector: Vec<f32>,
    pub document_id: Option<Uuid>,
    pub limit: usize,
}

/// A hit: the chunk and its cosine similarity (1 is identical).
#[derive(Debug, Clone, PartialEq)]
pub struct VectorHit {
    pub chunk_id: Uuid,
    pub score: f32,
}

/// Stores and searches chunk embeddings.
#[async_trait::async_trait]
pub trait VectorStore: Send + Sync + 'static {
    /// Short backend name for health reports.
    fn backend_name(&self) -> &'static str;
    /// Cheap round trip proving the store answers.
    async fn ping(&self) -> Result<(), VectorError>;
    /// Inserts or replaces points; every vector must have the store's dimensions and be finite.
    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<(), VectorError>;
    /// Nearest neighbours by cosine similarity, best first.
    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError>;
    /// Removes a document's points.
    async fn delete_document(&self, space_id: Uuid, document_id: Uuid) -> Result<(), VectorError>;
    /// Removes a space's points.
    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError>;
}

/// Rejects vectors of the wrong length or with NaN/inf before they reach a backend.
pub fn validate(vector: &[f32], dimensions: usize) -> Result<(), VectorError> {
    if vector.len() != dimensions {
        return Err(VectorError::Invalid(format!(
            "expected {dimensions} dimensions, got {}",
            vector.len()
        )));
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(VectorError::Invalid(
            "vectors must not contain NaN or infinity".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_dimensions_and_non_finite_values_are_rejected() {
        assert!(validate(&[0.0; 3], 3).is_ok());
        assert!(validate(&[0.0; 2], 3).is_err());
        assert!(validate(&[0.0, f32::NAN, 1.0], 3).is_err());
        assert!(validate(&[0.0, f32::INFINITY, 1.0], 3).is_err());
    }
}
