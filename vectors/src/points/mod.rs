//! Points: the programmatic vector API (`/api/v1/spaces/{id}/points`). Clients bring their own
//! vectors (any model, 1–2,000 dimensions) with a JSON payload; Kenning stores, searches, reads
//! and deletes them. A space's first upsert fixes its points' dimensions, like a Qdrant
//! collection's vector size, so dimensions are never mixed. Points live apart from the passages
//! Kenning embeds itself: they never show up in answers.
//!
//! Backends: `sqlite` keeps the rows durable in the embedded database and searches an in-memory
//! copy of each space's vectors (exact scan, or an HNSW graph once a space is large);
//! `postgres` keeps a pgvector table per dimension with an HNSW index; `qdrant` a Qdrant
//! collection per space; `edge` a Qdrant Edge shard per vector length in `DATA_DIR/edge/points`.

mod edge;
mod passages;
mod postgres;
mod qdrant;
mod sqlite;

pub use edge::EdgePointStore;
pub use passages::EmbeddedVectorStore;
pub use postgres::PgPointStore;
pub use qdrant::QdrantPointStore;
pub use sqlite::SqlitePointStore;

pub(crate) use crate::vector::{dot, normalised};
use serde_json::{Map, Value};
use uuid::Uuid;

/// Most dimensions a point may have (pgvector's HNSW limit, kept on every backend alike).
pub const MAX_DIMENSIONS: usize = 2000;
/// Most points in one upsert request.
pub const MAX_BATCH: usize = 1000;
/// Largest payload of one point, serialized, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Results returned when the client does not say.
pub const DEFAULT_LIMIT: usize = 10;
/// Most results one search may ask for.
pub const MAX_LIMIT: usize = 50;

/// Failures of a point store.
#[derive(Debug, thiserror::Error)]
pub enum PointError {
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("point store unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for PointError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                PointError::Unavailable(e.to_string())
            }
            // PostgreSQL refuses NUL in text (22021) and `\u0000` in JSON (22P05): the client's
            // payload, a 400, not a server failure.
            sqlx::Error::Database(ref db)
                if matches!(db.code().as_deref(), Some("22021" | "22P05")) =>
            {
                PointError::Invalid(
                    "invalid_payload",
                    "Payloads may not contain NUL characters (U+0000).".into(),
                )
            }
            other => PointError::Other(anyhow::Error::new(other)),
        }
    }
}

/// A point id as Qdrant takes them: an unsigned integer or a UUID, kept in one canonical text
/// form (decimal digits, or a lower-case hyphenated UUID) so `7` and `"7"` are the same point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PointId(String);

impl PointId {
    /// Parses an id from a URL path segment.
    pub fn parse(raw: &str) -> Result<Self, PointError> {
        let raw = raw.trim();
        if !raw.is_empty() && raw.len() <= 20 && raw.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = raw.parse::<u64>() {
                return Ok(Self(n.to_string()));
            }
        }
        Uuid::parse_str(raw)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| {
                PointError::Invalid(
                    "invalid_point_id",
                    format!("point ids are unsigned integers or UUIDs, not {raw:?}"),
                )
            })
    }

    /// Parses an id from a JSON request body: a number or a string.
    pub fn from_json(value: &Value) -> Result<Self, PointError> {
        match value {
            Value::Number(n) => n.as_u64().map(|n| Self(n.to_string())).ok_or_else(|| {
                PointError::Invalid(
                    "invalid_point_id",
                    format!("numeric point ids are unsigned integers, not {n}"),
                )
            }),
            Value::String(s) => Self::parse(s),
            other => Err(PointError::Invalid(
                "invalid_point_id",
                format!("point ids are unsigned integers or UUIDs, not {other}"),
            )),
        }
    }

    /// The id of a UUID, in its canonical form.
    pub fn from_uuid(id: Uuid) -> Self {
        Self(id.hyphenated().to_string())
    }

    /// Rebuilds an id read back from a store (already canonical).
    pub(crate) fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The canonical text form, as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as clients sent it: a JSON number for integer ids, a string for UUIDs.
    pub fn to_json(&self) -> Value {
        match self.0.parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(self.0.clone()),
        }
    }
}

/// One stored point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: Map<String, Value>,
}

/// A search within one space's points.
#[derive(Debug, Clone)]
pub struct PointQuery {
    pub vector: Vec<f32>,
    pub limit: usize,
    /// Lowest cosine similarity returned.
    pub min_score: Option<f32>,
    /// Payload keys that must equal these scalar values.
    pub filter: Map<String, Value>,
}

/// A search hit: the point's id, its cosine similarity (1 is identical) and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub id: PointId,
    pub score: f32,
    pub payload: Map<String, Value>,
}

/// A space's points at a glance: how many, their dimensions, and how searches run right now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PointsInfo {
    pub points: u64,
    /// Points written since the graph last caught up; searches scan them exactly meanwhile.
    pub unindexed: u64,
    pub dimensions: Option<usize>,
    /// `exact` (a scan), `building` (a graph is being built; scans answer meanwhile) or `hnsw`.
    #[schema(value_type = String)]
    pub index: &'static str,
}

