//! Points in the embedded SQLite database. Rows are the durable copy; each space's vectors are
//! also held in memory, normalised and contiguous, once the space is first used, so a search
//! never reads every row. Small spaces are searched by exact scan. A space with
//! enough live points (`--points-graph-min`, 20,000 by default) also gets an HNSW graph, built in the background from a
//! snapshot (exact scans answer meanwhile) and then kept up to date on every write.
//!
//! Memory is what the vectors take, twice once the graph exists (the graph keeps its own copy):
//! 100,000 × 1,024 dimensions is 400 MB, 800 MB with the graph. Writes hold the space's lock
//! across the database write and the in-memory update, so the two never disagree.

use super::{
    dot, matches_filter, normalised, unknown_filter_key, validate_batch, validate_query,
    validate_vector, Point, PointError, PointId, PointQuery, PointStore, PointsInfo, ScoredPoint,
};
use crate::vector::{from_blob, to_blob};
use hnsw_rs::prelude::{Distance, Hnsw};
use serde_json::{Map, Value};
use sqlx::SqlitePool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::RwLock;
use uuid::Uuid;

/// Scans below this many multiply-adds run inline; larger ones on the blocking pool.
const INLINE_SCAN: usize = 1 << 20;
/// Links per graph node.
const HNSW_LINKS: usize = 16;
/// Candidates considered while inserting.
const HNSW_EF_BUILD: usize = 128;
/// Graph layers.
const HNSW_LAYERS: usize = 16;

/// Cosine distance of unit vectors, with the vectorised dot product.
#[derive(Clone, Copy, Default)]
struct UnitCosine;

impl Distance<f32> for UnitCosine {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

/// An HNSW graph over the slots `0..upto` of one epoch of a space's slot numbers. Slots past
/// `upto` (written since) are searched by exact scan until the space's indexer adds them.
struct Graph {
    hnsw: Hnsw<'static, f32, UnitCosine>,
    upto: AtomicUsize,
    epoch: u64,
}

/// One space's points in memory. Slots are stable: replacing or deleting a point only marks its
/// slot dead, so a graph node never changes vector; compaction renumbers slots and drops the
/// graph. `position` finds a live point's slot.
#[derive(Default)]
struct SpaceIndex {
    dimensions: usize,
    ids: Vec<PointId>,
    alive: Vec<bool>,
    vectors: Vec<f32>,
    payloads: Vec<Map<String, Value>>,
    position: HashMap<PointId, usize>,
    /// Bumped by every compaction; a graph built for an older epoch is thrown away.
    epoch: u64,
    graph: Option<Arc<Graph>>,
    building: bool,
    /// Whether a task is adding the slots past the graph's `upto` to it.
    indexing: bool,
    /// Live points from which the space gets a graph.
    graph_min: usize,
}

impl SpaceIndex {
    fn live(&self) -> usize {
        self.position.len()
    }

    fn vector(&self, slot: usize) -> &[f32] {
        &self.vectors[slot * self.dimensions..(slot + 1) * self.dimensions]
    }

    fn put(&mut self, id: PointId, vector: &[f32], payload: Map<String, Value>) {
        self.remove(&id);
        let slot = self.ids.len();
        self.position.insert(id.clone(), slot);
        self.ids.push(id);
        self.alive.push(true);
        self.vectors.extend_from_slice(&normalised(vector));
        self.payloads.push(payload);
    }

    fn remove(&mut self, id: &PointId) {
        if let Some(slot) = self.position.remove(id) {
            self.alive[slot] = false;
            self.payloads[slot] = Map::new();
        }
        self.compact_if_mostly_dead();
    }

    /// Reclaims dead slots once they outnumber the live ones (and there are enough to matter).
    fn compact_if_mostly_dead(&mut self) {
        let dead = self.ids.len() - self.live();
        if dead < 1024 || dead < self.live() {
            return;
        }
        let d = self.dimensions;
        let mut next = SpaceIndex {
            dimensions: d,
            epoch: self.epoch + 1,
            graph_min: self.graph_min,
            ..SpaceIndex::default()
        };
        for slot in 0..self.ids.len() {
            if self.alive[slot] {
                let id = self.ids[slot].clone();
                next.position.insert(id.clone(), next.ids.len());
                next.ids.push(id);
                next.alive.push(true);
                next.vectors.extend_from_slice(self.vector(slot));
                next.payloads.push(std::mem::take(&mut self.payloads[slot]));
            }
        }
        next.building = self.building;
        next.indexing = self.indexing;
        *self = next;
    }

