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
pub mod policy;
mod sources;
mod spaces;

pub use error::ApiError;
pub use headers::security_headers;
pub use points::LengthQuota;
pub use policy::{Policy, Routes};

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

/// The time and size bounds the routes are built with.
pub struct Bounds {
    pub request_timeout: Duration,
    /// For uploads, which stream a whole file.
    pub upload_timeout: Duration,
    /// Added to the request timeout where an answer is generated.
    pub answer_timeout: Duration,
    pub max_json_bytes: usize,
    /// Batches of vectors are larger than other JSON bodies; they get their own limit.
    pub max_points_bytes: usize,
}

/// Every route the server declares, each with its policy: the REST API, its OpenAPI
/// description, the OpenAI-compatible API, MCP and the probes. The UI's pages are added apart.
pub fn declared(bounds: &Bounds, mcp: Routes) -> Routes {
    Routes::new()
        .nest("/api/v1", api_router(bounds))
        .get(openapi::PATH, Policy::public(), openapi::serve)
        .nest("/v1", openai_router(bounds))
        .merge(mcp)
        .merge(ops::router().map(|r| r.layer(timeout(bounds.request_timeout))))
}

/// The versioned REST API; unknown paths under it answer with a JSON 404. Uploads get their own,
/// longer time limit; everything else the ordinary one.
fn api_router(bounds: &Bounds) -> Routes {
    let request_timeout = bounds.request_timeout;
    let timed = |r: Router<AppState>| r.layer(timeout(request_timeout));
    Routes::new()
        .merge(points::router().map(|r| {
            r.layer(timeout(request_timeout))
                .layer(DefaultBodyLimit::max(bounds.max_points_bytes))
        }))
        .merge(memories::router().map(timed))
        .merge(spaces::router().map(timed))
        .merge(ops::api_router().map(timed))
        .merge(auth::router().map(timed))
        .merge(documents::router().map(timed))
        .merge(documents::upload_router().map(|r| r.layer(timeout(bounds.upload_timeout))))
        .merge(sources::router().map(timed))
        // Answers stream for as long as the chat's own answer timeout allows; this limit only
        // covers the time to the response head (retrieval), not the stream.
        .merge(chat::router().map(timed))
        .map(|r| {
            r.fallback(|| async { ApiError::not_found_route() })
                .layer(DefaultBodyLimit::max(bounds.max_json_bytes))
        })
}

/// The OpenAI-compatible API, mounted at `/v1`. A whole (non-streamed) answer arrives only once
/// it is generated, so completions get the answer timeout on top of the request timeout.
fn openai_router(bounds: &Bounds) -> Routes {
    openai::router(
        bounds.request_timeout,
        bounds.request_timeout + bounds.answer_timeout,
    )
    .map(|r| r.layer(DefaultBodyLimit::max(bounds.max_json_bytes)))
}

/// The MCP server, mounted at `/mcp`: its tools may answer questions, so it gets the answer
/// timeout on top of the request timeout.
pub fn mcp_router(state: AppState, audit: Arc<audit::Audit>, bounds: &Bounds) -> Routes {
    Routes::new()
        .service(
            mcp::PATH,
            mcp::POLICY,
            mcp::service(state, audit, bounds.max_json_bytes),
        )
        .map(|r| r.layer(timeout(bounds.request_timeout + bounds.answer_timeout)))
}

/// A time limit that answers 408 instead of hanging.
pub fn timeout(limit: Duration) -> TimeoutLayer {
    TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, limit)
}

/// The policy table of every declared route, MCP's included, without a running service.
#[cfg(test)]
pub(crate) fn test_policies() -> Arc<policy::Table> {
    let bounds = Bounds {
        request_timeout: Duration::from_secs(1),
        upload_timeout: Duration::from_secs(1),
        answer_timeout: Duration::from_secs(1),
        max_json_bytes: 1024,
        max_points_bytes: 1024,
    };
    let answer = tower::service_fn(|_req: axum::extract::Request| async {
        Ok::<_, std::convert::Infallible>(StatusCode::OK)
    });
    let mcp = Routes::new().service(mcp::PATH, mcp::POLICY, answer);
    declared(&bounds, mcp).into_parts().1
}