/// Stores and searches client-supplied vectors, per space.
#[async_trait::async_trait]
pub trait PointStore: Send + Sync + 'static {
    /// Short backend name for health reports and metrics.
    fn backend_name(&self) -> &'static str;
    /// Inserts or replaces points; all must have the space's dimensions (the first upsert sets them).
    async fn upsert(&self, space: Uuid, points: Vec<Point>) -> Result<usize, PointError>;
    /// Nearest points by cosine similarity, best first, ties broken by id.
    async fn search(&self, space: Uuid, query: PointQuery) -> Result<Vec<ScoredPoint>, PointError>;
    /// One point, with its vector as it was stored.
    async fn get(&self, space: Uuid, id: &PointId) -> Result<Option<Point>, PointError>;
    /// Removes one point; false when there was none.
    async fn delete(&self, space: Uuid, id: &PointId) -> Result<bool, PointError>;
    /// The space's vector length, or `None` while it has no points: what `info` says of it,
    /// without counting the points.
    async fn space_dimensions(&self, space: Uuid) -> Result<Option<usize>, PointError>;
    /// Counts and index state, for clients and benchmarks waiting for an index to be ready.
    async fn info(&self, space: Uuid) -> Result<PointsInfo, PointError>;
    /// Removes every point of a deleted space, and its fixed dimensions.
    async fn delete_space(&self, space: Uuid) -> Result<(), PointError>;
}

/// Checks a vector's values and, when the space already has them, its dimensions.
pub fn validate_vector(vector: &[f32], dimensions: Option<usize>) -> Result<(), PointError> {
    if vector.is_empty() || vector.len() > MAX_DIMENSIONS {
        return Err(PointError::Invalid(
            "invalid_vector",
            format!(
                "vectors have 1 to {MAX_DIMENSIONS} dimensions, not {}",
                vector.len()
            ),
        ));
    }
    if let Some(d) = dimensions {
        if vector.len() != d {
            return Err(PointError::Invalid(
                "wrong_dimensions",
                format!(
                    "this space's points have {d} dimensions; the vector has {}",
                    vector.len()
                ),
            ));
        }
    }
    if vector.iter().any(|x| !x.is_finite()) {
        return Err(PointError::Invalid(
            "invalid_vector",
            "vectors must not contain NaN or infinity".into(),
        ));
    }
    if vector.iter().all(|x| *x == 0.0) {
        return Err(PointError::Invalid(
            "invalid_vector",
            "an all-zero vector has no direction to compare by cosine".into(),
        ));
    }
    Ok(())
}

/// Checks a batch before anything is written: size, ids unique, one dimension, payload sizes.
pub fn validate_batch(points: &[Point]) -> Result<usize, PointError> {
    if points.is_empty() || points.len() > MAX_BATCH {
        return Err(PointError::Invalid(
            "invalid_batch",
            format!(
                "send 1 to {MAX_BATCH} points per request, not {}",
                points.len()
            ),
        ));
    }
    let dims = points[0].vector.len();
    let mut seen = std::collections::HashSet::with_capacity(points.len());
    for p in points {
        validate_vector(&p.vector, Some(dims)).map_err(|e| match e {
            PointError::Invalid("wrong_dimensions", _) => PointError::Invalid(
                "wrong_dimensions",
                format!(
                    "all points of a request need the same dimensions ({dims}); point {} has {}",
                    p.id.as_str(),
                    p.vector.len()
                ),
            ),
            other => other,
        })?;
        if !seen.insert(&p.id) {
            return Err(PointError::Invalid(
                "duplicate_point_id",
                format!("point {} appears twice in the request", p.id.as_str()),
            ));
        }
        let size = serde_json::to_vec(&p.payload).map(|v| v.len()).unwrap_or(0);
        if size > MAX_PAYLOAD_BYTES {
            return Err(PointError::Invalid(
                "payload_too_large",
                format!(
                    "point {}'s payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                    p.id.as_str()
                ),
            ));
        }
    }
    Ok(dims)
}

/// Checks a query: vector values, limit range, score bound, scalar-only filter values.
pub fn validate_query(query: &PointQuery) -> Result<(), PointError> {
    validate_vector(&query.vector, None)?;
    if query.limit == 0 || query.limit > MAX_LIMIT {
        return Err(PointError::Invalid(
            "invalid_limit",
            format!("limit is 1 to {MAX_LIMIT}, not {}", query.limit),
        ));
    }
    if let Some(m) = query.min_score {
        if !m.is_finite() || !(-1.0..=1.0).contains(&m) {
            return Err(PointError::Invalid(
                "invalid_min_score",
                format!("min_score is a cosine similarity between -1 and 1, not {m}"),
            ));
        }
    }
    for (key, value) in &query.filter {
        if !matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_)) {
            return Err(PointError::Invalid(
                "invalid_filter",
                format!("filter values are strings, numbers or booleans; {key:?} is {value}"),
            ));
        }
    }
    Ok(())
}

