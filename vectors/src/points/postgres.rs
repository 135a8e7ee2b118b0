//! Points in PostgreSQL: one pgvector table per dimension (`points_<d>`, created on first use)
//! with an HNSW cosine index, so spaces with different vector sizes can each be indexed. The
//! payload is `jsonb`; filters are containment (`@>`) on scalar values, which is equality.

use super::{
    ranked, unknown_filter_key, validate_batch, validate_query, validate_vector, Point, PointError,
    PointId, PointQuery, PointStore, PointsInfo, ScoredPoint,
};
use crate::vector::{hnsw_search_transaction, literal};
use serde_json::{Map, Value};
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Mutex;
use uuid::Uuid;

/// Points in PostgreSQL with pgvector.
pub struct PgPointStore {
    pool: PgPool,
    ef_search: u32,
    /// Dimension tables known to exist, so `CREATE TABLE IF NOT EXISTS` runs once per process.
    tables: Mutex<HashSet<usize>>,
}

fn table(dims: usize) -> String {
    format!("points_{dims}")
}

/// Parses pgvector's text form `[1,2,3]`.
fn parse_vector(text: &str) -> Result<Vec<f32>, PointError> {
    text.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|x| {
            x.trim().parse::<f32>().map_err(|e| {
                PointError::Other(anyhow::anyhow!("stored vector is not numeric: {e}"))
            })
        })
        .collect()
}

/// A stored payload back as a JSON object (they are only ever written as objects).
fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

impl PgPointStore {
    /// Creates the dimensions table if missing. `ef_search` trades recall for speed.
    pub async fn open(pool: PgPool, ef_search: u32) -> Result<Self, PointError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS point_spaces (space_id UUID PRIMARY KEY, dimensions INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        Ok(Self {
            pool,
            ef_search,
            tables: Mutex::new(HashSet::new()),
        })
    }

    async fn ensure_table(&self, dims: usize) -> Result<(), PointError> {
        if self
            .tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&dims)
        {
            return Ok(());
        }
        let t = table(dims);
        // Concurrent first uses may race on the catalog; an advisory lock per table serialises them.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&t)
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS {t} (space_id UUID NOT NULL, id TEXT COLLATE \"C\" NOT NULL, \
             embedding vector({dims}) NOT NULL, payload JSONB NOT NULL, PRIMARY KEY (space_id, id))"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!(
            "CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dims);
        Ok(())
    }

    async fn dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        let d: Option<i32> =
            sqlx::query_scalar("SELECT dimensions FROM point_spaces WHERE space_id = $1")
                .bind(space)
                .fetch_optional(&self.pool)
                .await?;
        Ok(d.map(|d| d as usize))
    }
}

