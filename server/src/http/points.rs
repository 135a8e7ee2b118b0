//! `/api/v1/spaces/{id}/points`: the programmatic vector API. Clients upsert their own vectors
//! with a payload, search them by cosine similarity, read and delete them by id.

use super::error::Errors;
use super::extract::ApiJson;
use super::extract::InSpace;
use super::limits::RouteClass;
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::Caller;
use crate::domain::{PageRequest, SpaceId};
use crate::error::ServiceError;
use crate::points::{Point, PointError, PointId, PointQuery, DEFAULT_LIMIT};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use kenning_api::Role;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::time::Instant;
use utoipa::ToSchema;
use uuid::Uuid;

pub fn router() -> Routes {
    let viewer = Policy::space(Role::Viewer);
    let editor = Policy::space(Role::Editor);
    Routes::new()
        .put(
            "/spaces/{id}/points",
            editor.class(RouteClass::Upload),
            upsert,
        )
        .get("/spaces/{id}/points", viewer, info)
        .post(
            "/spaces/{id}/points/search",
            viewer.class(RouteClass::Search).reads(),
            search,
        )
        .get("/spaces/{id}/points/{pid}", viewer, read)
        .delete("/spaces/{id}/points/{pid}", editor, remove)
}

/// A point id as JSON: an unsigned integer or a UUID string.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum PointIdJson {
    /// Up to 2^64 - 1, as in Qdrant (not JSON Schema's int64).
    #[schema(format = "uint64")]
    Number(u64),
    #[schema(value_type = String, format = "uuid")]
    Uuid(String),
}

/// One point as clients send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PointIn {
    #[schema(value_type = PointIdJson)]
    id: Value,
    /// Finite, not all zero; every point of a space has the same length (1 to 2,000).
    #[schema(min_items = 1, max_items = 2000)]
    vector: Vec<f32>,
    /// Any JSON object up to 64 KiB; scalar values can be filtered on.
    #[serde(default)]
    #[schema(value_type = Object)]
    payload: Map<String, Value>,
}

/// A batch upsert: 1 to 1,000 points, refused whole if any is bad.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct UpsertBody {
    #[schema(min_items = 1, max_items = 1000)]
    points: Vec<PointIn>,
}

/// A nearest-neighbour search by cosine similarity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SearchBody {
    /// Of the space's dimensions.
    #[schema(min_items = 1, max_items = 2000)]
    vector: Vec<f32>,
    /// Results wanted (default 10, at most 50).
    #[schema(minimum = 1, maximum = 50)]
    limit: Option<usize>,
    /// Drop results scoring below this cosine similarity.
    #[schema(minimum = -1, maximum = 1)]
    min_score: Option<f32>,
    /// Payload fields that must equal these scalar values.
    #[serde(default)]
    #[schema(value_type = Object)]
    filter: Map<String, Value>,
}

/// What an upsert wrote.
#[derive(Serialize, ToSchema)]
pub(super) struct Upserted {
    upserted: usize,
    dimensions: usize,
}

/// A point found by a search.
#[derive(Serialize, ToSchema)]
pub(super) struct Hit {
    #[schema(value_type = PointIdJson)]
    id: Value,
    score: f32,
    #[schema(value_type = Object)]
    payload: Map<String, Value>,
}

/// Search results, best first.
#[derive(Serialize, ToSchema)]
pub(super) struct Hits {
    points: Vec<Hit>,
}

/// A stored point.
#[derive(Serialize, ToSchema)]
pub(super) struct PointOut {
    #[schema(value_type = PointIdJson)]
    id: Value,
    vector: Vec<f32>,
    #[schema(value_type = Object)]
    payload: Map<String, Value>,
}

/// The cap on the vector lengths of one account's points. The embedded engine keeps points of
/// at most 16 lengths per server (a shard each), so without it one account could take them all.
pub struct LengthQuota {
    per_account: usize,
    /// Held while a bound caller's first write to a space is checked and made, so the cap
    /// cannot be raced past.
    first_writes: tokio::sync::Mutex<()>,
}

