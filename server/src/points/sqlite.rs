//! Points in the embedded SQLite database. Rows are the durable copy; each space's vectors are
//! also held in memory, normalised and contiguous, once the space is first searched, so a search
//! is one exact scan of RAM rather than a read of every row. Memory is what the vectors take
//! (points × dimensions × 4 bytes: 100,000 × 1,024 is 400 MB). Writes hold the space's lock across
//! the database write and the in-memory update, so the two never disagree.

use super::{
    dot, matches_filter, normalised, validate_batch, validate_query, validate_vector, Point,
    PointError, PointId, PointQuery, PointStore, ScoredPoint,
};
use serde_json::{Map, Value};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::RwLock;
use uuid::Uuid;

/// Scans below this many multiply-adds run inline; larger ones on the blocking pool.
const INLINE_SCAN: usize = 1 << 20;

/// One space's points in memory, in load order; `position` finds a point's row.
#[derive(Default)]
struct SpaceIndex {
    dimensions: usize,
    ids: Vec<PointId>,
    vectors: Vec<f32>,
    payloads: Vec<Map<String, Value>>,
    position: HashMap<PointId, usize>,
}

impl SpaceIndex {
    fn put(&mut self, id: PointId, vector: &[f32], payload: Map<String, Value>) {
        let unit = normalised(vector);
        if let Some(&i) = self.position.get(&id) {
            self.vectors[i * self.dimensions..(i + 1) * self.dimensions].copy_from_slice(&unit);
            self.payloads[i] = payload;
        } else {
            self.position.insert(id.clone(), self.ids.len());
            self.ids.push(id);
            self.vectors.extend_from_slice(&unit);
            self.payloads.push(payload);
        }
    }

    fn remove(&mut self, id: &PointId) {
        let Some(i) = self.position.remove(id) else {
            return;
        };
        let last = self.ids.len() - 1;
        let d = self.dimensions;
        if i != last {
            self.vectors.copy_within(last * d..(last + 1) * d, i * d);
            self.ids.swap(i, last);
            self.payloads.swap(i, last);
            self.position.insert(self.ids[i].clone(), i);
        }
        self.vectors.truncate(last * d);
        self.ids.truncate(last);
        self.payloads.truncate(last);
    }

    fn search(&self, query: &PointQuery) -> Vec<ScoredPoint> {
        let q = normalised(&query.vector);
        let min = query.min_score.unwrap_or(f32::NEG_INFINITY);
        let mut scored: Vec<(f32, usize)> = self
            .vectors
            .chunks_exact(self.dimensions.max(1))
            .enumerate()
            .filter(|(i, _)| {
                query.filter.is_empty() || matches_filter(&self.payloads[*i], &query.filter)
            })
            .map(|(i, v)| (dot(&q, v), i))
            .filter(|(s, _)| *s >= min)
            .collect();
        let order = |a: &(f32, usize), b: &(f32, usize)| {
            b.0.total_cmp(&a.0)
                .then_with(|| self.ids[a.1].cmp(&self.ids[b.1]))
        };
        if scored.len() > query.limit {
            scored.select_nth_unstable_by(query.limit, order);
            scored.truncate(query.limit);
        }
        scored.sort_by(order);
        scored
            .into_iter()
            .map(|(score, i)| ScoredPoint {
                id: self.ids[i].clone(),
                score,
                payload: self.payloads[i].clone(),
            })
            .collect()
    }
}

/// A space's in-memory index, `None` until first loaded.
type Slot = Arc<RwLock<Option<SpaceIndex>>>;

/// Points in the embedded SQLite database with an in-memory exact index per space.
pub struct SqlitePointStore {
    pool: SqlitePool,
    spaces: Mutex<HashMap<Uuid, Slot>>,
}

fn to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn from_blob(b: &[u8]) -> Vec<f32> {
    b.as_chunks::<4>()
        .0
        .iter()
        .map(|c| f32::from_le_bytes(*c))
        .collect()
}

fn payload_from(text: &str) -> Result<Map<String, Value>, PointError> {
    serde_json::from_str(text)
        .map_err(|e| PointError::Other(anyhow::anyhow!("stored payload is not JSON: {e}")))
}

impl SqlitePointStore {
    /// Creates the tables if missing.
    pub async fn open(pool: SqlitePool) -> Result<Self, PointError> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS point_spaces (space_id TEXT PRIMARY KEY, dimensions INTEGER NOT NULL)",
        )
        .execute(&pool)
        .await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS points (space_id TEXT NOT NULL, id TEXT NOT NULL, \
             vector BLOB NOT NULL, payload TEXT NOT NULL, PRIMARY KEY (space_id, id)) WITHOUT ROWID",
        )
        .execute(&pool)
        .await?;
        Ok(Self {
            pool,
            spaces: Mutex::new(HashMap::new()),
        })
    }

    fn slot(&self, space: Uuid) -> Slot {
        let mut spaces = self.spaces.lock().unwrap_or_else(|p| p.into_inner());
        spaces.entry(space).or_default().clone()
    }

    async fn dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        let d: Option<i64> =
            sqlx::query_scalar("SELECT dimensions FROM point_spaces WHERE space_id = ?")
                .bind(space.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(d.map(|d| d as usize))
    }

    async fn load(&self, space: Uuid) -> Result<SpaceIndex, PointError> {
        let mut index = SpaceIndex {
            dimensions: self.dimensions(space).await?.unwrap_or(0),
            ..SpaceIndex::default()
        };
        let rows: Vec<(String, Vec<u8>, String)> =
            sqlx::query_as("SELECT id, vector, payload FROM points WHERE space_id = ?")
                .bind(space.to_string())
                .fetch_all(&self.pool)
                .await?;
        index.ids.reserve(rows.len());
        index.vectors.reserve(rows.len() * index.dimensions);
        for (id, blob, payload) in rows {
            index.put(
                PointId::from_stored(id),
                &from_blob(&blob),
                payload_from(&payload)?,
            );
        }
        Ok(index)
    }
}