#[async_trait::async_trait]
impl PointStore for PgPointStore {
    fn backend_name(&self) -> &'static str {
        "points-pgvector"
    }

    async fn space_dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        self.dimensions(space).await
    }

    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError> {
        let dims = validate_batch(&points)?;
        let fixed = match self.dimensions(space).await? {
            Some(d) => d,
            None => {
                sqlx::query(
                    "INSERT INTO point_spaces (space_id, dimensions) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                )
                .bind(space)
                .bind(dims as i32)
                .execute(&self.pool)
                .await?;
                self.dimensions(space).await?.unwrap_or(dims)
            }
        };
        validate_vector(&points[0].vector, Some(fixed))?;
        self.ensure_table(dims).await?;
        let mut tx = self.pool.begin().await?;
        for batch in points.chunks(200) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(format!(
                "INSERT INTO {} (space_id, id, embedding, payload) ",
                table(dims)
            ));
            q.push_values(batch, |mut b, p| {
                b.push_bind(space)
                    .push_bind(p.id.as_str().to_string())
                    .push_bind(literal(&p.vector))
                    .push_unseparated("::vector")
                    .push_bind(Value::Object(p.payload.clone()).to_string())
                    .push_unseparated("::jsonb");
            });
            q.push(
                " ON CONFLICT (space_id, id) DO UPDATE SET embedding = EXCLUDED.embedding, payload = EXCLUDED.payload",
            );
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(points.len())
    }

    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError> {
        validate_query(&query)?;
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(Vec::new());
        };
        validate_vector(&query.vector, Some(dims))?;
        self.ensure_table(dims).await?;
        let mut tx = hnsw_search_transaction(&self.pool, self.ef_search).await?;
        let filter =
            (!query.filter.is_empty()).then(|| Value::Object(query.filter.clone()).to_string());
        let rows: Vec<(String, f64, String)> = sqlx::query_as(&format!(
            "SELECT id, 1 - (embedding <=> $1::vector) AS score, payload::text FROM {} \
             WHERE space_id = $2 AND ($3::text IS NULL OR payload @> $3::jsonb) \
             ORDER BY embedding <=> $1::vector LIMIT $4",
            table(dims)
        ))
        .bind(literal(&query.vector))
        .bind(space)
        .bind(filter)
        .bind(query.limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // A secondary ORDER BY key would stop PostgreSQL using the HNSW index; ties are ordered here.
        let hits = ranked(
            rows.into_iter()
                .map(|(id, score, payload)| ScoredPoint {
                    id: PointId::from_stored(id),
                    score: score as f32,
                    payload: object(&payload),
                })
                .collect(),
            query.min_score,
        );
        if hits.is_empty() && !query.filter.is_empty() {
            let keys: Vec<String> = query.filter.keys().cloned().collect();
            let present: Vec<String> = sqlx::query_scalar(&format!(
                "SELECT k FROM unnest($2::text[]) AS k WHERE EXISTS \
                 (SELECT 1 FROM {} WHERE space_id = $1 AND payload ? k)",
                table(dims)
            ))
            .bind(space)
            .bind(&keys)
            .fetch_all(&self.pool)
            .await?;
            unknown_filter_key(&query.filter, |k| present.iter().any(|p| p == k))?;
        }
        Ok(hits)
    }

    async fn get(&self, space: Uuid, id: &PointId) -> Result<Option<Point>, PointError> {
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(None);
        };
        self.ensure_table(dims).await?;
        let row: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT embedding::text, payload::text FROM {} WHERE space_id = $1 AND id = $2",
            table(dims)
        ))
        .bind(space)
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(vector, payload)| {
            Ok(Point {
                id: id.clone(),
                vector: parse_vector(&vector)?,
                payload: object(&payload),
            })
        })
        .transpose()
    }

    async fn delete(&self, space: Uuid, id: &PointId) -> Result<bool, PointError> {
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(false);
        };
        self.ensure_table(dims).await?;
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE space_id = $1 AND id = $2",
            table(dims)
        ))
        .bind(space)
        .bind(id.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn info(&self, space: Uuid) -> Result<PointsInfo, PointError> {
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(PointsInfo {
                points: 0,
                unindexed: 0,
                dimensions: None,
                index: "hnsw",
            });
        };
        self.ensure_table(dims).await?;
        let points: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {} WHERE space_id = $1",
            table(dims)
        ))
        .bind(space)
        .fetch_one(&self.pool)
        .await?;
        // pgvector maintains its HNSW index on every insert: it is always ready.
        Ok(PointsInfo {
            points: points as u64,
            unindexed: 0,
            dimensions: Some(dims),
            index: "hnsw",
        })
    }

    async fn delete_space(&self, space: Uuid) -> Result<(), PointError> {
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(());
        };
        self.ensure_table(dims).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("DELETE FROM {} WHERE space_id = $1", table(dims)))
            .bind(space)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM point_spaces WHERE space_id = $1")
            .bind(space)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgvector_text_parses_back_to_the_same_values() {
        let v = vec![0.25f32, -1.5, 3.0e-7];
        assert_eq!(parse_vector(&literal(&v)).unwrap(), v);
        assert!(parse_vector("[1,x]").is_err());
    }
}
