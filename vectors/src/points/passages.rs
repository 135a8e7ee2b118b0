//! Passage vectors on the embedded points engine: rows durable in SQLite, each space's vectors
//! in memory, searched by an exact scan while small and by an HNSW graph (built and kept up to
//! date in the background) once a space reaches the graph minimum. A search never misses an
//! acknowledged vector: the points the graph has not reached yet are scanned exactly.
//!
//! Each Kenning space's passages live in a points namespace of their own, a v5 UUID of the space
//! id, so they never mix with the points a client stores in that space through the points API.

use super::{Point, PointError, PointId, PointQuery, PointStore, SqlitePointStore, MAX_BATCH};
use crate::vector::{
    validate, Chunks, VectorError, VectorHit, VectorPoint, VectorQuery, VectorStore,
};
use serde_json::{Map, Value};
use sqlx::SqlitePool;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Namespace of the v5 UUIDs that key each space's passage vectors in the points tables.
const PASSAGES: Uuid = Uuid::from_u128(0x6b65_6e6e_696e_6750_6173_7361_6765_7331);
/// The payload key holding a passage's document id.
const DOCUMENT: &str = "document_id";

/// Passage vectors on the embedded points engine.
pub struct EmbeddedVectorStore {
    points: Arc<SqlitePointStore>,
    pool: SqlitePool,
    dimensions: usize,
}

impl From<PointError> for VectorError {
    fn from(e: PointError) -> Self {
        match e {
            PointError::Invalid(_, m) => VectorError::Invalid(m),
            PointError::Unavailable(m) => VectorError::Unavailable(m),
            PointError::Other(e) => VectorError::Other(e),
        }
    }
}

/// The points namespace of one space's passages.
fn namespace(space: Uuid) -> Uuid {
    Uuid::new_v5(&PASSAGES, space.as_bytes())
}

impl EmbeddedVectorStore {
    /// Opens the store on the points engine, first moving any vectors an older version kept in
    /// the exact-scan table (`chunk_vectors`) over; that table is dropped once they all moved.
    pub async fn open(
        points: Arc<SqlitePointStore>,
        pool: SqlitePool,
        dimensions: usize,
    ) -> Result<Self, VectorError> {
        let store = Self {
            points,
            pool,
            dimensions,
        };
        store.adopt_exact_table().await?;
        Ok(store)
    }

    async fn adopt_exact_table(&self) -> Result<(), VectorError> {
        let old: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'chunk_vectors'",
        )
        .fetch_optional(&self.pool)
        .await?;
        if old.is_none() {
            return Ok(());
        }
        let spaces: Vec<String> = sqlx::query_scalar("SELECT DISTINCT space_id FROM chunk_vectors")
            .fetch_all(&self.pool)
            .await?;
        let mut moved = 0usize;
        for space in spaces {
            let Ok(space_id) = Uuid::parse_str(&space) else {
                continue;
            };
            let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT chunk_id, document_id, embedding FROM chunk_vectors WHERE space_id = ?",
            )
            .bind(&space)
            .fetch_all(&self.pool)
            .await?;
            let points: Vec<VectorPoint> = rows
                .into_iter()
                .filter_map(|(chunk, document, blob)| {
                    Some(VectorPoint {
                        chunk_id: Uuid::parse_str(&chunk).ok()?,
                        space_id,
                        document_id: Uuid::parse_str(&document).ok()?,
                        vector: crate::vector::from_blob(&blob),
                        text: String::new(),
                    })
                })
                // Vectors of another model's length are left behind: the space is re-embedded.
                .filter(|p| p.vector.len() == self.dimensions)
                .collect();
            moved += points.len();
            self.upsert(points).await?;
        }
        sqlx::query("DROP TABLE chunk_vectors")
            .execute(&self.pool)
            .await?;
        tracing::info!(
            vectors = moved,
            "passage vectors moved from the exact-scan table to the embedded index"
        );
        Ok(())
    }
}