    /// The graph, when there is one for the current slot numbers.
    fn graph_ready(&self) -> Option<&Arc<Graph>> {
        self.graph.as_ref().filter(|g| g.epoch == self.epoch)
    }

    /// Slots the graph does not cover yet (searched by scan meanwhile).
    fn unindexed(&self) -> usize {
        self.graph_ready().map_or(0, |g| {
            self.ids.len() - g.upto.load(Ordering::Acquire).min(self.ids.len())
        })
    }

    /// A search that refuses a filter on a payload key no live point has.
    fn search_checked(
        &self,
        query: &PointQuery,
        ef: usize,
    ) -> Result<Vec<ScoredPoint>, PointError> {
        let hits = self.search(query, ef);
        if hits.is_empty() && !query.filter.is_empty() {
            unknown_filter_key(&query.filter, |key| {
                self.payloads
                    .iter()
                    .zip(&self.alive)
                    .any(|(p, alive)| *alive && p.contains_key(key))
            })?;
        }
        Ok(hits)
    }

    fn search(&self, query: &PointQuery, ef: usize) -> Vec<ScoredPoint> {
        let q = normalised(&query.vector);
        let min = query.min_score.unwrap_or(f32::NEG_INFINITY);
        let keep = |slot: usize| {
            self.alive[slot]
                && (query.filter.is_empty() || matches_filter(&self.payloads[slot], &query.filter))
        };
        let from_graph = self
            .graph_ready()
            .filter(|_| query.filter.is_empty())
            .and_then(|graph| {
                // hnsw_rs walks far longer when given a filter, so dead slots are dropped afterwards
                // from a wider answer; when too many were dead, the exact scan below answers instead.
                let want = query.limit * 2;
                let upto = graph.upto.load(Ordering::Acquire).min(self.ids.len());
                let mut hits: Vec<(f32, usize)> = graph
                    .hnsw
                    .search(&q, want, ef.max(want))
                    .into_iter()
                    .filter(|n| n.d_id < upto && self.alive[n.d_id])
                    .map(|n| (dot(&q, self.vector(n.d_id)), n.d_id))
                    .collect();
                let graph_hits = hits.len();
                // The slots written since the graph last caught up, exactly.
                hits.extend(
                    (upto..self.ids.len())
                        .filter(|slot| self.alive[*slot])
                        .map(|slot| (dot(&q, self.vector(slot)), slot)),
                );
                let live_in_graph =
                    self.live() - (upto..self.ids.len()).filter(|s| self.alive[*s]).count();
                (graph_hits >= query.limit.min(live_in_graph)).then_some(hits)
            });
        // Payload filters are checked exactly, by scan: a selective filter can starve a graph walk.
        let mut scored: Vec<(f32, usize)> = match from_graph {
            Some(hits) => hits,
            None => self
                .vectors
                .chunks_exact(self.dimensions.max(1))
                .enumerate()
                .filter(|(slot, _)| keep(*slot))
                .map(|(slot, v)| (dot(&q, v), slot))
                .collect(),
        };
        scored.retain(|(s, _)| *s >= min);
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
            .map(|(score, slot)| ScoredPoint {
                id: self.ids[slot].clone(),
                score,
                payload: self.payloads[slot].clone(),
            })
            .collect()
    }
}

/// A space's in-memory index, `None` until first loaded.
type Slot = Arc<RwLock<Option<SpaceIndex>>>;

/// Points in the embedded SQLite database with an in-memory index per space.
pub struct SqlitePointStore {
    pool: SqlitePool,
    spaces: Mutex<HashMap<Uuid, Slot>>,
    ef_search: usize,
    graph_min: usize,
}

fn payload_from(text: &str) -> Result<Map<String, Value>, PointError> {
    serde_json::from_str(text)
        .map_err(|e| PointError::Other(anyhow::anyhow!("stored payload is not JSON: {e}")))
}

/// Starts building a graph for a space that has grown past its graph minimum and has none, or
/// the indexer of a space whose graph lags its writes. The build works on a snapshot outside the
/// lock. Call with the space's write lock held.
fn maybe_build_graph(slot: &Slot, index: &mut SpaceIndex) {
    if index.graph_ready().is_some() {
        maybe_index_tail(slot, index);
        return;
    }
    if index.building || index.live() < index.graph_min.max(1) {
        return;
    }
    index.building = true;
    let epoch = index.epoch;
    let upto = index.ids.len();
    let snapshot: Vec<(usize, Vec<f32>)> = (0..upto)
        .filter(|s| index.alive[*s])
        .map(|s| (s, index.vector(s).to_vec()))
        .collect();
    let slot = slot.clone();
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let built = tokio::task::spawn_blocking(move || {
            let hnsw = Hnsw::new(
                HNSW_LINKS,
                snapshot.len(),
                HNSW_LAYERS,
                HNSW_EF_BUILD,
                UnitCosine,
            );
            let items: Vec<(&[f32], usize)> =
                snapshot.iter().map(|(s, v)| (v.as_slice(), *s)).collect();
            // Rayon uses every core; a build is rare (a space crossing the threshold, a restart).
            hnsw.parallel_insert_slice(&items);
            hnsw
        })
        .await;
        let mut guard = slot.write().await;
        let Some(index) = guard.as_mut() else {
            return;
        };
        index.building = false;
        match built {
            // Compacted meanwhile: slot numbers changed, so start again on the new ones.
            Ok(_) if index.epoch != epoch => maybe_build_graph(&slot, index),
            Ok(hnsw) => {
                index.graph = Some(Arc::new(Graph {
                    hnsw,
                    upto: AtomicUsize::new(upto),
                    epoch,
                }));
                tracing::info!(
                    points = index.live(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "points graph ready"
                );
                maybe_index_tail(&slot, index);
            }
            // The next write tries again; exact scans answer meanwhile.
            Err(e) => tracing::warn!(error = %e, "building a points graph failed"),
        }
    });
}

