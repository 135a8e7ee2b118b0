//! `/api/v1/spaces/{id}/chat`: answers as Server-Sent Events (`sources`, `token`…, `done` or
//! `error`), by POST with a JSON body or by GET with query parameters (for `EventSource`); and
//! the caller's conversations in the space (each is private to whoever started it).

use super::error::Errors;
use super::extract::InSpace;
use super::extract::PageQuery;
use super::extract::{ApiJson, ApiQuery};
use super::limits::RouteClass;
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::Caller;
use crate::chat::ChatEvent;
use crate::domain::SpaceId;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use futures::{Stream, StreamExt};
use kenning_api::Role;
use kenning_api::{ChatRequest, Conversation, Message, Page, SearchMode};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};

pub fn router() -> Routes {
    // Conversations belong to whoever started them (the service checks that), so any member
    // may rename or delete their own.
    let viewer = Policy::space(Role::Viewer);
    let ask = viewer.class(RouteClass::Chat).reads();
    Routes::new()
        .get("/spaces/{id}/chat", ask, ask_get)
        .post("/spaces/{id}/chat", ask, ask_post)
        .get("/spaces/{id}/conversations", viewer, conversations)
        .delete(
            "/spaces/{id}/conversations/{conversation_id}",
            viewer,
            delete_conversation,
        )
        .patch(
            "/spaces/{id}/conversations/{conversation_id}",
            viewer,
            rename_conversation,
        )
        .get(
            "/spaces/{id}/conversations/{conversation_id}/messages",
            viewer,
            messages,
        )
}

/// The query-string form of a chat request.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AskQuery {
    /// The question: not blank, at most 4,000 characters.
    #[param(min_length = 1, max_length = 4000, pattern = r"\S")]
    question: String,
    /// Continue this conversation; a new one is started when absent.
    conversation_id: Option<String>,
    #[serde(default)]
    #[param(inline)]
    mode: SearchMode,
    /// Passages to retrieve and number as sources (1 to 20).
    #[param(minimum = 1, maximum = 20)]
    max_sources: Option<i64>,
    /// Drop passages scoring below this.
    min_score: Option<f64>,
    /// Skip the answer cache and generate afresh.
    #[serde(default)]
    regenerate: bool,
}

/// One Server-Sent Event of an answer: `sources` first, a `token` per piece of text, then `done`
/// or `error`. Keep-alive comments carry no event.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct AnswerEvent {
    #[schema(value_type = String, pattern = "^(sources|token|done|error)$")]
    event: String,
    /// JSON: a `SourcesEvent`, `TokenEvent`, `DoneEvent` or `{code, message}` error, by event.
    data: String,
}

/// Asks a question; the answer streams as Server-Sent Events.
#[utoipa::path(post, operation_id = "chat_ask_post", path = "/api/v1/spaces/{id}/chat", tag = "chat", params(("id" = String, Path, description = "Space id")),
    request_body = ChatRequest,
    responses((status = 200, description = "Server-Sent Events: `sources` (a SourcesEvent), `token` (a TokenEvent) per piece of text, then `done` (a DoneEvent) or `error` (an ErrorDetail); each data line is JSON", content_type = "text/event-stream", body = AnswerEvent), Errors))]
#[tracing::instrument(skip(state, caller, req), fields(space = %id))]
pub(super) async fn ask_post(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<impl IntoResponse, ApiError> {
    answer(state, caller, id, req).await
}

/// Asks a question by query string, for `EventSource`; the answer streams as Server-Sent Events.
#[utoipa::path(get, operation_id = "chat_ask_get", path = "/api/v1/spaces/{id}/chat", tag = "chat", params(("id" = String, Path, description = "Space id"), AskQuery),
    responses((status = 200, description = "Server-Sent Events: `sources` (a SourcesEvent), `token` (a TokenEvent) per piece of text, then `done` (a DoneEvent) or `error` (an ErrorDetail); each data line is JSON", content_type = "text/event-stream", body = AnswerEvent), Errors))]