#[async_trait::async_trait]
impl VectorStore for EmbeddedVectorStore {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    async fn ping(&self) -> Result<(), VectorError> {
        sqlx::query("SELECT 1 FROM points LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn upsert(&self, points: Vec<VectorPoint>) -> Result<(), VectorError> {
        let mut by_space: BTreeMap<Uuid, Vec<Point>> = BTreeMap::new();
        for p in points {
            validate(&p.vector, self.dimensions)?;
            let mut payload = Map::new();
            payload.insert(DOCUMENT.into(), Value::String(p.document_id.to_string()));
            by_space.entry(p.space_id).or_default().push(Point {
                id: PointId::from_uuid(p.chunk_id),
                vector: p.vector,
                payload,
            });
        }
        for (space, mut points) in by_space {
            while !points.is_empty() {
                let rest = points.split_off(points.len().min(MAX_BATCH));
                self.points.upsert(namespace(space), points).await?;
                points = rest;
            }
        }
        Ok(())
    }

    async fn search(&self, query: VectorQuery) -> Result<Vec<VectorHit>, VectorError> {
        validate(&query.vector, self.dimensions)?;
        let mut filter = Map::new();
        if let Some(d) = query.document_id {
            filter.insert(DOCUMENT.into(), Value::String(d.to_string()));
        }
        let hits = self
            .points
            .search_any_depth(
                namespace(query.space_id),
                PointQuery {
                    vector: query.vector,
                    limit: query.limit.max(1),
                    min_score: None,
                    filter,
                },
            )
            .await?;
        Ok(hits
            .into_iter()
            .filter_map(|h| {
                Uuid::parse_str(h.id.as_str())
                    .ok()
                    .map(|chunk_id| VectorHit {
                        chunk_id,
                        score: h.score,
                    })
            })
            .collect())
    }

    async fn delete_chunks(
        &self,
        space_id: Uuid,
        document_id: Uuid,
        which: Chunks<'_>,
    ) -> Result<(), VectorError> {
        let value = Value::String(document_id.to_string());
        let (listed, only): (std::collections::HashSet<PointId>, bool) = match which {
            Chunks::Only([]) => return Ok(()),
            Chunks::Only(ids) => (ids.iter().map(|id| PointId::from_uuid(*id)).collect(), true),
            Chunks::AllBut(ids) => (
                ids.iter().map(|id| PointId::from_uuid(*id)).collect(),
                false,
            ),
        };
        self.points
            .delete_where(namespace(space_id), DOCUMENT, &value, move |id| {
                listed.contains(id) == only
            })
            .await?;
        Ok(())
    }

