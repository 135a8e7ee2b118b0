//! Exact vector search inside the embedded SQLite database: vectors stored as little-endian f32
//! blobs beside the chunks, scored by a full scan of the space in Rust. Exact (no recall loss)
//! and dependency-free; its cost grows with the space (a 10,000-passage space is ~4 M
//! multiply-adds per query), which is why the HNSW-backed stores take over for large spaces.

use super::{
    normalised, to_blob, validate, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore,
};
use sqlx::SqlitePool;
use uuid::Uuid;

/// Vectors in the embedded SQLite database.
pub struct SqliteVectorStore {
    pool: SqlitePool,
    dimensions: usize,
}

impl SqliteVectorStore {
    /// Creates the table if missing.
    pub async fn open(pool: SqlitePool, dimensions: usize) -> Result<Self, VectorError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS chunk_vectors (chunk_id TEXT PRIMARY KEY, space_id TEXT NOT NULL, \
             document_id TEXT NOT NULL, embedding BLOB NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS chunk_vectors_space ON chunk_vectors (space_id, document_id)")
            .execute(&pool)
            .await?;
        Ok(Self { pool, dimensions })
    }
}

/// Dot product of a query with a stored blob; both are unit length, so this is the cosine.
fn dot(query: &[f32], blob: &[u8]) -> f32 {
    blob.as_chunks::<4>()
        .0
        .iter()
        .zip(query)
        .map(|(b, q)| f32::from_le_bytes(*b) * q)
        .sum()
}

#[async_trait::async_trait]
impl VectorStore for SqliteVectorStore {
    fn backend_name(&self) -> &'static str {
        "sqlite-exact"
    }

    async fn ping(&self) -> Result<(), VectorError> {
        sqlx::query("SELECT 1 FROM chunk_vectors LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<(), VectorError> {
        for p in &points {
            validate(&p.vector, self.dimensions)?;
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for batch in points.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO chunk_vectors (chunk_id, space_id, document_id, embedding) ",
            );
            q.push_values(batch, |mut b, p| {
                b.push_bind(p.chunk_id.to_string())
                    .push_bind(p.space_id.to_string())
                    .push_bind(p.document_id.to_string())
                    .push_bind(to_blob(&normalised(&p.vector)));
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT chunk_id, embedding FROM chunk_vectors WHERE space_id = ? AND (? IS NULL OR document_id = ?)",
        )
        .bind(query.space_id.to_string())
        .bind(query.document_id.map(|d| d.to_string()))
        .bind(query.document_id.map(|d| d.to_string()))
        .fetch_all(&self.pool)
        .await?;
        let q = normalised(&query.vector);
        let limit = query.limit;
        let hits = tokio::task::spawn_blocking(move || {
            let mut scored: Vec<(f32, String)> = rows
                .into_iter()
                .map(|(id, blob)| (dot(&q, &blob), id))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            scored.truncate(limit);
            scored
        })
        .await
        .map_err(|e| VectorError::Other(anyhow::anyhow!("scoring task failed: {e}")))?;
        Ok(hits
            .into_iter()
            .filter_map(|(score, id)| {
                Uuid::parse_str(&id)
                    .ok()
                    .map(|chunk_id| VectorHit { chunk_id, score })
            })
            .collect())
    }

    async fn delete_document(&self, space_id: Uuid, document_id: Uuid) -> Result<(), VectorError> {
        sqlx::query("DELETE FROM chunk_vectors WHERE space_id = ? AND document_id = ?")
            .bind(space_id.to_string())
            .bind(document_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        sqlx::query("DELETE FROM chunk_vectors WHERE space_id = ?")
            .bind(space_id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_into_the_same_dot_product() {
        let a = normalised(&[1.0, 2.0, 2.0]);
        let b = normalised(&[2.0, 1.0, 2.0]);
        let expected: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &to_blob(&b)) - expected).abs() < 1e-6);
        assert!((dot(&a, &to_blob(&a)) - 1.0).abs() < 1e-6);
    }
}