#[tracing::instrument(skip(state, caller, q), fields(space = %id))]
pub(super) async fn ask_get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    ApiQuery(q): ApiQuery<AskQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let req = ChatRequest {
        question: q.question,
        conversation_id: q.conversation_id,
        mode: q.mode,
        max_sources: q.max_sources,
        min_score: q.min_score,
        regenerate: q.regenerate,
    };
    answer(state, caller, id, req).await
}

/// Answers for `caller`, who owns the conversation the answer is stored in.
async fn answer(
    state: AppState,
    caller: Caller,
    id: SpaceId,
    req: ChatRequest,
) -> Result<impl IntoResponse, ApiError> {
    let asked = state.chat.ask(&caller, id, req).await?;
    Ok(sse(asked.events))
}

/// Frames chat events as SSE; a comment every 15 s keeps idle proxies from closing the stream.
/// Dropping the response (the client left) drops the event stream, which stops generation.
pub fn sse(
    events: impl Stream<Item = ChatEvent> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let frames = events.map(|e| Ok(Event::default().event(e.name()).data(e.json().to_string())));
    Sse::new(frames).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Lists the caller's conversations in a space, most recent first; other members' are private
/// to them and never listed.
#[utoipa::path(get, operation_id = "chat_conversations", path = "/api/v1/spaces/{id}/conversations", tag = "chat", params(("id" = String, Path, description = "Space id"), PageQuery),
    responses((status = 200, description = "A page of the caller's conversations", body = Page<Conversation>), Errors))]
pub(super) async fn conversations(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    Ok(Json(
        state
            .service
            .list_conversations(&caller, id, q.parse()?)
            .await?,
    ))
}

/// The turns of one of the caller's conversations in order, with the citations of each
/// answer; another member's conversation is not found (the service checks the owner before
/// reading any message).
#[utoipa::path(get, operation_id = "chat_messages", path = "/api/v1/spaces/{id}/conversations/{conversation_id}/messages", tag = "chat", params(("id" = String, Path, description = "Space id"), ("conversation_id" = String, Path, description = "Conversation id"), PageQuery),
    responses((status = 200, description = "A page of messages", body = Page<Message>), Errors))]
pub(super) async fn messages(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    Path((_, conversation_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    Ok(Json(
        state
            .service
            .list_messages(&caller, id, &conversation_id, q.parse()?)
            .await?,
    ))
}

/// Deletes one of the caller's conversations with its messages; another member's is not
/// found, whatever the caller's role in the space.
#[utoipa::path(delete, operation_id = "chat_delete_conversation", path = "/api/v1/spaces/{id}/conversations/{conversation_id}", tag = "chat", params(("id" = String, Path, description = "Space id"), ("conversation_id" = String, Path, description = "Conversation id")),
    responses((status = 204, description = "Deleted"), Errors))]
pub(super) async fn delete_conversation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    Path((_, conversation_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .delete_conversation(&caller, id, &conversation_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of a conversation rename.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct RenameConversation {
    /// 1 to 200 characters.
    #[schema(min_length = 1, max_length = 200)]
    title: String,
}

/// Renames one of the caller's conversations; another member's is not found, whatever the
/// caller's role in the space.
#[utoipa::path(patch, operation_id = "chat_rename_conversation", path = "/api/v1/spaces/{id}/conversations/{conversation_id}", tag = "chat", params(("id" = String, Path, description = "Space id"), ("conversation_id" = String, Path, description = "Conversation id")),
    request_body = RenameConversation,
    responses((status = 200, description = "The renamed conversation", body = Conversation), Errors))]
pub(super) async fn rename_conversation(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    InSpace(id): InSpace,
    Path((_, conversation_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameConversation>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        state
            .service
            .rename_conversation(&caller, id, &conversation_id, &body.title)
            .await?,
    ))
}
