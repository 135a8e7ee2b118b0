//! `/api/v1/memories`: short texts a caller asks Kenning to remember (preferences, facts about a
//! project) and finds again by meaning. Each caller has their own memories, which nobody else can
//! read, search or delete; Kenning embeds them with its own embedder and keeps them in the point
//! store under a namespace derived from the caller, apart from every space.

use super::error::Errors;
use super::extract::ApiJson;
use super::limits::RouteClass;
use super::points::PointIdJson;
use super::{ApiError, AppState, Policy, Routes};
use crate::embed::Lane;
use crate::error::ServiceError;
use crate::points::{Point, PointError, PointId, PointQuery, DEFAULT_LIMIT};
use app::backend::Caller;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

/// Most memories in one upsert.
pub const MAX_BATCH: usize = 100;
/// Longest memory, in characters.
pub const MAX_TEXT_CHARS: usize = 8_000;
/// The payload key holding a memory's text; metadata may not use it.
const TEXT_KEY: &str = "text";

pub fn router() -> Routes {
    let own = Policy::signed();
    Routes::new()
        .get("/memories", own, info)
        .put("/memories", own, upsert)
        .post(
            "/memories/search",
            own.class(RouteClass::Search).reads(),
            search,
        )
        .get("/memories/{mid}", own, read)
        .delete("/memories/{mid}", own, remove)
}

/// The caller's own namespace in the point store: a name-based UUID (version 5), which never
/// equals a space id (version 7), so memories and spaces' points cannot meet.
fn namespace(caller: &Caller) -> Uuid {
    const MEMORIES: Uuid = Uuid::from_u128(0x6b65_6e6e_696e_6700_6d65_6d6f_7269_6573);
    let owner = caller.user_id.as_deref().unwrap_or("single-user");
    Uuid::new_v5(&MEMORIES, owner.as_bytes())
}

/// One memory as clients send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct MemoryIn {
    /// An unsigned integer or a UUID; a new UUID when missing. The same id replaces a memory.
    #[schema(value_type = Option<PointIdJson>)]
    id: Option<Value>,
    /// What to remember (1 to 8,000 characters).
    #[schema(min_length = 1, max_length = 8000)]
    text: String,
    /// Any JSON object (not using the key `text`); scalar values can be filtered on.
    #[serde(default)]
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
}

/// A batch of 1 to 100 memories, refused whole if any is bad.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpsertBody {
    #[schema(min_items = 1, max_items = 100)]
    memories: Vec<MemoryIn>,
}

impl UpsertBody {
    /// One memory with a new id, as the MCP `remember` tool stores it.
    pub(super) fn one(text: String, metadata: Map<String, Value>) -> Self {
        Self {
            memories: vec![MemoryIn {
                id: None,
                text,
                metadata,
            }],
        }
    }
}

/// What an upsert wrote: the memories' ids, in the order sent.
#[derive(Serialize, ToSchema)]
pub(super) struct Upserted {
    #[schema(value_type = Vec<PointIdJson>)]
    pub(super) ids: Vec<Value>,
}

/// A search by meaning.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchBody {
    /// Text to find memories like (1 to 8,000 characters).
    #[schema(min_length = 1, max_length = 8000)]
    query: String,
    /// Results wanted (default 10, at most 50).
    #[schema(minimum = 1, maximum = 50)]
    limit: Option<usize>,
    /// Drop memories scoring below this cosine similarity.
    #[schema(minimum = -1, maximum = 1)]
    min_score: Option<f32>,
    /// Metadata fields that must equal these scalar values.
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Map<String, Value>,
}

impl SearchBody {
    /// The `limit` memories nearest `query`, unfiltered, as the MCP `recall` tool asks.
    pub(super) fn nearest(query: String, limit: u32) -> Self {
        Self {
            query,
            limit: Some(limit as usize),
            min_score: None,
            filter: Map::new(),
        }
    }
}