/// How long the tail indexer waits before taking a batch, so a burst of writes is indexed once.
const TAIL_COALESCE: std::time::Duration = std::time::Duration::from_millis(25);

/// Starts the task that adds the slots written since the graph last caught up, unless one runs.
/// Writes never wait for the graph: searches scan those slots exactly until they are in it.
fn maybe_index_tail(slot: &Slot, index: &mut SpaceIndex) {
    let Some(graph) = index.graph_ready().cloned() else {
        return;
    };
    if index.indexing || index.unindexed() == 0 {
        return;
    }
    index.indexing = true;
    let epoch = index.epoch;
    let slot = slot.clone();
    tokio::spawn(async move {
        loop {
            // Let a burst of writes gather into one batch instead of indexing each as it lands.
            tokio::time::sleep(TAIL_COALESCE).await;
            let (batch, end) = {
                let guard = slot.read().await;
                let Some(index) = guard.as_ref().filter(|i| i.epoch == epoch) else {
                    break;
                };
                let upto = graph.upto.load(Ordering::Acquire);
                if upto >= index.ids.len() {
                    break;
                }
                let end = index.ids.len().min(upto + 1024);
                let batch: Vec<(usize, Vec<f32>)> = (upto..end)
                    .filter(|s| index.alive[*s])
                    .map(|s| (s, index.vector(s).to_vec()))
                    .collect();
                (batch, end)
            };
            let g = graph.clone();
            let added = tokio::task::spawn_blocking(move || {
                // One core, in order: the other stays with the requests that keep writing.
                for (s, v) in &batch {
                    g.hnsw.insert_slice((v.as_slice(), *s));
                }
                g.upto.store(end, Ordering::Release);
            })
            .await;
            if added.is_err() {
                break;
            }
        }
        let mut guard = slot.write().await;
        if let Some(index) = guard.as_mut() {
            index.indexing = false;
            // A write may have landed after the last look, or the slots were renumbered.
            maybe_build_graph(&slot, index);
        }
    });
}