#[async_trait::async_trait]
impl PointStore for SqlitePointStore {
    fn backend_name(&self) -> &'static str {
        "sqlite-exact"
    }

    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError> {
        let dims = validate_batch(&points)?;
        let slot = self.slot(space);
        let mut index = slot.write().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT OR IGNORE INTO point_spaces (space_id, dimensions) VALUES (?, ?)")
            .bind(space.to_string())
            .bind(dims as i64)
            .execute(&mut *tx)
            .await?;
        let fixed: i64 =
            sqlx::query_scalar("SELECT dimensions FROM point_spaces WHERE space_id = ?")
                .bind(space.to_string())
                .fetch_one(&mut *tx)
                .await?;
        validate_vector(&points[0].vector, Some(fixed as usize))?;
        let mut texts = Vec::with_capacity(points.len());
        for p in &points {
            texts.push(
                serde_json::to_string(&p.payload)
                    .map_err(|e| PointError::Other(anyhow::Error::new(e)))?,
            );
        }
        for (batch, texts) in points.chunks(200).zip(texts.chunks(200)) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT OR REPLACE INTO points (space_id, id, vector, payload) ",
            );
            q.push_values(batch.iter().zip(texts), |mut b, (p, text)| {
                b.push_bind(space.to_string())
                    .push_bind(p.id.as_str().to_string())
                    .push_bind(to_blob(&p.vector))
                    .push_bind(text.clone());
            });
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let n = points.len();
        if let Some(index) = index.as_mut() {
            index.dimensions = dims;
            for p in points {
                index.put(p.id, &p.vector, p.payload);
            }
        }
        Ok(n)
    }

    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError> {
        validate_query(&query)?;
        let slot = self.slot(space);
        if slot.read().await.is_none() {
            let mut w = slot.write().await;
            if w.is_none() {
                *w = Some(self.load(space).await?);
            }
        }
        let guard = slot.read_owned().await;
        let Some(index) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        if index.dimensions > 0 {
            validate_vector(&query.vector, Some(index.dimensions))?;
        }
        if index.ids.is_empty() {
            return Ok(Vec::new());
        }
        if index.vectors.len() < INLINE_SCAN {
            return Ok(index.search(&query));
        }
        tokio::task::spawn_blocking(move || {
            guard.as_ref().map(|i| i.search(&query)).unwrap_or_default()
        })
        .await
        .map_err(|e| PointError::Other(anyhow::anyhow!("scan task failed: {e}")))
    }

    async fn get(&self, space: Uuid, id: &PointId) -> Result<Option<Point>, PointError> {
        let row: Option<(Vec<u8>, String)> =
            sqlx::query_as("SELECT vector, payload FROM points WHERE space_id = ? AND id = ?")
                .bind(space.to_string())
                .bind(id.as_str())
                .fetch_optional(&self.pool)
                .await?;
        row.map(|(blob, payload)| {
            Ok(Point {
                id: id.clone(),
                vector: from_blob(&blob),
                payload: payload_from(&payload)?,
            })
        })
        .transpose()
    }

    async fn delete(&self, space: Uuid, id: &PointId) -> Result<bool, PointError> {
        let slot = self.slot(space);
        let mut index = slot.write().await;
        let gone = sqlx::query("DELETE FROM points WHERE space_id = ? AND id = ?")
            .bind(space.to_string())
            .bind(id.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected()
            > 0;
        if let Some(index) = index.as_mut() {
            index.remove(id);
        }
        Ok(gone)
    }

    async fn delete_space(&self, space: Uuid) -> Result<(), PointError> {
        let slot = self.slot(space);
        let mut index = slot.write().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM points WHERE space_id = ?")
            .bind(space.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM point_spaces WHERE space_id = ?")
            .bind(space.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        *index = None;
        drop(index);
        self.spaces
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&space);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(n: u64) -> PointId {
        PointId::from_json(&json!(n)).unwrap()
    }

    #[test]
    fn removing_keeps_the_other_points_findable() {
        let mut index = SpaceIndex {
            dimensions: 2,
            ..SpaceIndex::default()
        };
        index.put(id(1), &[1.0, 0.0], Map::new());
        index.put(id(2), &[0.0, 1.0], Map::new());
        index.put(id(3), &[1.0, 1.0], Map::new());
        index.remove(&id(1));
        index.put(id(3), &[0.0, 2.0], Map::new());
        let query = PointQuery {
            vector: vec![0.0, 1.0],
            limit: 10,
            min_score: None,
            filter: Map::new(),
        };
        let hits = index.search(&query);
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        // 2 and 3 are now the same direction: equal scores, broken by id.
        assert_eq!(ids, ["2", "3"]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert_eq!(index.vectors.len(), 4);
    }
}
