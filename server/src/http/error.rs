//! The API's one error type: a status plus `{ "error": { "code", "message" } }`.

use crate::error::ServiceError;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kenning_api::{ErrorBody, ErrorDetail};
use utoipa::IntoResponses;

/// An error on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
    /// Seconds the client should wait before trying again, when the refusal says so.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with an explicit status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            detail: ErrorDetail {
                code: code.to_string(),
                message: message.into(),
            },
            retry_after: None,
        }
    }

    /// For paths under `/api/v1` that match no route.
    pub fn not_found_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "route_not_found",
            "No such API endpoint.",
        )
    }
}

impl From<crate::points::PointError> for ApiError {
    fn from(e: crate::points::PointError) -> Self {
        ServiceError::from_points(e).into()
    }
}

/// The embedder could not serve a request now (busy, stopped or failing): a passing condition.
impl From<crate::embed::EmbedError> for ApiError {
    fn from(e: crate::embed::EmbedError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "embedder_unavailable",
            e.to_string(),
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Unauthenticated(..) => StatusCode::UNAUTHORIZED,
            ServiceError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServiceError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ServiceError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServiceError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServiceError::UnsupportedMedia(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ServiceError::Unavailable(_) | ServiceError::ReadOnlyStorage => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let retry_after = match &e {
            ServiceError::TooManyAttempts { wait_secs } => Some(*wait_secs),
            _ => None,
        };
        Self {
            status,
            detail: e.to_detail(),
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Shed work says when to come back, as a 429 does.
        let wait = self
            .retry_after
            .or((self.detail.code == "overloaded").then_some(5));
        let retry = wait.map(|w| [(header::RETRY_AFTER, w.max(1).to_string())]);
        // A 401 names the scheme that gets in (RFC 9110), so clients and MCP hosts know to
        // send an API key; Bearer never opens a browser's password dialog as Basic would.
        let challenge = (self.status == StatusCode::UNAUTHORIZED)
            .then_some([(header::WWW_AUTHENTICATE, "Bearer realm=\"kenning\"")]);
        (
            self.status,
            retry,
            challenge,
            Json(ErrorBody { error: self.detail }),
        )
            .into_response()
    }
}

/// Every error answer of the API has the same body; these are the statuses any operation may
/// give besides its own success, so clients (and schema checkers) expect them.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Errors {
    /// Malformed JSON, query or multipart, or a value out of range.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No credentials, or a key that is unknown or revoked (`--auth password`).
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The caller's role in the space (or account) does not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such space, document, job, conversation or point (or not a well-formed id).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The request took longer than the server's request time limit.
    #[response(status = 408)]
    Timeout(ErrorBody),
    /// The change conflicts with what exists (a space name already taken).
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The body is larger than the configured limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not JSON (or the file type is not supported).
    #[response(status = 415)]
    UnsupportedMedia(ErrorBody),
    /// JSON of the wrong shape: a missing field or a value of the wrong type.
    #[response(status = 422)]
    InvalidFields(ErrorBody),
    /// Over the client's rate limit; `Retry-After` says when to come back.
    #[response(status = 429)]
    RateLimited(ErrorBody),
    /// A dependency is down or the server is at capacity; retry later.
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
