//! `/api/v1/spaces/{id}/chat`: answers as Server-Sent Events (`sources`, `token`…, `done` or
//! `error`), by POST with a JSON body or by GET with query parameters (for `EventSource`); and
//! the space's conversations.

use super::extract::{ApiJson, ApiQuery};
use super::spaces::PageQuery;
use super::{ApiError, AppState};
use crate::chat::ChatEvent;
use app::api::{ChatRequest, Conversation, Message, Page, SearchMode};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/spaces/{id}/chat", get(ask_get).post(ask_post))
        .route("/spaces/{id}/conversations", get(conversations))
        .route(
            "/spaces/{id}/conversations/{conversation_id}",
            axum::routing::delete(delete_conversation).patch(rename_conversation),
        )
        .route(
            "/spaces/{id}/conversations/{conversation_id}/messages",
            get(messages),
        )
}

/// The query-string form of a chat request.
#[derive(Debug, Deserialize)]
struct AskQuery {
    question: String,
    conversation_id: Option<String>,
    #[serde(default)]
    mode: SearchMode,
    max_sources: Option<i64>,
    min_score: Option<f64>,
    #[serde(default)]
    regenerate: bool,
}

#[tracing::instrument(skip(state, req), fields(space = %id))]
async fn ask_post(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<impl IntoResponse, ApiError> {
    answer(state, id, req).await
}

#[tracing::instrument(skip(state, q), fields(space = %id))]
async fn ask_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
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
    answer(state, id, req).await
}

async fn answer(
    state: AppState,
    id: String,
    req: ChatRequest,
) -> Result<impl IntoResponse, ApiError> {
    let asked = state.chat.ask(&id, req).await?;
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

async fn conversations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Conversation>>, ApiError> {
    Ok(Json(
        state.service.list_conversations(&id, q.parse()?).await?,
    ))
}

async fn messages(
    State(state): State<AppState>,
    Path((id, conversation_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<Page<Message>>, ApiError> {
    Ok(Json(
        state
            .service
            .list_messages(&id, &conversation_id, q.parse()?)
            .await?,
    ))
}

async fn delete_conversation(
    State(state): State<AppState>,
    Path((id, conversation_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .service
        .delete_conversation(&id, &conversation_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of a conversation rename.
#[derive(Debug, Deserialize)]
struct RenameConversation {
    title: String,
}

async fn rename_conversation(
    State(state): State<AppState>,
    Path((id, conversation_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<RenameConversation>,
) -> Result<Json<Conversation>, ApiError> {
    Ok(Json(
        state
            .service
            .rename_conversation(&id, &conversation_id, &body.title)
            .await?,
    ))
}
