//! `/api/v1/spaces/{id}/documents`: upload (multipart, streamed to disk), list and delete.

use super::error::Errors;
use super::extract::ApiQuery;
use super::extract::InSpace;
use super::extract::PageQuery;
use super::limits::RouteClass;
use super::{ApiError, AppState, Policy, Routes};
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::StatusCode;
use axum::Json;
use kenning_api::Role;
use kenning_api::{Chunk, Document, ErrorBody, Job, Page};

/// Everything but uploads: JSON-sized bodies and the ordinary time limit.
pub fn router() -> Routes {
    let viewer = Policy::space(Role::Viewer);
    Routes::new()
        .get("/spaces/{id}/documents", viewer, list)
        .get("/spaces/{id}/documents/{document_id}", viewer, read)
        .delete(
            "/spaces/{id}/documents/{document_id}",
            Policy::space(Role::Editor),
            remove,
        )
        .get(
            "/spaces/{id}/documents/{document_id}/chunks",
            viewer,
            chunks,
        )
        .get("/spaces/{id}/jobs/{job_id}", viewer, job)
        .post(
            "/spaces/{id}/search",
            viewer.class(RouteClass::Search).reads(),
            search,
        )
}

/// Uploads alone: the only route whose body may exceed the JSON limit and whose time limit is
/// the upload's. The service enforces the configured file limit byte by byte; this only lifts
/// axum's default so that limit can apply. See `startup` for the outer cap.
pub fn upload_router() -> Routes {
    let editor = Policy::space(Role::Editor).class(RouteClass::Upload);
    Routes::new()
        .post("/spaces/{id}/documents", editor, upload)
        .map(|r| r.layer(DefaultBodyLimit::disable()))
}

/// Lists a space's documents with their ingestion status and progress.
#[utoipa::path(get, operation_id = "documents_list", path = "/api/v1/spaces/{id}/documents", tag = "documents", params(("id" = String, Path, description = "Space id"), PageQuery),
    responses((status = 200, description = "A page of documents", body = Page<Document>), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn list(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Document>>, ApiError> {
    Ok(Json(state.service.list_documents(id, q.parse()?).await?))
}

/// `?key=` for an upload.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// Names the document across versions (a path or URL, up to 2,048 bytes); the file name when
    /// left out. A new upload under a key that already has a document becomes its next version
    /// and replaces it once indexed.
    pub key: Option<String>,
}

/// Accepts the first multipart field that carries a file (named `file` by convention).
/// 202 Accepted once the file and its ingestion job are durable (poll the document or its
/// `job_id` for progress); 200 with the existing document when identical content is already there.
/// Different content under a key (by default the file name) that already has a document is its
/// next version: the earlier one keeps answering until the new one is indexed, then goes.
#[utoipa::path(post, operation_id = "documents_upload", path = "/api/v1/spaces/{id}/documents", tag = "documents", params(("id" = String, Path, description = "Space id"), UploadQuery),
    request_body(content = UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Accepted: the file and its ingestion job are durable", body = Document),
        (status = 200, description = "Identical content is already in the space", body = Document),
        (status = 507, description = "Not enough disk space to store the file", body = ErrorBody),
        Errors))]
#[tracing::instrument(skip(state, multipart))]
pub(super) async fn upload(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    ApiQuery(q): ApiQuery<UploadQuery>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    let origin = crate::service::Origin {
        key: q.key,
        ..Default::default()
    };
    let mut multipart = multipart
        .map_err(|r| ApiError::new(StatusCode::BAD_REQUEST, "expected_multipart", r.body_text()))?;
    loop {
        let field = multipart.next_field().await.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_multipart", e.body_text())
        })?;
        let Some(field) = field else {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "missing_file",
                "The request has no file; send it as multipart/form-data in a field named \"file\".",
            ));
        };
        if field.name() != Some("file") && field.file_name().is_none() {
            continue;
        }
        let filename = field.file_name().map(str::to_owned);
        let mime = field.content_type().map(str::to_owned);
        let uploaded = state
            .service
            .upload_document(id, filename.as_deref(), mime.as_deref(), origin, field)
            .await?;
        let status = if uploaded.created {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        return Ok((status, Json(uploaded.document)));
    }
}

/// Deletes a document with its passages and vectors.
#[utoipa::path(delete, operation_id = "documents_remove", path = "/api/v1/spaces/{id}/documents/{document_id}", tag = "documents", params(("id" = String, Path, description = "Space id"), ("document_id" = String, Path, description = "Document id")),
    responses((status = 204, description = "Deleted"), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn remove(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, document_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.service.delete_document(id, &document_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One document with its ingestion status and progress.
#[utoipa::path(get, operation_id = "documents_read", path = "/api/v1/spaces/{id}/documents/{document_id}", tag = "documents", params(("id" = String, Path, description = "Space id"), ("document_id" = String, Path, description = "Document id")),
    responses((status = 200, description = "The document", body = Document), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn read(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, document_id)): Path<(String, String)>,
) -> Result<Json<Document>, ApiError> {
    Ok(Json(state.service.get_document(id, &document_id).await?))
}

/// A document's passages in order, with offsets into its text.
#[utoipa::path(get, operation_id = "documents_chunks", path = "/api/v1/spaces/{id}/documents/{document_id}/chunks", tag = "documents", params(("id" = String, Path, description = "Space id"), ("document_id" = String, Path, description = "Document id"), PageQuery),
    responses((status = 200, description = "A page of passages", body = Page<Chunk>), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn chunks(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, document_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Chunk>>, ApiError> {
    Ok(Json(
        state
            .service
            .list_chunks(id, &document_id, q.parse()?)
            .await?,
    ))
}

/// An ingestion job: phase, progress, attempts and the last error.
#[utoipa::path(get, operation_id = "documents_job", path = "/api/v1/spaces/{id}/jobs/{job_id}", tag = "documents", params(("id" = String, Path, description = "Space id"), ("job_id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job", body = Job), Errors))]
#[tracing::instrument(skip(state))]
pub(super) async fn job(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    Path((_, job_id)): Path<(String, String)>,
) -> Result<Json<Job>, ApiError> {
    Ok(Json(state.service.get_job(id, &job_id).await?))
}

/// Searches a space: `{query, mode: dense|keyword|hybrid, limit, min_score, document_id}`.
#[utoipa::path(post, operation_id = "documents_search", path = "/api/v1/spaces/{id}/search", tag = "documents", params(("id" = String, Path, description = "Space id")),
    request_body = kenning_api::SearchRequest,
    responses((status = 200, description = "Passages, best first", body = kenning_api::SearchResponse), Errors))]
#[tracing::instrument(skip(state, body))]
pub(super) async fn search(
    State(state): State<AppState>,
    InSpace(id): InSpace,
    super::extract::ApiJson(body): super::extract::ApiJson<kenning_api::SearchRequest>,
) -> Result<Json<kenning_api::SearchResponse>, ApiError> {
    Ok(Json(state.service.search(id, &body).await?))
}

/// The multipart form of an upload, for the API description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct UploadForm {
    /// The file; its type is detected from its content.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}
