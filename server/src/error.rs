//! The error every service call returns, each variant with the status a client should see. It
//! sits below the services, auth and HTTP so that all of them can name it.

use crate::domain::InvalidInput;
use crate::points::PointError;
use crate::retrieve::SearchError;
use crate::store::StoreError;
use kenning_api::ErrorDetail;

/// Everything that can go wrong in a service call, each with the status a client should see.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    /// No caller, or credentials that do not check out; the code says which.
    #[error("{1}")]
    Unauthenticated(&'static str, String),
    /// Too much work waiting already; the client should retry later (503 with `Retry-After`).
    #[error("{0}")]
    Overloaded(String),
    /// A caller whose role does not allow the action.
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed attempts at one thing (signing in to one account); 429 with the wait.
    #[error("Too many failed attempts; try again in {wait_secs} s.")]
    TooManyAttempts { wait_secs: u64 },
    #[error("The file is larger than the limit of {limit} bytes.")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    UnsupportedMedia(String),
    #[error("The service is temporarily unavailable; try again shortly.")]
    Unavailable(String),
    #[error("Not enough storage space to accept the file.")]
    InsufficientStorage,
    #[error(
        "The server cannot store files now: its data directory is read-only. Try again later."
    )]
    ReadOnlyStorage,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    /// Stable machine-readable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::Invalid(i) => i.code,
            ServiceError::NotFound("space") => "space_not_found",
            ServiceError::NotFound("document") => "document_not_found",
            ServiceError::NotFound("job") => "job_not_found",
            ServiceError::NotFound("conversation") => "conversation_not_found",
            ServiceError::NotFound("point") => "point_not_found",
            ServiceError::NotFound("memory") => "memory_not_found",
            ServiceError::NotFound(_) => "not_found",
            ServiceError::Conflict(_) => "conflict",
            ServiceError::Unauthenticated(code, _) => code,
            ServiceError::Forbidden(_) => "forbidden",
            ServiceError::TooManyAttempts { .. } => "too_many_attempts",
            ServiceError::Overloaded(_) => "overloaded",
            ServiceError::TooLarge { .. } => "file_too_large",
            ServiceError::UnsupportedMedia(_) => "unsupported_media_type",
            ServiceError::Unavailable(_) => "unavailable",
            ServiceError::InsufficientStorage => "insufficient_storage",
            ServiceError::ReadOnlyStorage => "storage_read_only",
            ServiceError::Internal(_) => "internal",
        }
    }

    /// The error as the UI and the API show it: internals are logged here, never passed on.
    pub fn to_detail(&self) -> ErrorDetail {
        match self {
            ServiceError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            ServiceError::Unavailable(e) => tracing::warn!(error = %e, "dependency unavailable"),
            ServiceError::ReadOnlyStorage => tracing::error!("the data directory is read-only"),
            _ => {}
        }
        let message = match self {
            ServiceError::NotFound(what) => format!("The {what} does not exist."),
            other => other.to_string(),
        };
        ErrorDetail {
            code: self.code().to_string(),
            message,
        }
    }

    pub(crate) fn from_points(e: PointError) -> Self {
        match e {
            PointError::Invalid(code, message) => InvalidInput::new(code, message).into(),
            PointError::Unavailable(m) => ServiceError::Unavailable(m),
            PointError::Other(e) => ServiceError::Internal(e),
        }
    }

    pub(crate) fn from_store(e: StoreError, what: &'static str) -> Self {
        match e {
            StoreError::NotFound => ServiceError::NotFound(what),
            StoreError::Conflict(m) => ServiceError::Conflict(m),
            StoreError::Unavailable(m) => ServiceError::Unavailable(m),
            StoreError::Invalid(m) => InvalidInput::new("invalid_text", m).into(),
            StoreError::Other(e) => ServiceError::Internal(e),
        }
    }
}

pub(crate) fn search_error(e: SearchError) -> ServiceError {
    match e {
        SearchError::Invalid(m) => ServiceError::Invalid(InvalidInput {
            code: "invalid_search",
            message: m,
        }),
        SearchError::Store(s) => ServiceError::from_store(s, "space"),
        SearchError::Unavailable(m) => ServiceError::Unavailable(m),
    }
}