    async fn delete_space(&self, space_id: Uuid) -> Result<(), VectorError> {
        Ok(self.points.delete_space(namespace(space_id)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

    async fn pool(dir: &std::path::Path) -> SqlitePool {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("v.db"))
            .create_if_missing(true);
        SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("sqlite")
    }

    async fn store(
        pool: &SqlitePool,
        graph_min: usize,
    ) -> (EmbeddedVectorStore, Arc<SqlitePointStore>) {
        let engine = Arc::new(
            SqlitePointStore::open(pool.clone(), 128, graph_min)
                .await
                .expect("points tables"),
        );
        let store = EmbeddedVectorStore::open(engine.clone(), pool.clone(), 3)
            .await
            .expect("vector store");
        (store, engine)
    }

    fn point(space: Uuid, document: Uuid, vector: [f32; 3]) -> VectorPoint {
        VectorPoint {
            chunk_id: Uuid::now_v7(),
            space_id: space,
            document_id: document,
            vector: vector.to_vec(),
            text: String::new(),
        }
    }

    fn query(space: Uuid, vector: [f32; 3], document: Option<Uuid>, limit: usize) -> VectorQuery {
        VectorQuery {
            space_id: space,
            vector: vector.to_vec(),
            document_id: document,
            limit,
        }
    }

    #[tokio::test]
    async fn passages_are_found_filtered_deleted_and_kept_apart_from_client_points() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(dir.path()).await;
        let (store, engine) = store(&pool, 20_000).await;
        let (space, other) = (Uuid::now_v7(), Uuid::now_v7());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let near = point(space, a, [1.0, 0.0, 0.0]);
        let mid = point(space, b, [0.8, 0.6, 0.0]);
        let far = point(space, b, [0.0, 0.0, 1.0]);
        let elsewhere = point(other, a, [1.0, 0.0, 0.0]);
        store
            .upsert(vec![
                near.clone(),
                mid.clone(),
                far.clone(),
                elsewhere.clone(),
            ])
            .await
            .expect("upsert");

        let ids = |hits: Vec<VectorHit>| hits.into_iter().map(|h| h.chunk_id).collect::<Vec<_>>();
        let found = store
            .search(query(space, [1.0, 0.0, 0.0], None, 10))
            .await
            .expect("search");
        assert_eq!(ids(found), [near.chunk_id, mid.chunk_id, far.chunk_id]);
        let only_b = store
            .search(query(space, [1.0, 0.0, 0.0], Some(b), 10))
            .await
            .expect("filtered");
        assert_eq!(ids(only_b), [mid.chunk_id, far.chunk_id]);
        // The points API's view of the same space holds only what clients put there.
        assert_eq!(engine.info(space).await.expect("info").points, 0);

        store
            .delete_document(space, b)
            .await
            .expect("delete document");
        let left = store
            .search(query(space, [0.0, 0.0, 1.0], None, 10))
            .await
            .expect("search");
        assert_eq!(ids(left), [near.chunk_id]);
        let untouched = store
            .search(query(other, [1.0, 0.0, 0.0], None, 10))
            .await
            .expect("search");
        assert_eq!(
            ids(untouched),
            [elsewhere.chunk_id],
            "another space is not touched"
        );

        store.delete_space(space).await.expect("delete space");
        assert!(store
            .search(query(space, [1.0, 0.0, 0.0], None, 10))
            .await
            .expect("search")
            .is_empty());
        let mut short = query(space, [1.0, 0.0, 0.0], None, 10);
        short.vector.pop();
        let err = store.search(short).await.unwrap_err();
        assert!(matches!(err, VectorError::Invalid(_)), "{err}");
    }

    #[tokio::test]
    async fn deep_candidate_lists_come_from_the_graph_once_a_space_is_large() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(dir.path()).await;
        let (store, engine) = store(&pool, 200).await;
        let (space, document) = (Uuid::now_v7(), Uuid::now_v7());
        let mut rng = fastrand::Rng::with_seed(7);
        let points: Vec<VectorPoint> = (0..600)
            .map(|_| point(space, document, [rng.f32() + 0.1, rng.f32(), rng.f32()]))
            .collect();
        store.upsert(points.clone()).await.expect("upsert");
        let ns = namespace(space);
        for _ in 0..600 {
            if engine.info(ns).await.expect("info").index == "hnsw" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(engine.info(ns).await.expect("info").index, "hnsw");
        // More than the points API's cap of 50: hybrid search fuses deeper lists.
        let hits = store
            .search(query(space, [1.0, 0.2, 0.3], None, 120))
            .await
            .expect("search");
        assert_eq!(hits.len(), 120);
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
    }

    #[tokio::test]
    async fn vectors_of_the_exact_scan_table_move_over_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = pool(dir.path()).await;
        sqlx::query(
            "CREATE TABLE chunk_vectors (chunk_id TEXT PRIMARY KEY, space_id TEXT NOT NULL, \
             document_id TEXT NOT NULL, embedding BLOB NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("old table");
        let (space, document, chunk) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let stale = Uuid::now_v7();
        for (id, vector) in [(chunk, vec![0.0f32, 1.0, 0.0]), (stale, vec![1.0f32, 0.0])] {
            sqlx::query("INSERT INTO chunk_vectors VALUES (?, ?, ?, ?)")
                .bind(id.to_string())
                .bind(space.to_string())
                .bind(document.to_string())
                .bind(crate::vector::to_blob(&vector))
                .execute(&pool)
                .await
                .expect("old row");
        }
        let (store, _) = store(&pool, 20_000).await;
        let hits = store
            .search(query(space, [0.0, 1.0, 0.0], None, 10))
            .await
            .expect("search");
        assert_eq!(
            hits.len(),
            1,
            "the 2-d vector of another model stays behind"
        );
        assert_eq!(hits[0].chunk_id, chunk);
        let old: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'chunk_vectors'",
        )
        .fetch_optional(&pool)
        .await
        .expect("schema");
        assert_eq!(old, None, "the old table is gone");
        // Opening again finds nothing to move and keeps what is there.
        let (again, _) = self::store(&pool, 20_000).await;
        assert_eq!(
            again
                .search(query(space, [0.0, 1.0, 0.0], None, 10))
                .await
                .expect("search")
                .len(),
            1
        );
    }
}