impl SqlitePointStore {
    /// Creates the tables if missing. `ef_search` is the graph's search breadth; spaces of
    /// `graph_min` points or more get a graph.
    pub async fn open(
        pool: SqlitePool,
        ef_search: usize,
        graph_min: usize,
    ) -> Result<Self, PointError> {
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
            ef_search: ef_search.clamp(1, 1000),
            graph_min,
        })
    }

    /// Spaces with points in the database, for moving them to another store.
    pub async fn spaces_with_points(pool: &SqlitePool) -> Result<Vec<Uuid>, PointError> {
        let exists: Option<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'points'",
        )
        .fetch_optional(pool)
        .await?;
        if exists.is_none() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = sqlx::query_scalar("SELECT DISTINCT space_id FROM points")
            .fetch_all(pool)
            .await?;
        ids.iter()
            .map(|s| Uuid::parse_str(s).map_err(|e| PointError::Other(e.into())))
            .collect()
    }

    /// Every point of a space as stored, for moving them to another store.
    pub async fn points_of(pool: &SqlitePool, space: Uuid) -> Result<Vec<Point>, PointError> {
        let rows: Vec<(String, Vec<u8>, String)> =
            sqlx::query_as("SELECT id, vector, payload FROM points WHERE space_id = ? ORDER BY id")
                .bind(space.to_string())
                .fetch_all(pool)
                .await?;
        rows.into_iter()
            .map(|(id, blob, payload)| {
                Ok(Point {
                    id: PointId::from_stored(id),
                    vector: from_blob(&blob),
                    payload: payload_from(&payload)?,
                })
            })
            .collect()
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
            graph_min: self.graph_min,
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

    /// A search without the API's result cap, for Kenning's own retrieval, which fuses deeper
    /// candidate lists than a client may ask for.
    pub(crate) async fn search_any_depth(
        &self,
        space: Uuid,
        query: PointQuery,
    ) -> Result<Vec<ScoredPoint>, PointError> {
        let slot = self.loaded(space).await?;
        let guard = slot.read_owned().await;
        let Some(index) = guard.as_ref() else {
            return Ok(Vec::new());
        };
        if index.dimensions > 0 {
            validate_vector(&query.vector, Some(index.dimensions))?;
        }
        if index.live() == 0 {
            return Ok(Vec::new());
        }
        let cheap = index.graph_ready().is_some() && query.filter.is_empty();
        let ef = self.ef_search;
        if cheap || index.vectors.len() < INLINE_SCAN {
            return index.search_checked(&query, ef);
        }
        tokio::task::spawn_blocking(move || match guard.as_ref() {
            Some(i) => i.search_checked(&query, ef),
            None => Ok(Vec::new()),
        })
        .await
        .map_err(|e| PointError::Other(anyhow::anyhow!("scan task failed: {e}")))?
    }

    /// Removes every point whose payload has `key` equal to `value` (a document's passages) and
    /// whose id `pick` accepts; returns how many went.
    pub(crate) async fn delete_where(
        &self,
        space: Uuid,
        key: &str,
        value: &Value,
        pick: impl Fn(&PointId) -> bool + Send,
    ) -> Result<usize, PointError> {
        let slot = self.loaded(space).await?;
        let mut guard = slot.write().await;
        let Some(index) = guard.as_mut() else {
            return Ok(0);
        };
        let doomed: Vec<PointId> = index
            .payloads
            .iter()
            .zip(&index.alive)
            .zip(&index.ids)
            .filter(|((payload, alive), id)| **alive && payload.get(key) == Some(value) && pick(id))
            .map(|(_, id)| id.clone())
            .collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for batch in doomed.chunks(500) {
            let mut q =
                sqlx::QueryBuilder::<sqlx::Sqlite>::new("DELETE FROM points WHERE space_id = ");
            q.push_bind(space.to_string()).push(" AND id IN (");
            let mut ids = q.separated(", ");
            for id in batch {
                ids.push_bind(id.as_str().to_string());
            }
            q.push(")");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        for id in &doomed {
            index.remove(id);
        }
        maybe_build_graph(&slot, index);
        Ok(doomed.len())
    }

    /// The space's index, loaded from the database on first use.
    async fn loaded(&self, space: Uuid) -> Result<Slot, PointError> {
        let slot = self.slot(space);
        if slot.read().await.is_none() {
            let mut w = slot.write().await;
            if w.is_none() {
                let mut index = self.load(space).await?;
                maybe_build_graph(&slot, &mut index);
                *w = Some(index);
            }
        }
        Ok(slot)
    }
}

#[async_trait::async_trait]
impl PointStore for SqlitePointStore {
    fn backend_name(&self) -> &'static str {
        "points-embedded"
    }

    async fn space_dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        self.dimensions(space).await
    }

    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError> {
        let dims = validate_batch(&points)?;
        let slot = self.loaded(space).await?;
        let mut guard = slot.write().await;
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
        if let Some(index) = guard.as_mut() {
            index.dimensions = dims;
            for p in points {
                index.put(p.id, &p.vector, p.payload);
            }
            maybe_build_graph(&slot, index);
        }
        Ok(n)
    }

    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError> {
        validate_query(&query)?;
        self.search_any_depth(space, query).await
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
            maybe_build_graph(&slot, index);
        }
        Ok(gone)
    }

    async fn info(&self, space: Uuid) -> Result<PointsInfo, PointError> {
        let slot = self.loaded(space).await?;
        let guard = slot.read().await;
        Ok(match guard.as_ref() {
            Some(index) => PointsInfo {
                points: index.live() as u64,
                unindexed: index.unindexed() as u64,
                dimensions: (index.dimensions > 0).then_some(index.dimensions),
                index: if index.graph_ready().is_some() {
                    "hnsw"
                } else if index.building {
                    "building"
                } else {
                    "exact"
                },
            },
            None => PointsInfo {
                points: 0,
                unindexed: 0,
                dimensions: None,
                index: "exact",
            },
        })
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

    fn query(vector: Vec<f32>, limit: usize) -> PointQuery {
        PointQuery {
            vector,
            limit,
            min_score: None,
            filter: Map::new(),
        }
    }

    #[test]
    fn replaced_and_removed_points_leave_the_others_findable() {
        let mut index = SpaceIndex {
            dimensions: 2,
            ..SpaceIndex::default()
        };
        index.put(id(1), &[1.0, 0.0], Map::new());
        index.put(id(2), &[0.0, 1.0], Map::new());
        index.put(id(3), &[1.0, 1.0], Map::new());
        index.remove(&id(1));
        index.put(id(3), &[0.0, 2.0], Map::new());
        let hits = index.search(&query(vec![0.0, 1.0], 10), 64);
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        // 2 and 3 are now the same direction: equal scores, broken by id.
        assert_eq!(ids, ["2", "3"]);
        assert!((hits[0].score - 1.0).abs() < 1e-6);
        assert_eq!(index.live(), 2);
    }

    #[test]
    fn mostly_dead_slots_are_compacted_away() {
        let mut index = SpaceIndex {
            dimensions: 1,
            ..SpaceIndex::default()
        };
        for n in 0..3000 {
            index.put(id(n), &[1.0], Map::new());
        }
        for n in 0..2000 {
            index.remove(&id(n));
        }
        assert_eq!(index.live(), 1000);
        assert!(index.ids.len() < 3000, "dead slots were reclaimed");
        assert!(index.epoch > 0);
        let hits = index.search(&query(vec![1.0], 3), 64);
        let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["2000", "2001", "2002"]);
    }

    /// A pseudo-random unit-ish vector.
    fn vector(rng: &mut fastrand::Rng, dims: usize) -> Vec<f32> {
        (0..dims).map(|_| rng.f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn the_graph_finds_nearly_what_the_exact_scan_finds() {
        let dims = 16;
        let mut rng = fastrand::Rng::with_seed(42);
        let mut index = SpaceIndex {
            dimensions: dims,
            ..SpaceIndex::default()
        };
        for n in 0..3000 {
            index.put(id(n), &vector(&mut rng, dims), Map::new());
        }
        let hnsw = Hnsw::new(HNSW_LINKS, 3000, HNSW_LAYERS, HNSW_EF_BUILD, UnitCosine);
        for s in 0..1500 {
            hnsw.insert_slice((index.vector(s), s));
        }
        for s in 1500..2500 {
            hnsw.insert_slice((index.vector(s), s));
        }
        // 2,500 slots in the graph; the last 500 and a newcomer are left for the exact tail scan.
        index.graph = Some(Arc::new(Graph {
            hnsw,
            upto: AtomicUsize::new(2500),
            epoch: 0,
        }));
        index.put(id(3000), &vector(&mut rng, dims), Map::new());
        index.remove(&id(17));
        index.remove(&id(2900));
        assert!(index.graph_ready().is_some());
        assert_eq!(index.unindexed(), 501);

        let (mut found, mut wanted) = (0, 0);
        for _ in 0..30 {
            let q = query(vector(&mut rng, dims), 10);
            let approx = index.search(&q, 64);
            let graph = index.graph.take();
            let exact = index.search(&q, 64);
            index.graph = graph;
            assert!(
                approx.iter().all(|h| h.id != id(17) && h.id != id(2900)),
                "deleted points never come back"
            );
            wanted += exact.len();
            found += approx.iter().filter(|h| exact.contains(h)).count();
        }
        let recall = found as f64 / wanted as f64;
        assert!(recall >= 0.95, "recall@10 {recall}");
    }
}
