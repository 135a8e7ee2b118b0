//! Points in Qdrant Edge: one shard per vector length in `DATA_DIR/edge/points` (at most
//! [`MAX_LENGTHS`]), holding the points of every space with that length. A point is stored under
//! a UUID derived from its space and its own id (so two spaces may use the same id), with the
//! space as the indexed tenant key, the client's id and the client's payload kept beside it;
//! filters on a payload key read `payload."<key>"`. A space's length is the length of the shard
//! its points are in, so it is fixed while the space has points. The shard is optimised in the
//! background after large writes, which is when it builds an HNSW graph for each segment past
//! the threshold (half the graph minimum's worth of vectors, over every space of that length);
//! smaller segments are searched exactly. Cosine vectors are kept at unit length, so `get`
//! returns a point's vector normalised, as Qdrant's server does.

use super::{
    quoted_key, ranked, unknown_filter_key, validate_batch, validate_query, validate_vector, Point,
    PointError, PointId, PointQuery, PointStore, PointsInfo, ScoredPoint,
};
use crate::vector::edge::{keyword_index, search_threads, Shard};
use crate::vector::VectorError;
use qdrant_edge::{
    CountRequestBuilder, Distance, EdgeConfigBuilder, EdgeOptimizersConfig,
    EdgeVectorParamsBuilder, Filter, PointId as EdgeId, PointInsertOperations, PointOperations,
    PointStruct, RetrieveRequestBuilder, UpdateOperation, Vector, VectorInternal,
    VectorStructInternal, Vectors, WithPayloadInterface, WithVector,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// The shards' one dense vector.
const VECTOR: &str = "dense";
/// Payload key of the space a point belongs to (the tenant key).
const SPACE: &str = "space";
/// Payload key of the client's own id for the point.
const ID: &str = "id";
/// Payload key under which the client's payload is kept whole.
const PAYLOAD: &str = "payload";
/// Spaces whose vector length this process has looked up.
const KNOWN_SPACES: u64 = 10_000;
/// Points written that start an optimisation, at most.
const OPTIMIZE_AFTER: usize = 5_000;
/// Segments a shard aims for: searched in parallel, each indexed on its own.
const SEGMENTS: usize = 2;
/// How long freeing an empty shard waits for calls on it to finish.
const GC_WAIT: Duration = Duration::from_secs(5);
/// Most vector lengths kept at once: each is a shard with its own threads and log, so a
/// client cannot make thousands by sending points of every length.
pub const MAX_LENGTHS: usize = 16;

impl From<VectorError> for PointError {
    fn from(e: VectorError) -> Self {
        match e {
            VectorError::Unavailable(m) => PointError::Unavailable(m),
            VectorError::Invalid(m) => PointError::Invalid("invalid_request", m),
            VectorError::Other(e) => PointError::Other(e),
        }
    }
}

/// Points in Qdrant Edge shards, one per vector length.
pub struct EdgePointStore {
    root: PathBuf,
    graph_min: usize,
    shards: tokio::sync::RwLock<HashMap<usize, Arc<Shard>>>,
    /// Held while a space's first points go in, so two first upserts cannot pick two lengths.
    first: tokio::sync::Mutex<()>,
    dimensions: moka::future::Cache<Uuid, usize>,
}

/// The stored point of a client's id in a space: the same id in two spaces is two points.
fn stored_id(space: Uuid, id: &PointId) -> EdgeId {
    EdgeId::Uuid(Uuid::new_v5(&space, id.as_str().as_bytes()))
}

fn filter(value: Value) -> Result<Filter, PointError> {
    serde_json::from_value(value).map_err(|e| {
        PointError::Invalid(
            "invalid_filter",
            format!("the filter cannot be read as payload paths: {e}"),
        )
    })
}

/// The path of a client's payload key, under the payload it is kept in.
fn payload_path(key: &str) -> Result<String, PointError> {
    Ok(format!("{PAYLOAD}.{}", quoted_key(key)?))
}

/// The condition that a point belongs to `space`.
fn in_space(space: Uuid) -> Value {
    json!({ "key": SPACE, "match": { "value": space.to_string() } })
}

/// The space's points, narrowed by the client's filter: strings and booleans match exactly,
/// numbers by a one-value range (so 1 matches a stored 1.0, as on the other stores).
fn space_filter(space: Uuid, query: &Map<String, Value>) -> Result<Filter, PointError> {
    let mut must = vec![in_space(space)];
    for (key, value) in query {
        let path = payload_path(key)?;
        must.push(match value {
            Value::Number(n) => json!({ "key": path, "range": { "gte": n, "lte": n } }),
            other => json!({ "key": path, "match": { "value": other } }),
        });
    }
    filter(json!({ "must": must }))
}

/// The client's id and payload of a stored point.
fn unpack(
    payload: Option<qdrant_edge::Payload>,
) -> Result<(PointId, Map<String, Value>), PointError> {
    let mut payload = payload.map(|p| p.0).unwrap_or_default();
    let id = match payload.remove(ID) {
        Some(Value::String(s)) => PointId::from_stored(s),
        _ => {
            return Err(PointError::Other(anyhow::anyhow!(
                "a Qdrant Edge point has no client id"
            )))
        }
    };
    let body = match payload.remove(PAYLOAD) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok((id, body))
}

impl EdgePointStore {
    /// Opens the shards under `root` (made on first use); a shard's segments get a graph once
    /// each holds about half of `graph_min` points' vectors.
    pub async fn open(root: &Path, graph_min: usize) -> Result<Self, PointError> {
        let store = Self {
            root: root.to_path_buf(),
            graph_min: graph_min.max(1),
            shards: tokio::sync::RwLock::new(HashMap::new()),
            first: tokio::sync::Mutex::new(()),
            dimensions: moka::future::Cache::new(KNOWN_SPACES),
        };
        let lengths = match std::fs::read_dir(root) {
            Ok(entries) => entries
                .filter_map(|e| {
                    e.ok()?
                        .file_name()
                        .to_str()?
                        .strip_prefix('d')?
                        .parse()
                        .ok()
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(PointError::Other(e.into())),
        };
        for dims in lengths {
            store.shard(dims).await?;
        }
        Ok(store)
    }

    /// The shard of one vector length, opened or made on first use.
    async fn shard(&self, dims: usize) -> Result<Arc<Shard>, PointError> {
        if let Some(s) = self.shards.read().await.get(&dims) {
            return Ok(s.clone());
        }
        let mut shards = self.shards.write().await;
        if let Some(s) = shards.get(&dims) {
            return Ok(s.clone());
        }
        if shards.len() >= MAX_LENGTHS && Self::collect_empty(&mut shards).await? > 0 {
            // Spaces remembered at a freed length have no points any more.
            self.dimensions.invalidate_all();
        }
        if shards.len() >= MAX_LENGTHS {
            let mut kept: Vec<usize> = shards.keys().copied().collect();
            kept.sort_unstable();
            return Err(PointError::Invalid(
                "too_many_lengths",
                format!(
                    "this server keeps points of at most {MAX_LENGTHS} vector lengths and has \
                     {kept:?}, each with points; send vectors of one of those lengths (a length \
                     is freed once no space has points of it)"
                ),
            ));
        }
        // Edge indexes each segment past its threshold (kilobytes of vectors); with two
        // segments each indexes at half the graph minimum, as on the Qdrant server backend.
        let threshold_kb = (self.graph_min.saturating_mul(dims) * 4 / 1024 / SEGMENTS).max(1);
        let config = EdgeConfigBuilder::new()
            .vector(
                VECTOR,
                EdgeVectorParamsBuilder::new(dims, Distance::Cosine).build(),
            )
            .optimizers(EdgeOptimizersConfig {
                default_segment_number: Some(SEGMENTS),
                indexing_threshold: Some(threshold_kb),
                ..EdgeOptimizersConfig::default()
            })
            .max_search_threads(search_threads())
            .build();
        let (shard, ()) = Shard::open(
            self.root.join(format!("d{dims}")),
            config,
            // A changed --points-graph-min reaches shards made before it.
            true,
            self.graph_min.min(OPTIMIZE_AFTER),
            |s| keyword_index(s, SPACE, true),
        )
        .await?;
        let shard = Arc::new(shard);
        shards.insert(dims, shard.clone());
        Ok(shard)
    }

    /// Closes the shards no space has points in and deletes their directories, so lengths
    /// once used come free again. Runs under the write lock of `shards`, so no new handle to a
    /// shard can be taken meanwhile; a shard still in use (a call or an optimisation in
    /// flight) gets a few seconds to finish, else it is left for the next time.
    async fn collect_empty(shards: &mut HashMap<usize, Arc<Shard>>) -> Result<usize, PointError> {
        let mut freed = 0;
        let mut empty = Vec::new();
        for (dims, shard) in shards.iter() {
            let total = CountRequestBuilder::new().exact(true).build();
            if shard.run(move |s| Ok(s.count(total)?)).await? == 0 {
                empty.push(*dims);
            }
        }
        for dims in empty {
            let Some(shard) = shards.remove(&dims) else {
                continue;
            };
            let mut waited = Duration::ZERO;
            while !(Arc::strong_count(&shard) == 1 && shard.idle()) && waited < GC_WAIT {
                tokio::time::sleep(Duration::from_millis(50)).await;
                waited += Duration::from_millis(50);
            }
            if Arc::strong_count(&shard) != 1 || !shard.idle() {
                shards.insert(dims, shard);
                continue;
            }
            let path = shard.path().to_path_buf();
            drop(shard);
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(path))
                .await
                .map_err(|e| PointError::Other(anyhow::anyhow!("removing a shard failed: {e}")))?
                .map_err(|e| PointError::Other(e.into()))?;
            tracing::info!(
                dims,
                "closed and removed the empty points shard of one vector length"
            );
            freed += 1;
        }
        Ok(freed)
    }

    /// Exact number of a space's points that `filter` (already scoped to it) lets through.
    async fn count(shard: &Shard, filter: Filter) -> Result<usize, PointError> {
        let request = CountRequestBuilder::new()
            .filter(filter)
            .exact(true)
            .build();
        Ok(shard.run(move |s| Ok(s.count(request)?)).await?)
    }

    /// The space's vector length, or `None` while it has no points.
    async fn dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        if let Some(d) = self.dimensions.get(&space).await {
            return Ok(Some(d));
        }
        let shards: Vec<(usize, Arc<Shard>)> = self
            .shards
            .read()
            .await
            .iter()
            .map(|(d, s)| (*d, s.clone()))
            .collect();
        for (dims, shard) in shards {
            if Self::count(&shard, space_filter(space, &Map::new())?).await? > 0 {
                self.dimensions.insert(space, dims).await;
                return Ok(Some(dims));
            }
        }
        Ok(None)
    }

    /// The shard of a space with points, and their length.
    async fn space_shard(&self, space: Uuid) -> Result<Option<(usize, Arc<Shard>)>, PointError> {
        match self.dimensions(space).await? {
            Some(d) => Ok(Some((d, self.shard(d).await?))),
            None => Ok(None),
        }
    }

    async fn retrieve(
        shard: &Shard,
        space: Uuid,
        id: &PointId,
    ) -> Result<Option<Point>, PointError> {
        let request = RetrieveRequestBuilder::new(vec![stored_id(space, id)])
            .with_payload(WithPayloadInterface::Bool(true))
            .with_vector(WithVector::Bool(true))
            .build();
        let found = shard.run(move |s| Ok(s.retrieve(request)?)).await?;
        let Some(record) = found.into_iter().next() else {
            return Ok(None);
        };
        let vector = match record.vector {
            Some(VectorStructInternal::Named(mut v)) => match v.remove(VECTOR) {
                Some(VectorInternal::Dense(d)) => d,
                _ => Vec::new(),
            },
            Some(VectorStructInternal::Single(d)) => d,
            _ => Vec::new(),
        };
        let (id, payload) = unpack(record.payload)?;
        Ok(Some(Point {
            id,
            vector,
            payload,
        }))
    }
}

#[async_trait::async_trait]
impl PointStore for EdgePointStore {
    fn backend_name(&self) -> &'static str {
        "points-edge"
    }

    async fn space_dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        self.dimensions(space).await
    }

    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError> {
        let dims = validate_batch(&points)?;
        let _first;
        let fixed = match self.dimensions(space).await? {
            Some(d) => d,
            None => {
                _first = self.first.lock().await;
                // Another first upsert may have fixed the length while this one waited.
                self.dimensions(space).await?.unwrap_or(dims)
            }
        };
        validate_vector(&points[0].vector, Some(fixed))?;
        let shard = self.shard(dims).await?;
        let count = points.len();
        let space_id = space.to_string();
        let structs = points
            .into_iter()
            .map(|p| {
                PointStruct::new(
                    stored_id(space, &p.id),
                    Vectors::new_named([(VECTOR, Vector::from(p.vector))]),
                    json!({ SPACE: space_id, ID: p.id.as_str(), PAYLOAD: Value::Object(p.payload) }),
                )
                .into()
            })
            .collect();
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(structs)),
            ))
            .await?;
        self.dimensions.insert(space, dims).await;
        shard.wrote(count);
        Ok(count)
    }

    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError> {
        validate_query(&query)?;
        let Some((dims, shard)) = self.space_shard(space).await? else {
            return Ok(Vec::new());
        };
        validate_vector(&query.vector, Some(dims))?;
        let scope = space_filter(space, &query.filter)?;
        let found = shard
            .nearest(
                VectorInternal::Dense(query.vector),
                VECTOR,
                scope,
                query.limit,
                true,
            )
            .await?;
        // min_score is applied here, so a score equal to it is kept as on the other stores.
        let hits = ranked(
            found
                .into_iter()
                .map(|p| {
                    let (id, payload) = unpack(p.payload)?;
                    Ok(ScoredPoint {
                        id,
                        score: p.score,
                        payload,
                    })
                })
                .collect::<Result<Vec<_>, PointError>>()?,
            query.min_score,
        );
        if hits.is_empty() && !query.filter.is_empty() {
            let mut present = Vec::new();
            for key in query.filter.keys() {
                let has_key = filter(json!({
                    "must": [in_space(space)],
                    "must_not": [{ "is_empty": { "key": payload_path(key)? } }],
                }))?;
                if Self::count(&shard, has_key).await? > 0 {
                    present.push(key.clone());
                }
            }
            unknown_filter_key(&query.filter, |k| present.iter().any(|p| p == k))?;
        }
        Ok(hits)
    }

    async fn get(&self, space: Uuid, id: &PointId) -> Result<Option<Point>, PointError> {
        let Some((_, shard)) = self.space_shard(space).await? else {
            return Ok(None);
        };
        Self::retrieve(&shard, space, id).await
    }

    async fn delete(&self, space: Uuid, id: &PointId) -> Result<bool, PointError> {
        let Some((_, shard)) = self.space_shard(space).await? else {
            return Ok(false);
        };
        if Self::retrieve(&shard, space, id).await?.is_none() {
            return Ok(false);
        }
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::DeletePoints {
                    ids: vec![stored_id(space, id)],
                },
            ))
            .await?;
        shard.wrote(1);
        Ok(true)
    }

    async fn info(&self, space: Uuid) -> Result<PointsInfo, PointError> {
        let Some((dims, shard)) = self.space_shard(space).await? else {
            return Ok(PointsInfo {
                points: 0,
                unindexed: 0,
                dimensions: None,
                index: "exact",
            });
        };
        let points = Self::count(&shard, space_filter(space, &Map::new())?).await?;
        let info = shard.run(|s| Ok(s.info()?)).await?;
        let (total, indexed) = (info.points_count, info.indexed_vectors_count);
        let (index, unindexed) = if points < self.graph_min {
            ("exact", 0)
        } else if shard.optimizing() {
            ("building", total.saturating_sub(indexed).min(points))
        } else if indexed > 0 {
            ("hnsw", 0)
        } else {
            // Past the graph minimum with no graph: the optimisation that builds it starts now.
            shard.optimize_in_background();
            ("building", points)
        };
        Ok(PointsInfo {
            points: points as u64,
            unindexed: unindexed as u64,
            dimensions: Some(dims),
            index,
        })
    }

    async fn delete_space(&self, space: Uuid) -> Result<(), PointError> {
        if let Some((_, shard)) = self.space_shard(space).await? {
            shard
                .delete_where(space_filter(space, &Map::new())?)
                .await?;
            // A whole space's points are worth vacuuming now rather than at the next large write.
            shard.optimize_in_background();
        }
        self.dimensions.invalidate(&space).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_in_two_spaces_is_two_points() {
        let id = PointId::parse("7").expect("id");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(stored_id(a, &id), stored_id(b, &id));
        assert_eq!(
            stored_id(a, &id),
            stored_id(a, &PointId::parse("7").expect("id"))
        );
    }

    #[test]
    fn filters_scope_to_the_space_and_read_the_client_payload() {
        let query: Map<String, Value> =
            serde_json::from_str(r#"{"n": 3, "x": 2.5, "tag": "a", "ok": true}"#).expect("json");
        let f = space_filter(Uuid::now_v7(), &query).expect("filter");
        assert_eq!(f.must.as_ref().map(Vec::len), Some(5));
        assert!(space_filter(Uuid::now_v7(), &Map::new()).is_ok());
        assert_eq!(
            payload_path("a.b [0]").expect("quoted"),
            r#"payload."a.b [0]""#
        );
        let quote: Map<String, Value> = serde_json::from_str(r#"{"a\"b": 1}"#).expect("json");
        assert!(matches!(
            space_filter(Uuid::now_v7(), &quote),
            Err(PointError::Invalid("invalid_filter", _))
        ));
    }

    #[tokio::test]
    async fn points_of_too_many_lengths_are_refused_clearly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EdgePointStore::open(dir.path(), 100).await.expect("store");
        let point = |dims: usize| Point {
            id: PointId::parse("1").expect("id"),
            vector: vec![1.0; dims],
            payload: Map::new(),
        };
        for dims in 1..=MAX_LENGTHS {
            store
                .upsert(Uuid::now_v7(), vec![point(dims)])
                .await
                .expect("a length within the cap");
        }
        let err = store
            .upsert(Uuid::now_v7(), vec![point(MAX_LENGTHS + 1)])
            .await
            .expect_err("one length too many");
        assert!(
            matches!(err, PointError::Invalid("too_many_lengths", _)),
            "{err}"
        );
        // Lengths already kept still take points, after a restart too.
        drop(store);
        let store = EdgePointStore::open(dir.path(), 100)
            .await
            .expect("reopened");
        store
            .upsert(Uuid::now_v7(), vec![point(3)])
            .await
            .expect("a kept length");
    }

    #[tokio::test]
    async fn lengths_no_space_uses_any_more_come_free() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = EdgePointStore::open(dir.path(), 100).await.expect("store");
        let point = |id: &str, dims: usize| Point {
            id: PointId::parse(id).expect("id"),
            vector: vec![1.0; dims],
            payload: Map::new(),
        };
        let spaces: Vec<Uuid> = (1..=MAX_LENGTHS).map(|_| Uuid::now_v7()).collect();
        for (i, space) in spaces.iter().enumerate() {
            store
                .upsert(*space, vec![point("1", i + 1), point("2", i + 1)])
                .await
                .expect("a length within the cap");
        }
        // One space deletes its space's points, another its points one by one: both lengths
        // come free, and a length still holding points does not.
        store.delete_space(spaces[2]).await.expect("delete space");
        for id in ["1", "2"] {
            assert!(store
                .delete(spaces[4], &PointId::parse(id).expect("id"))
                .await
                .expect("delete"));
        }
        let newcomers = [Uuid::now_v7(), Uuid::now_v7()];
        for (i, space) in newcomers.iter().enumerate() {
            store
                .upsert(*space, vec![point("1", 100 + i)])
                .await
                .expect("a freed length is reused");
        }
        assert!(
            !dir.path().join("d3").exists(),
            "the freed shard is removed"
        );
        assert!(!dir.path().join("d5").exists());
        assert!(matches!(
            store.upsert(Uuid::now_v7(), vec![point("1", 200)]).await,
            Err(PointError::Invalid("too_many_lengths", _))
        ));
        // The spaces of freed lengths may start again at any length; the others keep theirs.
        store
            .upsert(spaces[2], vec![point("1", 1)])
            .await
            .expect("an emptied space picks a kept length");
        let info = store.info(spaces[0]).await.expect("info");
        assert_eq!(info.points, 2);
        assert_eq!(info.dimensions, Some(1));
    }
}
