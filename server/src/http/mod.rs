//! HTTP: the REST API under `/api/v1`, the operational endpoints and the middleware stack.

pub mod audit;
mod auth;
mod chat;
pub mod csrf;
mod documents;
mod error;
mod extract;
pub mod guard;
mod headers;
pub mod limits;
mod mcp;
mod memories;
pub(crate) mod openai;
pub mod openapi;
mod ops;
mod points;
mod sources;
mod spaces;

pub use error::ApiError;
pub use headers::security_headers;
pub use points::LengthQuota;

use crate::chat::Chat;
use crate::embed::Embedder;
use crate::points::PointStore;
use crate::service::Service;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::StatusCode;
use axum::Router;
use leptos::prelude::LeptosOptions;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub chat: Arc<Chat>,
    pub embedder: Arc<dyn Embedder>,
    pub points: Arc<dyn PointStore>,
    /// Sign-in, keys and roles.
    pub auth: Arc<crate::auth::Auth>,
    /// The shared `/health` report.
    pub health: Arc<crate::health::HealthCache>,
    /// The per-account cap on the vector lengths of points.
    pub point_lengths: Arc<LengthQuota>,
    pub leptos_options: LeptosOptions,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}

/// The versioned REST API; unknown paths under it answer with a JSON 404. Uploads get their own,
/// longer time limit; everything else the ordinary one.
pub fn api_router(
    request_timeout: Duration,
    upload_timeout: Duration,
    max_json_bytes: usize,
    max_points_bytes: usize,
) -> Router<AppState> {
    Router::new()
        // Batches of vectors are larger than other JSON bodies; they get their own limit.
        .merge(
            points::router()
                .layer(timeout(request_timeout))
                .layer(DefaultBodyLimit::max(max_points_bytes)),
        )
        .merge(memories::router().layer(timeout(request_timeout)))
        .merge(spaces::router().layer(timeout(request_timeout)))
        .merge(ops::api_router().layer(timeout(request_timeout)))
        .merge(auth::router().layer(timeout(request_timeout)))
        .merge(documents::router().layer(timeout(request_timeout)))
        .merge(documents::upload_router().layer(timeout(upload_timeout)))
        .merge(sources::router().layer(timeout(request_timeout)))
        // Answers stream for as long as the chat's own answer timeout allows; this limit only
        // covers the time to the response head (retrieval), not the stream.
        .merge(chat::router().layer(timeout(request_timeout)))
        .fallback(|| async { ApiError::not_found_route() })
        .layer(DefaultBodyLimit::max(max_json_bytes))
}

/// The OpenAI-compatible API, mounted at `/v1`. A whole (non-streamed) answer arrives only once
/// it is generated, so completions get the answer timeout on top of the request timeout.
pub fn openai_router(
    request_timeout: Duration,
    answer_timeout: Duration,
    max_json_bytes: usize,
) -> Router<AppState> {
    openai::router(request_timeout, request_timeout + answer_timeout)
        .layer(DefaultBodyLimit::max(max_json_bytes))
}

/// The MCP server, mounted at `/mcp`: its tools may answer questions, so it gets the answer
/// timeout on top of the request timeout.
pub fn mcp_router(
    state: AppState,
    audit: Arc<crate::http::audit::Audit>,
    request_timeout: Duration,
    answer_timeout: Duration,
    max_json_bytes: usize,
) -> Router<AppState> {
    Router::new()
        .route_service(mcp::PATH, mcp::service(state, audit, max_json_bytes))
        .layer(timeout(request_timeout + answer_timeout))
}

/// A time limit that answers 408 instead of hanging.
pub fn timeout(limit: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

/// Liveness, readiness and the health report.
pub fn ops_router() -> Router<AppState> {
    ops::router()
}
