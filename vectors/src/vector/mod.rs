//! Vector stores: the dense side of retrieval. One trait; `pgvector` keeps vectors in the same
//! PostgreSQL as the metadata (HNSW), `embedded` in the embedded database with an in-memory
//! index (exact scan, then HNSW as a space grows), `edge` in an embedded Qdrant Edge shard, `qdrant` in a Qdrant server. Vectors are keyed by chunk id; search results
//! are joined back to chunk rows in the metadata store, so a vector whose chunk is gone can never
//! surface.

pub(crate) mod edge;
mod pgvector;
pub(crate) mod qdrant;

pub use edge::{shard_dir as edge_shard_dir, EdgeVectorStore};
pub use pgvector::PgVectorStore;
pub(crate) use pgvector::{hnsw_search_transaction, literal};
pub use qdrant::{collection_name as qdrant_collection_name, QdrantSettings, QdrantVectorStore};

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
    /// The passage's text, for stores that keep their own keyword index (Qdrant Edge's BM25).
    pub text: String,
}

/// A nearest-neighbour query within one space.
#[derive(Debug, Clone)]
pub struct VectorQuery {
    pub space_id: Uuid,
    pub vector: Vec<f32>,
    pub document_id: Option<Uuid>,
    pub limit: usize,
}

/// Which of a document's points a delete takes: an ingestion attempt removes only what it wrote,
/// or, once its passages are the document's, everything else.
#[derive(Debug, Clone, Copy)]
pub enum Chunks<'a> {
    /// Exactly these chunks.
    Only(&'a [Uuid]),
    /// Every chunk of the document but these.
    AllBut(&'a [Uuid]),
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
    /// Removes some of a document's points, so one ingestion attempt never removes another's.
    async fn delete_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        which: Chunks<'_>,
    ) -> Result<(), VectorError>;
    /// Removes every point of a document, when the document itself goes.
    async fn delete_document(&self, space_id: Uuid, document_id: Uuid) -> Result<(), VectorError> {
        self.delete_chunks(space_id, document_id, Chunks::AllBut(&[]))
            .await
    }
    /// Removes a space's points.
    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError>;
    /// Best keyword (BM25) matches for `query`, when the store keeps its own keyword index;
    /// `None` leaves keyword search to the metadata store's full text.
    async fn keyword(
        &self,
        _space_id: Uuid,
        _query: &str,
        _document_id: Option<Uuid>,
        _limit: usize,
    ) -> Result<Option<Vec<VectorHit>>, VectorError> {
        Ok(None)
    }
    /// True when the store may lack passages of spaces already indexed (a new shard, or a
    /// keyword side added to an older one), so every indexed space must be indexed again.
    fn needs_reindex(&self) -> bool {
        false
    }
    /// Records that every indexed space has been queued for indexing again.
    async fn reindex_queued(&self) -> Result<(), VectorError> {
        Ok(())
    }
}

/// A model name made safe for a Qdrant collection or a directory: lowercase ASCII letters and
/// digits, `-` and `_`; anything else becomes `_`.
pub(crate) fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Unit length, so a dot product is the cosine similarity.
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Dot product written so the compiler vectorises it (eight independent accumulators).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Little-endian f32 bytes, the embedded stores' vector column.
pub(crate) fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The inverse of [`to_blob`].
pub(crate) fn from_blob(b: &[u8]) -> Vec<f32> {
    b.as_chunks::<4>()
        .0
        .iter()
        .map(|c| f32::from_le_bytes(*c))
        .collect()
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
