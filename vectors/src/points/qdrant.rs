//! Points in a Qdrant server: each space is a collection of its own (`<prefix>_points_<space>`),
//! made on the space's first upsert with that upsert's vector size, as a Qdrant collection's
//! size is fixed. Point ids are Qdrant's own kinds (unsigned integers and UUIDs) and payloads are
//! stored as they are, so the collection reads naturally with Qdrant's own tools. Qdrant builds
//! a space's HNSW graph once its vectors pass the graph minimum (its indexing threshold), and
//! searches smaller segments exactly. Qdrant keeps cosine vectors at unit length, so `get`
//! returns a point's vector normalised.

use super::{
    quoted_key, ranked, unknown_filter_key, validate_batch, validate_query, validate_vector, Point,
    PointError, PointId, PointQuery, PointStore, PointsInfo, ScoredPoint,
};
use crate::vector::qdrant::{connect, has_code, QdrantSettings};
use crate::vector::VectorError;
use qdrant_client::qdrant::{
    point_id::PointIdOptions, vector_output, vectors_config, vectors_output, CollectionStatus,
    Condition, CountPointsBuilder, CreateCollectionBuilder, DeletePointsBuilder, Distance, Filter,
    GetPointsBuilder, OptimizersConfigDiffBuilder, PointId as QdrantId, PointStruct, PointsIdsList,
    QueryPointsBuilder, Range, UpsertPointsBuilder, Value as QdrantValue, VectorParamsBuilder,
    WalConfigDiffBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// Spaces whose vector size this process has read; a space's size never changes.
const KNOWN_SPACES: u64 = 10_000;
/// Segments of a space's collection: searched in parallel, each indexed on its own.
const SEGMENTS: u64 = 2;

/// Points in Qdrant collections, one per space.
pub struct QdrantPointStore {
    client: Qdrant,
    prefix: String,
    graph_min: usize,
    dimensions: moka::future::Cache<Uuid, usize>,
}

impl From<QdrantError> for PointError {
    fn from(e: QdrantError) -> Self {
        match VectorError::from(e) {
            VectorError::Unavailable(m) => PointError::Unavailable(m),
            VectorError::Invalid(m) => PointError::Invalid("invalid_request", m),
            VectorError::Other(e) => PointError::Other(e),
        }
    }
}

/// Qdrant's id for ours: both are an unsigned integer or a UUID.
fn to_qdrant(id: &PointId) -> QdrantId {
    match id.as_str().parse::<u64>() {
        Ok(n) => n.into(),
        Err(_) => id.as_str().to_string().into(),
    }
}

fn from_qdrant(id: Option<QdrantId>) -> Result<PointId, PointError> {
    match id.and_then(|i| i.point_id_options) {
        Some(PointIdOptions::Num(n)) => Ok(PointId::from_stored(n.to_string())),
        Some(PointIdOptions::Uuid(u)) => PointId::parse(&u),
        None => Err(PointError::Other(anyhow::anyhow!(
            "Qdrant returned a point without an id"
        ))),
    }
}

fn to_json(payload: HashMap<String, QdrantValue>) -> Map<String, Value> {
    payload
        .into_iter()
        .map(|(k, v)| (k, v.into_json()))
        .collect()
}

/// Payload equality on scalars: strings and booleans match exactly, numbers by a one-value
/// range (so 1 matches a stored 1.0, as on the other stores). Keys are quoted, so a key with
/// dots, brackets or spaces is one key, not a path into nested values.
fn filter(query: &Map<String, Value>) -> Result<Option<Filter>, PointError> {
    if query.is_empty() {
        return Ok(None);
    }
    let mut conditions = Vec::with_capacity(query.len());
    for (key, value) in query {
        let key = quoted_key(key)?;
        conditions.push(match value {
            Value::String(s) => Condition::matches(key, s.clone()),
            Value::Bool(b) => Condition::matches(key, *b),
            Value::Number(n) => {
                let x = n.as_f64();
                Condition::range(
                    key,
                    Range {
                        gte: x,
                        lte: x,
                        ..Range::default()
                    },
                )
            }
            // validate_query lets only scalars through.
            other => Condition::matches(key, other.to_string()),
        });
    }
    Ok(Some(Filter::must(conditions)))
}

impl QdrantPointStore {
    /// A store on the Qdrant at `settings.url`; spaces of `graph_min` points or more get a
    /// graph. Checks the server answers.
    pub async fn open(settings: &QdrantSettings, graph_min: usize) -> Result<Self, PointError> {
        let client = connect(settings)?;
        client.health_check().await.map_err(|e| {
            PointError::Unavailable(format!("no Qdrant answers at {}: {e}", settings.url))
        })?;
        Ok(Self {
            client,
            prefix: settings.collection_prefix.clone(),
            graph_min,
            dimensions: moka::future::Cache::new(KNOWN_SPACES),
        })
    }

    fn collection(&self, space: Uuid) -> String {
        format!("{}_points_{}", self.prefix, space.simple())
    }

    /// The space's vector size, or `None` before its first upsert.
    async fn dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        if let Some(d) = self.dimensions.get(&space).await {
            return Ok(Some(d));
        }
        let info = match self.client.collection_info(self.collection(space)).await {
            Ok(r) => r.result,
            Err(e) if has_code(&e, tonic::Code::NotFound) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = info
            .and_then(|i| i.config)
            .and_then(|c| c.params)
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
            .and_then(|c| match c {
                vectors_config::Config::Params(p) => usize::try_from(p.size).ok(),
                vectors_config::Config::ParamsMap(_) => None,
            })
            .ok_or_else(|| {
                PointError::Other(anyhow::anyhow!(
                    "collection {} has no single unnamed vector",
                    self.collection(space)
                ))
            })?;
        self.dimensions.insert(space, size).await;
        Ok(Some(size))
    }

    /// Makes the space's collection; a concurrent first upsert may make it first.
    async fn create(&self, space: Uuid, dims: usize) -> Result<usize, PointError> {
        let size = u64::try_from(dims).map_err(anyhow::Error::new)?;
        // Qdrant indexes each segment that passes its threshold (kilobytes of vectors); with
        // two segments, each indexes at half the graph minimum, so the space as a whole gets
        // its graph at about the minimum, as on the other stores.
        let threshold_kb =
            (self.graph_min.saturating_mul(dims) * 4 / 1024 / SEGMENTS as usize).max(1);
        let create = CreateCollectionBuilder::new(self.collection(space))
            .vectors_config(VectorParamsBuilder::new(size, Distance::Cosine))
            .optimizers_config(
                OptimizersConfigDiffBuilder::default()
                    .default_segment_number(SEGMENTS)
                    .indexing_threshold(threshold_kb as u64),
            )
            // Qdrant's default 32 MB write-ahead log per collection adds up over many spaces.
            .wal_config(WalConfigDiffBuilder::default().wal_capacity_mb(4));
        match self.client.create_collection(create).await {
            Ok(_) => {}
            Err(e) if has_code(&e, tonic::Code::AlreadyExists) => {}
            Err(e) => return Err(e.into()),
        }
        self.dimensions(space)
            .await?
            .ok_or_else(|| PointError::Other(anyhow::anyhow!("a created collection is missing")))
    }
}

#[async_trait::async_trait]
impl PointStore for QdrantPointStore {
    fn backend_name(&self) -> &'static str {
        "points-qdrant"
    }

    async fn space_dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError> {
        self.dimensions(space).await
    }

    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError> {
        let dims = validate_batch(&points)?;
        let fixed = match self.dimensions(space).await? {
            Some(d) => d,
            None => self.create(space, dims).await?,
        };
        validate_vector(&points[0].vector, Some(fixed))?;
        let count = points.len();
        let structs: Vec<PointStruct> = points
            .into_iter()
            .map(|p| PointStruct::new(to_qdrant(&p.id), p.vector, Payload::from(p.payload)))
            .collect();
        self.client
            .upsert_points(UpsertPointsBuilder::new(self.collection(space), structs).wait(true))
            .await?;
        Ok(count)
    }

    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError> {
        validate_query(&query)?;
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(Vec::new());
        };
        validate_vector(&query.vector, Some(dims))?;
        let mut request = QueryPointsBuilder::new(self.collection(space))
            .query(query.vector.clone())
            .limit(query.limit as u64)
            .with_payload(true);
        if let Some(f) = filter(&query.filter)? {
            request = request.filter(f);
        }
        let response = self.client.query(request).await?;
        // min_score is applied here: Qdrant's threshold leaves out scores equal to it.
        let hits = ranked(
            response
                .result
                .into_iter()
                .map(|p| {
                    Ok(ScoredPoint {
                        id: from_qdrant(p.id)?,
                        score: p.score,
                        payload: to_json(p.payload),
                    })
                })
                .collect::<Result<Vec<_>, PointError>>()?,
            query.min_score,
        );
        if hits.is_empty() && !query.filter.is_empty() {
            let mut present = Vec::new();
            for key in query.filter.keys() {
                let found = self
                    .client
                    .count(
                        CountPointsBuilder::new(self.collection(space))
                            .filter(Filter::must_not([Condition::is_empty(quoted_key(key)?)]))
                            .exact(true),
                    )
                    .await?;
                if found.result.is_some_and(|r| r.count > 0) {
                    present.push(key.clone());
                }
            }
            unknown_filter_key(&query.filter, |k| present.iter().any(|p| p == k))?;
        }
        Ok(hits)
    }

    async fn get(&self, space: Uuid, id: &PointId) -> Result<Option<Point>, PointError> {
        if self.dimensions(space).await?.is_none() {
            return Ok(None);
        }
        let response = self
            .client
            .get_points(
                GetPointsBuilder::new(self.collection(space), vec![to_qdrant(id)])
                    .with_payload(true)
                    .with_vectors(true),
            )
            .await?;
        let Some(p) = response.result.into_iter().next() else {
            return Ok(None);
        };
        let vector = match p.vectors.and_then(|v| v.vectors_options) {
            Some(vectors_output::VectorsOptions::Vector(v)) => match v.into_vector() {
                vector_output::Vector::Dense(d) => d.data,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(Some(Point {
            id: id.clone(),
            vector,
            payload: to_json(p.payload),
        }))
    }

    async fn delete(&self, space: Uuid, id: &PointId) -> Result<bool, PointError> {
        if self.get(space, id).await?.is_none() {
            return Ok(false);
        }
        self.client
            .delete_points(
                DeletePointsBuilder::new(self.collection(space))
                    .points(PointsIdsList {
                        ids: vec![to_qdrant(id)],
                    })
                    .wait(true),
            )
            .await?;
        Ok(true)
    }

    async fn info(&self, space: Uuid) -> Result<PointsInfo, PointError> {
        let Some(dims) = self.dimensions(space).await? else {
            return Ok(PointsInfo {
                points: 0,
                unindexed: 0,
                dimensions: None,
                index: "exact",
            });
        };
        let info = self
            .client
            .collection_info(self.collection(space))
            .await?
            .result
            .unwrap_or_default();
        // Qdrant's own figure is an estimate; an exact count keeps this what the other stores say.
        let points = self
            .client
            .count(CountPointsBuilder::new(self.collection(space)).exact(true))
            .await?
            .result
            .map_or(0, |r| r.count);
        let indexed = info.indexed_vectors_count.unwrap_or(0);
        let optimising = info.status == CollectionStatus::Yellow as i32
            || info.status == CollectionStatus::Grey as i32;
        // A space past the graph minimum without a graph yet is waiting for Qdrant's optimizer.
        let waiting = indexed == 0 && points >= self.graph_min as u64;
        // Segments under the threshold are searched exactly; nothing waits for a graph unless
        // Qdrant is building one.
        let (index, unindexed) = if optimising || waiting {
            ("building", points.saturating_sub(indexed))
        } else if indexed > 0 {
            ("hnsw", 0)
        } else {
            ("exact", 0)
        };
        Ok(PointsInfo {
            points,
            unindexed,
            dimensions: Some(dims),
            index,
        })
    }

    async fn delete_space(&self, space: Uuid) -> Result<(), PointError> {
        match self.client.delete_collection(self.collection(space)).await {
            Ok(_) => {}
            Err(e) if has_code(&e, tonic::Code::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        self.dimensions.invalidate(&space).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_qdrant_kinds_and_back() {
        for raw in [
            "7",
            "18446744073709551615",
            "0b7a0f3c-5c3e-4f51-9d52-3c1f7e8a9b10",
        ] {
            let id = PointId::parse(raw).expect("id");
            assert_eq!(from_qdrant(Some(to_qdrant(&id))).expect("back"), id);
        }
    }

    #[test]
    fn filters_quote_keys_and_refuse_what_cannot_be_quoted() {
        let query: Map<String, Value> =
            serde_json::from_str(r#"{"n": 3, "x": 2.5, "tag": "a", "ok": true}"#).expect("json");
        let f = filter(&query).expect("valid").expect("filter");
        assert_eq!(f.must.len(), 4);
        assert!(filter(&Map::new()).expect("valid").is_none());
        let bad: Map<String, Value> = serde_json::from_str(r#"{"a\"b": 1}"#).expect("json");
        assert!(filter(&bad).is_err());
    }
}
