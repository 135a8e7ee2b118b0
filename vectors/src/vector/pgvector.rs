//! pgvector: a `vector(N)` column with an HNSW index (cosine) beside the metadata tables.

use super::{validate, Chunks, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore};
use sqlx::PgPool;
use uuid::Uuid;

/// Vectors in PostgreSQL with the pgvector extension.
pub struct PgVectorStore {
    pool: PgPool,
    dimensions: usize,
    ef_search: u32,
}

impl PgVectorStore {
    /// Creates the extension, table and index if missing. `ef_search` trades recall for speed;
    /// iterative scans keep filtered queries returning `limit` rows.
    pub async fn open(
        pool: PgPool,
        dimensions: usize,
        ef_search: u32,
    ) -> Result<Self, VectorError> {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector")
            .execute(&pool)
            .await?;
        // A column of another length holds another model's vectors, which this process can
        // never search; every space they belong to is queued for re-embedding at start.
        let existing: Option<(i32,)> = sqlx::query_as(
            "SELECT atttypmod FROM pg_attribute \
             WHERE attrelid = to_regclass('chunk_vectors') AND attname = 'embedding'",
        )
        .fetch_optional(&pool)
        .await?;
        if let Some((old,)) = existing {
            if usize::try_from(old).ok() != Some(dimensions) {
                tracing::warn!(
                    old,
                    new = dimensions,
                    "the vector table holds another model's vectors; recreating it"
                );
                sqlx::query("DROP TABLE chunk_vectors")
                    .execute(&pool)
                    .await?;
            }
        }
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS chunk_vectors (\
               chunk_id UUID PRIMARY KEY, space_id UUID NOT NULL, document_id UUID NOT NULL, \
               embedding vector({dimensions}) NOT NULL)"
        ))
        .execute(&pool)
        .await?;
        sqlx::query("CREATE INDEX IF NOT EXISTS chunk_vectors_space ON chunk_vectors (space_id, document_id)")
            .execute(&pool)
            .await?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS chunk_vectors_hnsw ON chunk_vectors USING hnsw (embedding vector_cosine_ops)",
        )
        .execute(&pool)
        .await?;
        Ok(Self {
            pool,
            dimensions,
            ef_search,
        })
    }
}

/// A transaction set up for one HNSW search: `ef_search` trades recall for speed, and iterative
/// scans keep filtered queries returning `limit` rows.
pub(crate) async fn hnsw_search_transaction(
    pool: &PgPool,
    ef_search: u32,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "SET LOCAL hnsw.ef_search = {}",
        ef_search.clamp(1, 1000)
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = relaxed_order")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// pgvector's text form: `[0.1,0.2,...]`.
pub(crate) fn literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

#[async_trait::async_trait]
impl VectorStore for PgVectorStore {
    fn backend_name(&self) -> &'static str {
        "pgvector"
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
        let mut tx = self.pool.begin().await?;
        for batch in points.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO chunk_vectors (chunk_id, space_id, document_id, embedding) ",
            );
            q.push_values(batch, |mut b, p| {
                b.push_bind(p.chunk_id)
                    .push_bind(p.space_id)
                    .push_bind(p.document_id)
                    .push_bind(literal(&p.vector))
                    .push_unseparated("::vector");
            });
            q.push(" ON CONFLICT (chunk_id) DO UPDATE SET embedding = EXCLUDED.embedding");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        let mut tx = hnsw_search_transaction(&self.pool, self.ef_search).await?;
        let rows: Vec<(Uuid, f64)> = sqlx::query_as(
            "SELECT chunk_id, 1 - (embedding <=> $1::vector) AS score FROM chunk_vectors \
             WHERE space_id = $2 AND ($3::uuid IS NULL OR document_id = $3) \
             ORDER BY embedding <=> $1::vector LIMIT $4",
        )
        .bind(literal(&query.vector))
        .bind(query.space_id)
        .bind(query.document_id)
        .bind(i64::try_from(query.limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .map(|(chunk_id, score)| VectorHit {
                chunk_id,
                score: score as f32,
            })
            .collect())
    }

    async fn delete_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        which: Chunks<'_>,
    ) -> Result<(), VectorError> {
        let (sql, ids) = match which {
            Chunks::Only([]) => return Ok(()),
            Chunks::Only(ids) => (
                "DELETE FROM chunk_vectors WHERE space_id = $1 AND document_id = $2 \
                 AND chunk_id = ANY($3)",
                ids,
            ),
            Chunks::AllBut(ids) => (
                "DELETE FROM chunk_vectors WHERE space_id = $1 AND document_id = $2 \
                 AND NOT (chunk_id = ANY($3))",
                ids,
            ),
        };
        sqlx::query(sql)
            .bind(space_id)
            .bind(document_id)
            .bind(ids)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        sqlx::query("DELETE FROM chunk_vectors WHERE space_id = $1")
            .bind(space_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
