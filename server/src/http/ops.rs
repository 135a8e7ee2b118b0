//! Operational endpoints for load balancers and orchestrators.

use super::{AppState, Policy, Routes};
use crate::health;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use kenning_api::HealthStatus;
use serde_json::json;

pub fn router() -> Routes {
    let probe = Policy::public().unlimited();
    Routes::new()
        .get("/health", probe, report)
        .get("/health/liveness", probe, liveness)
        .get("/health/readiness", probe, readiness)
        .get("/metrics", probe, prometheus)
}

/// Under `/api/v1`: the dashboard's data.
pub fn api_router() -> Routes {
    Routes::new()
        .get("/metrics/snapshot", Policy::signed(), snapshot)
        .get("/audit", Policy::admin(), audit)
}

/// The audit log of changes (who, what, when, from where, and the outcome), newest first.
#[utoipa::path(get, operation_id = "ops_audit", path = "/api/v1/audit", tag = "operations",
    params(super::extract::PageQuery),
    responses((status = 200, description = "A page of audit entries", body = kenning_api::Page<kenning_api::AuditEntry>), super::error::Errors))]
pub(super) async fn audit(
    State(state): State<AppState>,
    super::extract::ApiQuery(q): super::extract::ApiQuery<super::extract::PageQuery>,
) -> Result<Json<kenning_api::Page<kenning_api::AuditEntry>>, super::ApiError> {
    Ok(Json(state.service.list_audit(q.parse()?).await?))
}

/// Prometheus text exposition.
async fn prometheus(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.service.prometheus_metrics().await;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// What the dashboard draws: per-second history, per-route table, caches, breakers, jobs.
#[utoipa::path(get, operation_id = "ops_snapshot", path = "/api/v1/metrics/snapshot", tag = "operations",
    responses((status = 200, description = "The dashboard's data", body = kenning_api::MetricsSnapshot), super::error::Errors))]
pub(super) async fn snapshot(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.service.metrics_snapshot().await)
}

/// The process is up and serving; says nothing about dependencies.
#[utoipa::path(get, operation_id = "ops_liveness", path = "/health/liveness", tag = "operations",
    responses((status = 200, description = "`{\"status\": \"alive\"}`", body = Object)))]
pub(super) async fn liveness() -> impl IntoResponse {
    Json(json!({ "status": "alive" }))
}

/// Ready to take traffic: the metadata store answers.
#[utoipa::path(get, operation_id = "ops_readiness", path = "/health/readiness", tag = "operations",
    responses(
        (status = 200, description = "`{\"status\": \"ready\"}`", body = Object),
        (status = 503, description = "`{\"status\": \"not_ready\"}`, or `{\"status\": \"draining\"}` once shutdown has begun", body = Object)))]
pub(super) async fn readiness(State(state): State<AppState>) -> impl IntoResponse {
    if state.health.is_draining() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining" })),
        );
    }
    if health::store_ready(&state.service).await {
        (StatusCode::OK, Json(json!({ "status": "ready" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready" })),
        )
    }
}

/// Per-dependency report; 503 only when unhealthy, so degraded still serves.
#[utoipa::path(get, operation_id = "ops_report", path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Healthy or degraded", body = kenning_api::HealthReport),
        (status = 503, description = "Unhealthy", body = kenning_api::HealthReport)))]
pub(super) async fn report(
    State(state): State<AppState>,
    caller: Option<axum::Extension<crate::auth::Caller>>,
) -> impl IntoResponse {
    let mut report = state.health.report(&state.service).await;
    // With accounts, what failed and why (paths, addresses, errors) is for admins; everyone else
    // (load balancers included) learns each dependency's status only.
    let admin = caller.is_some_and(|c| c.is_admin);
    if state.auth.required() && !admin {
        for check in &mut report.checks {
            check.message = None;
        }
    }
    let status = if report.status == HealthStatus::Unhealthy {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (status, Json(report))
}