impl LengthQuota {
    /// A cap of `per_account` lengths (0: none).
    pub fn new(per_account: usize) -> Self {
        Self {
            per_account,
            first_writes: tokio::sync::Mutex::new(()),
        }
    }

    /// The cap that applies to `caller`: accounts that are not admins have one.
    fn bound(&self, caller: &Caller) -> Option<usize> {
        (self.per_account > 0 && !caller.is_admin && caller.user_id.is_some())
            .then_some(self.per_account)
    }
}

/// Refuses points of a length new to the caller once the spaces they may write to hold points
/// of `limit` lengths. Only a space's first points can add a length (later ones must match
/// it), so a space that has points costs nothing here.
async fn check_length_quota(
    state: &AppState,
    limit: usize,
    caller: &Caller,
    space: Uuid,
    dims: usize,
) -> Result<(), ApiError> {
    // Checked again under the lock: a racing first write may have fixed it meanwhile.
    if state.points.space_dimensions(space).await?.is_some() {
        return Ok(());
    }
    let user = crate::auth::caller_account(caller)?;
    let store = state.service.store();
    let mut lengths = BTreeSet::new();
    let mut page = PageRequest {
        limit: PageRequest::MAX_LIMIT,
        offset: 0,
    };
    loop {
        let spaces = store
            .list_spaces_of(user, page)
            .await
            .map_err(|e| ServiceError::from_store(e, "space"))?;
        for other in &spaces.items {
            let Ok(id) = Uuid::parse_str(&other.id) else {
                continue;
            };
            if id == space {
                continue;
            }
            let role = store
                .member_role(id, user)
                .await
                .map_err(|e| ServiceError::from_store(e, "space"))?;
            if role < Some(Role::Editor) {
                continue;
            }
            if let Some(d) = state.points.space_dimensions(id).await? {
                lengths.insert(d);
            }
        }
        match spaces.next_offset() {
            Some(offset) => page.offset = offset,
            None => break,
        }
    }
    if lengths.contains(&dims) || lengths.len() < limit {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "point_length_quota",
        format!(
            "the spaces you can write to already hold points of {limit} vector lengths \
             ({lengths:?}), the most one account may use; send vectors of one of those lengths, \
             or delete the points of one length first"
        ),
    ))
}

/// The space must exist: points of unknown spaces are a 404, never silently created.
async fn space(state: &AppState, id: SpaceId) -> Result<Uuid, ApiError> {
    let found = state.service.get_space(id).await?;
    Uuid::parse_str(&found.id).map_err(|e| ServiceError::Internal(e.into()).into())
}

/// The space a read addresses: trusted from a short-lived cache, since a read of a space
/// deleted a moment ago finds nothing either way.
async fn read_space(state: &AppState, id: SpaceId) -> Result<Uuid, ApiError> {
    Ok(state.service.existing_space(id).await?)
}

/// Inserts or replaces a batch of points; the space's first upsert fixes its dimensions.
#[utoipa::path(put, operation_id = "points_upsert", path = "/api/v1/spaces/{id}/points", tag = "points", params(("id" = String, Path, description = "Space id")),
    request_body = UpsertBody,
    responses((status = 200, description = "Written", body = Upserted), Errors))]