/// A stored memory.
#[derive(Serialize, ToSchema)]
pub(super) struct MemoryOut {
    #[schema(value_type = PointIdJson)]
    id: Value,
    text: String,
    #[schema(value_type = Object)]
    metadata: Map<String, Value>,
    /// Cosine similarity to the query (searches only).
    #[serde(skip_serializing_if = "Option::is_none")]
    score: Option<f32>,
}

/// Search results, best first.
#[derive(Serialize, ToSchema)]
pub(super) struct Found {
    memories: Vec<MemoryOut>,
}

/// How many memories the caller has.
#[derive(Serialize, ToSchema)]
pub(super) struct Info {
    memories: u64,
    /// The embedding model new memories and searches use.
    model: String,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ServiceError::Invalid(crate::domain::InvalidInput::new(code, message)).into()
}

fn checked_text(text: &str, what: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(invalid(
            "invalid_input",
            format!("{what} must not be empty."),
        ));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(invalid(
            "invalid_input",
            format!("{what} must be at most {MAX_TEXT_CHARS} characters."),
        ));
    }
    Ok(())
}

async fn embed(state: &AppState, texts: Vec<String>) -> Result<Vec<Vec<f32>>, ApiError> {
    // A person is waiting on each of these calls: the query lane, never behind ingestion.
    Ok(state.embedder.embed(texts, Lane::Query).await?)
}

fn memory_of(id: &PointId, mut payload: Map<String, Value>, score: Option<f32>) -> MemoryOut {
    let text = match payload.remove(TEXT_KEY) {
        Some(Value::String(t)) => t,
        _ => String::new(),
    };
    MemoryOut {
        id: id.to_json(),
        text,
        metadata: payload,
        score,
    }
}

/// Remembers a batch of texts (embedded here), replacing memories with the same ids.
#[utoipa::path(put, operation_id = "memories_upsert", path = "/api/v1/memories", tag = "memories",
    request_body = UpsertBody,
    responses((status = 200, description = "Remembered", body = Upserted), Errors))]
#[tracing::instrument(skip_all, fields(memories = body.memories.len()))]
pub(super) async fn upsert(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<UpsertBody>,
) -> Result<Json<Upserted>, ApiError> {
    if body.memories.is_empty() || body.memories.len() > MAX_BATCH {
        return Err(invalid(
            "invalid_input",
            format!("memories must hold between 1 and {MAX_BATCH} items."),
        ));
    }
    let mut ids = Vec::with_capacity(body.memories.len());
    let mut texts = Vec::with_capacity(body.memories.len());
    let mut payloads = Vec::with_capacity(body.memories.len());
    for m in body.memories {
        checked_text(&m.text, "A memory's text")?;
        if m.metadata.contains_key(TEXT_KEY) {
            return Err(invalid(
                "invalid_metadata",
                "metadata may not use the key `text`; it holds the memory itself.",
            ));
        }
        let id = match &m.id {
            Some(raw) => PointId::from_json(raw)?,
            None => PointId::parse(&Uuid::now_v7().to_string())?,
        };
        let mut payload = m.metadata;
        payload.insert(TEXT_KEY.into(), Value::String(m.text.clone()));
        ids.push(id);
        texts.push(m.text);
        payloads.push(payload);
    }
    let vectors = embed(&state, texts).await?;
    let points = ids
        .iter()
        .cloned()
        .zip(vectors)
        .zip(payloads)
        .map(|((id, vector), payload)| Point {
            id,
            vector,
            payload,
        })
        .collect();
    state.points.upsert(namespace(&caller), points).await?;
    Ok(Json(Upserted {
        ids: ids.iter().map(PointId::to_json).collect(),
    }))
}

/// How many memories the caller has, and the model that embeds them.
#[utoipa::path(get, operation_id = "memories_info", path = "/api/v1/memories", tag = "memories",
    responses((status = 200, description = "The caller's memories", body = Info), Errors))]