/// The error for a filter naming a payload key that no point of the space has: such a filter
/// can never match, and is almost always a misspelt key, so it is refused rather than answered
/// with nothing (asked only when a filtered search found nothing, so it costs no hit a thing).
/// A backend's hits as every store returns them: `min_score` applied (a score equal to it
/// stays), best first, ties in id order.
pub(crate) fn ranked(mut hits: Vec<ScoredPoint>, min_score: Option<f32>) -> Vec<ScoredPoint> {
    let min = min_score.unwrap_or(f32::NEG_INFINITY);
    hits.retain(|p| p.score >= min);
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    hits
}

/// A payload key in Qdrant's path syntax (Edge and server alike), quoted, so a key with dots,
/// brackets or spaces is one key as on the other stores, not a path into nested values. Quotes
/// and backslashes cannot be quoted there, so keys holding them are refused.
pub(crate) fn quoted_key(key: &str) -> Result<String, PointError> {
    if key.contains(['"', '\\']) {
        return Err(PointError::Invalid(
            "invalid_filter",
            format!("filter keys may not contain quotes or backslashes: {key:?}"),
        ));
    }
    Ok(format!("\"{key}\""))
}

pub fn unknown_filter_key(
    filter: &Map<String, Value>,
    mut has_key: impl FnMut(&str) -> bool,
) -> Result<(), PointError> {
    match filter.keys().find(|k| !has_key(k)) {
        Some(key) => Err(PointError::Invalid(
            "unknown_filter_field",
            format!(
                "no point in this space has the payload key {key:?}, so the filter can never match"
            ),
        )),
        None => Ok(()),
    }
}

/// Whether a payload has every filter key with an equal scalar value (numbers compare by value,
/// so 1 matches 1.0, as in PostgreSQL's jsonb).
pub fn matches_filter(payload: &Map<String, Value>, filter: &Map<String, Value>) -> bool {
    filter
        .iter()
        .all(|(key, want)| match (payload.get(key), want) {
            (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Some(have), want) => have == want,
            (None, _) => false,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_integers_or_uuids_in_one_canonical_form() {
        assert_eq!(
            PointId::parse("7").unwrap(),
            PointId::from_json(&json!(7)).unwrap()
        );
        assert_eq!(PointId::parse("007").unwrap().as_str(), "7");
        let u = "5B4E6B1C-5D1A-4C55-9C1E-2B4F0C8E9A10";
        assert_eq!(
            PointId::parse(u).unwrap().as_str(),
            "5b4e6b1c-5d1a-4c55-9c1e-2b4f0c8e9a10"
        );
        assert_eq!(PointId::parse("7").unwrap().to_json(), json!(7));
        assert!(PointId::parse("seven").is_err());
        assert!(PointId::parse("").is_err());
        assert!(PointId::from_json(&json!(-1)).is_err());
        assert!(PointId::from_json(&json!(1.5)).is_err());
        assert!(PointId::from_json(&json!(null)).is_err());
        assert!(PointId::parse("99999999999999999999999").is_err());
    }

    fn point(id: u64, vector: Vec<f32>) -> Point {
        Point {
            id: PointId::from_json(&json!(id)).unwrap(),
            vector,
            payload: Map::new(),
        }
    }

    #[test]
    fn batches_are_refused_whole_when_any_point_is_bad() {
        assert_eq!(validate_batch(&[point(1, vec![1.0, 0.0])]).unwrap(), 2);
        assert!(validate_batch(&[]).is_err());
        let mixed = [point(1, vec![1.0, 0.0]), point(2, vec![1.0, 0.0, 0.0])];
        assert!(matches!(
            validate_batch(&mixed),
            Err(PointError::Invalid("wrong_dimensions", _))
        ));
        let dup = [point(1, vec![1.0]), point(1, vec![2.0])];
        assert!(matches!(
            validate_batch(&dup),
            Err(PointError::Invalid("duplicate_point_id", _))
        ));
        assert!(validate_batch(&[point(1, vec![f32::NAN])]).is_err());
        assert!(validate_batch(&[point(1, vec![0.0, 0.0])]).is_err());
        let mut big = point(1, vec![1.0]);
        big.payload
            .insert("text".into(), json!("x".repeat(MAX_PAYLOAD_BYTES)));
        assert!(matches!(
            validate_batch(&[big]),
            Err(PointError::Invalid("payload_too_large", _))
        ));
    }

    #[test]
    fn filters_match_scalars_and_numbers_by_value() {
        let payload = json!({"user": "ana", "n": 1, "ok": true})
            .as_object()
            .cloned()
            .unwrap();
        let f = |v: Value| v.as_object().cloned().unwrap();
        assert!(matches_filter(&payload, &f(json!({"user": "ana"}))));
        assert!(matches_filter(&payload, &f(json!({"n": 1.0, "ok": true}))));
        assert!(!matches_filter(&payload, &f(json!({"user": "bo"}))));
        assert!(!matches_filter(&payload, &f(json!({"missing": 1}))));
        assert!(matches_filter(&payload, &Map::new()));
    }

    #[test]
    fn the_vectorised_dot_product_matches_the_plain_one() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - plain).abs() < 1e-4);
    }
}