#[tracing::instrument(skip(state, body), fields(points = body.points.len()))]
pub(super) async fn upsert(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    ApiJson(body): ApiJson<UpsertBody>,
) -> Result<Json<Upserted>, ApiError> {
    let space = space(&state, id).await?;
    let points = body
        .points
        .into_iter()
        .map(|p| {
            Ok(Point {
                id: PointId::from_json(&p.id)?,
                vector: p.vector,
                payload: p.payload,
            })
        })
        .collect::<Result<Vec<_>, PointError>>()?;
    let dimensions = points.first().map_or(0, |p| p.vector.len());
    let first = match state.point_lengths.bound(&caller) {
        // Only a space's first points can add a length; later ones must match it.
        Some(limit) if state.points.space_dimensions(space).await?.is_none() => Some(limit),
        _ => None,
    };
    let upserted = match first {
        Some(limit) => {
            // A space's first points fix its length: check and write as one step, so writes
            // racing into several new spaces cannot slip past the cap together.
            let _first = state.point_lengths.first_writes.lock().await;
            check_length_quota(&state, limit, &caller, space, dimensions).await?;
            state.points.upsert(space, points).await?
        }
        None => state.points.upsert(space, points).await?,
    };
    Ok(Json(Upserted {
        upserted,
        dimensions,
    }))
}

/// How many points a space has, its dimensions and the state of its index.
#[utoipa::path(get, operation_id = "points_info", path = "/api/v1/spaces/{id}/points", tag = "points", params(("id" = String, Path, description = "Space id")),
    responses((status = 200, description = "The space's points", body = crate::points::PointsInfo), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn info(
    State(state): State<AppState>,
    InSpace(id): InSpace,
) -> Result<Json<crate::points::PointsInfo>, ApiError> {
    let space = space(&state, id).await?;
    Ok(Json(state.points.info(space).await?))
}

/// The points nearest a vector, by cosine similarity.
#[utoipa::path(post, operation_id = "points_search", path = "/api/v1/spaces/{id}/points/search", tag = "points", params(("id" = String, Path, description = "Space id")),
    request_body = SearchBody,
    responses((status = 200, description = "Points, best first", body = Hits), Errors))]
#[tracing::instrument(skip(state, body))]
pub(super) async fn search(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    ApiJson(body): ApiJson<SearchBody>,
) -> Result<Json<Hits>, ApiError> {
    let space = read_space(&state, id).await?;
    let query = PointQuery {
        vector: body.vector,
        limit: body.limit.unwrap_or(DEFAULT_LIMIT),
        min_score: body.min_score,
        filter: body.filter,
    };
    let started = Instant::now();
    let hits = state.points.search(space, query).await?;
    crate::metrics::global().record_vector_search(state.points.backend_name(), started.elapsed());
    let points = hits
        .into_iter()
        .map(|h| Hit {
            id: h.id.to_json(),
            score: h.score,
            payload: h.payload,
        })
        .collect();
    Ok(Json(Hits { points }))
}

/// One point with its vector and payload.
#[utoipa::path(get, operation_id = "points_read", path = "/api/v1/spaces/{id}/points/{pid}", tag = "points", params(("id" = String, Path, description = "Space id"), ("pid" = String, Path, description = "Point id: an unsigned integer or a UUID", pattern = r"^([0-9]{1,19}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")),
    responses((status = 200, description = "The point", body = PointOut), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn read(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, pid)): Path<(String, String)>,
) -> Result<Json<PointOut>, ApiError> {
    let space = read_space(&state, id).await?;
    let pid = PointId::parse(&pid)?;
    match state.points.get(space, &pid).await? {
        Some(p) => Ok(Json(PointOut {
            id: p.id.to_json(),
            vector: p.vector,
            payload: p.payload,
        })),
        None => Err(ServiceError::NotFound("point").into()),
    }
}

/// Deletes a point.
#[utoipa::path(delete, operation_id = "points_remove", path = "/api/v1/spaces/{id}/points/{pid}", tag = "points", params(("id" = String, Path, description = "Space id"), ("pid" = String, Path, description = "Point id: an unsigned integer or a UUID", pattern = r"^([0-9]{1,19}|[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})$")),
    responses((status = 204, description = "Deleted"), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn remove(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, pid)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let space = space(&state, id).await?;
    let pid = PointId::parse(&pid)?;
    if state.points.delete(space, &pid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ServiceError::NotFound("point").into())
    }
}
