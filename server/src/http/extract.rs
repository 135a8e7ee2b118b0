//! Extractors whose rejections are JSON errors like every other API error.

use super::ApiError;
use crate::domain::{PageRequest, SpaceId};
use crate::error::ServiceError;
use crate::service::Service;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;

/// `axum::Json` with malformed bodies answered as `400 invalid_json` (or 413/415/422) in our
/// format. Every body must be a JSON object: serde would otherwise also read a struct from an
/// array of its fields in order, so `[null, null]` passed as an empty update.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected_json",
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    r.body_text(),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", r.body_text())
            }
        })?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_some_and(|b| *b != b'{') {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_fields",
                "The request body must be a JSON object.",
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(Self(value))
    }
}

/// `application/json` or any `application/*+json`, parameters allowed.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, code) = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "expected_json")
            }
            JsonRejection::JsonDataError(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_fields"),
            _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        ApiError::new(status, code, r.body_text())
    }
}

/// `axum::extract::Query` with bad query strings answered in our error format.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", r.body_text())
    }
}

/// `?limit=&offset=` for any list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page (default 50, at most 200).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Items to skip.
    #[param(minimum = 0)]
    pub offset: Option<i64>,
}

impl PageQuery {
    pub fn parse(&self) -> Result<PageRequest, ApiError> {
        PageRequest::parse(self.limit, self.offset).map_err(|e| ServiceError::from(e).into())
    }
}

/// The space a `/spaces/{id}/…` route names, parsed once here: an id that is not a UUID is a
/// `404 space_not_found`, the same answer as an unknown one, and handlers get a [`SpaceId`].
pub struct InSpace(pub SpaceId);

impl<S: Send + Sync> FromRequestParts<S> for InSpace {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        // No readable `id` parameter reads as an empty one: not a UUID, so no space.
        let params = RawPathParams::from_request_parts(parts, state).await.ok();
        let raw = params
            .as_ref()
            .and_then(|p| p.iter().find(|(name, _)| *name == "id"))
            .map_or("", |(_, raw)| raw);
        Ok(InSpace(Service::space_id(raw)?))
    }
}