#[tracing::instrument(skip_all)]
pub(super) async fn info(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Info>, ApiError> {
    let points = state.points.info(namespace(&caller)).await?;
    Ok(Json(Info {
        memories: points.points,
        model: state.embedder.model_id().to_string(),
    }))
}

/// The caller's memories nearest a text in meaning.
#[utoipa::path(post, operation_id = "memories_search", path = "/api/v1/memories/search", tag = "memories",
    request_body = SearchBody,
    responses((status = 200, description = "Memories, best first", body = Found), Errors))]
#[tracing::instrument(skip_all)]
pub(super) async fn search(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Found>, ApiError> {
    checked_text(&body.query, "query")?;
    let mut query = PointQuery {
        // Stands in for the query's embedding until the other fields are checked.
        vector: vec![1.0],
        limit: body.limit.unwrap_or(DEFAULT_LIMIT),
        min_score: body.min_score,
        filter: body.filter,
    };
    // Refuse a bad limit, score or filter before spending an embedding on it.
    crate::points::validate_query(&query)?;
    let mut vectors = embed(&state, vec![body.query]).await?;
    query.vector = vectors.pop().unwrap_or_default();
    let started = Instant::now();
    let hits = state
        .points
        .search(namespace(&caller), query)
        .await
        .map_err(|e| match e {
            PointError::Invalid(code @ "unknown_filter_field", _) => PointError::Invalid(
                code,
                "none of your memories has a metadata key the filter names, so it can never match"
                    .into(),
            ),
            other => other,
        })?;
    crate::metrics::global().record_vector_search(state.points.backend_name(), started.elapsed());
    Ok(Json(Found {
        memories: hits
            .into_iter()
            .map(|h| memory_of(&h.id, h.payload, Some(h.score)))
            .collect(),
    }))
}

/// One of the caller's memories.
#[utoipa::path(get, operation_id = "memories_read", path = "/api/v1/memories/{mid}", tag = "memories", params(("mid" = String, Path, description = "Memory id: an unsigned integer or a UUID", pattern = r"^([0-9]{1,19}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")),
    responses((status = 200, description = "The memory", body = MemoryOut), Errors))]
#[tracing::instrument(skip(state, caller))]
pub(super) async fn read(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(mid): Path<String>,
) -> Result<Json<MemoryOut>, ApiError> {
    let mid = PointId::parse(&mid)?;
    match state.points.get(namespace(&caller), &mid).await? {
        Some(p) => Ok(Json(memory_of(&p.id, p.payload, None))),
        None => Err(ServiceError::NotFound("memory").into()),
    }
}

/// Forgets one of the caller's memories.
#[utoipa::path(delete, operation_id = "memories_remove", path = "/api/v1/memories/{mid}", tag = "memories", params(("mid" = String, Path, description = "Memory id: an unsigned integer or a UUID", pattern = r"^([0-9]{1,19}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")),
    responses((status = 204, description = "Forgotten"), Errors))]
#[tracing::instrument(skip(state, caller))]
pub(super) async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(mid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let mid = PointId::parse(&mid)?;
    if state.points.delete(namespace(&caller), &mid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServiceError::NotFound("memory").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_caller_has_a_namespace_of_their_own_that_is_never_a_space_id() {
        let alice = Caller {
            user_id: Some("0192f1a0-0000-7000-8000-000000000001".into()),
            email: "alice@example.com".into(),
            is_admin: false,
            via_key: false,
        };
        let bob = Caller {
            user_id: Some("0192f1a0-0000-7000-8000-000000000002".into()),
            ..alice.clone()
        };
        assert_ne!(namespace(&alice), namespace(&bob));
        assert_eq!(namespace(&alice), namespace(&alice.clone()));
        assert_eq!(namespace(&alice).get_version_num(), 5);
        assert_ne!(namespace(&Caller::single_user()), namespace(&alice));
    }
}
