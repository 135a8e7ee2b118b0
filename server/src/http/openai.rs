//! An OpenAI-compatible API at `/v1`, so existing SDKs and chat clients talk to Kenning
//! unchanged: `/v1/models` lists spaces as models, `/v1/chat/completions` answers from the
//! named space (streamed `chat.completion.chunk`s ending in `[DONE]`, or one JSON answer) with
//! its sources attached, and `/v1/embeddings` exposes the configured embedder.

use super::extract::ApiJson;
use super::{ApiError, AppState};
use crate::auth::Caller;
use crate::chat::ChatEvent;
use crate::domain::PageRequest;
use crate::embed::Lane;
use app::api::{ChatRequest, Citation, DoneEvent, SearchMode};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{extract::State, Extension, Json, Router};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

/// Most texts one embeddings request may carry.
const MAX_EMBED_INPUTS: usize = 256;
/// Longest text accepted for embedding, in characters.
const MAX_EMBED_CHARS: usize = 8_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/models", get(models))
        .route("/chat/completions", post(completions))
        .route("/embeddings", post(embeddings))
        .fallback(|| async { ApiError::not_found_route() })
}

async fn models(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let mut data = Vec::new();
    let mut offset = 0;
    // Bounded: a listing stops at 1,000 spaces.
    while data.len() < 1_000 {
        let page = state
            .service
            .list_spaces_for(
                &caller,
                PageRequest {
                    limit: PageRequest::MAX_LIMIT,
                    offset,
                },
            )
            .await?;
        for s in &page.items {
            let created = chrono::DateTime::parse_from_rfc3339(&s.created_at)
                .map(|t| t.timestamp())
                .unwrap_or(0);
            data.push(json!({
                "id": s.name,
                "object": "model",
                "created": created,
                "owned_by": "kenning",
                "kenning_space_id": s.id,
            }));
        }
        match page.next_offset() {
            Some(next) => offset = next,
            None => break,
        }
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

impl ChatMessage {
    /// The message's text: a string, or the text parts of a content array.
    fn text(&self) -> Option<String> {
        match self.content.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Array(parts) => {
                let texts: Vec<&str> = parts
                    .iter()
                    .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect();
                (!texts.is_empty()).then(|| texts.join("\n"))
            }
            _ => None,
        }
    }
}

fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// The question is the last user message; earlier turns are the client's history.
fn question(messages: &[ChatMessage]) -> Result<String, ApiError> {
    if messages.is_empty() {
        return Err(bad_request(
            "invalid_messages",
            "messages must not be empty.",
        ));
    }
    for m in messages {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant" | "tool"
        ) {
            return Err(bad_request(
                "invalid_messages",
                format!("Unknown message role \"{}\".", m.role),
            ));
        }
    }
    let last = messages
        .iter()
        .rev()
        .find(|m| m.role == "user")
        .ok_or_else(|| bad_request("invalid_messages", "messages must contain a user message."))?;
    last.text().ok_or_else(|| {
        bad_request(
            "invalid_messages",
            "The last user message must have text content.",
        )
    })
}

async fn completions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let question = question(&req.messages)?;
    let found = match state.service.find_space(&req.model).await {
        // A space the caller may not read is, to them, a model that does not exist.
        Ok(space) => state
            .service
            .authorize(&caller, &space.id, app::api::Role::Viewer)
            .await
            .map(|()| space),
        Err(e) => Err(e),
    };
    let space = found.map_err(|e| match e {
        crate::service::ServiceError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "The model \"{}\" is not a space; GET /v1/models lists the spaces.",
                req.model
            ),
        ),
        other => other.into(),
    })?;
    // Each call is stored as a conversation of the caller's own, private like the chat API's.
    let asked = state
        .chat
        .ask(
            &caller,
            &space.id,
            ChatRequest {
                question,
                conversation_id: None,
                mode: SearchMode::Hybrid,
                max_sources: None,
                min_score: None,
                regenerate: false,
            },
        )
        .await?;
    let id = format!("chatcmpl-{}", asked.conversation_id.simple());
    let created = chrono::Utc::now().timestamp();
    let model = space.name.clone();
    if req.stream {
        let chunk = move |delta: Value, finish: Option<&str>, extra: Option<(&str, Value)>| {
            let mut c = json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
            });
            if let (Some((k, v)), Some(obj)) = (extra, c.as_object_mut()) {
                obj.insert(k.to_string(), v);
            }
            Event::default().data(c.to_string())
        };
        let frames = asked
            .events
            .map(move |e| match e {
                ChatEvent::Sources(s) => chunk(
                    json!({ "role": "assistant", "content": "" }),
                    None,
                    Some(("sources", json!(s.sources))),
                ),
                ChatEvent::Token(t) => chunk(json!({ "content": t.text }), None, None),
                ChatEvent::Done(d) => chunk(json!({}), Some("stop"), Some(("usage", usage(&d)))),
                ChatEvent::Error(e) => {
                    Event::default().data(json!({ "error": { "message": e.message, "code": e.code, "type": "server_error" } }).to_string())
                }
            })
            .chain(futures::stream::once(async {
                Event::default().data("[DONE]")
            }))
            .map(Ok::<_, Infallible>);
        return Ok(Sse::new(frames)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response());
    }

    let mut text = String::new();
    let mut sources: Vec<Citation> = Vec::new();
    let mut events = asked.events;
    while let Some(e) = events.next().await {
        match e {
            ChatEvent::Sources(s) => sources = s.sources,
            ChatEvent::Token(t) => text.push_str(&t.text),
            ChatEvent::Error(e) => {
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, &e.code, e.message))
            }
            ChatEvent::Done(d) => {
                return Ok(Json(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{
                        "index": 0,
                        "message": { "role": "assistant", "content": text },
                        "finish_reason": "stop",
                    }],
                    "usage": usage(&d),
                    "sources": sources,
                    "kenning": { "generator": d.generator, "degraded": d.degraded, "cached": d.cached, "conversation_id": d.conversation_id },
                }))
                .into_response())
            }
        }
    }
    Err(ApiError::new(
        StatusCode::BAD_GATEWAY,
        "generation_failed",
        "The answer ended without finishing.",
    ))
}

fn usage(d: &DoneEvent) -> Value {
    json!({
        "prompt_tokens": d.usage.prompt_tokens,
        "completion_tokens": d.usage.completion_tokens,
        "total_tokens": d.usage.prompt_tokens + d.usage.completion_tokens,
    })
}

#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    input: Value,
    /// Accepted and ignored: the answer names the model that embedded.
    #[serde(default, rename = "model")]
    _model: Option<String>,
}

async fn embeddings(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let texts: Vec<String> = match &req.input {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                bad_request(
                    "invalid_input",
                    "input must be a string or an array of strings.",
                )
            })?,
        _ => {
            return Err(bad_request(
                "invalid_input",
                "input must be a string or an array of strings.",
            ))
        }
    };
    if texts.is_empty() || texts.len() > MAX_EMBED_INPUTS {
        return Err(bad_request(
            "invalid_input",
            format!("input must hold between 1 and {MAX_EMBED_INPUTS} texts."),
        ));
    }
    if texts.iter().any(|t| t.trim().is_empty()) {
        return Err(bad_request(
            "invalid_input",
            "input texts must not be empty.",
        ));
    }
    if texts.iter().any(|t| t.chars().count() > MAX_EMBED_CHARS) {
        return Err(bad_request(
            "invalid_input",
            format!("Each text must be at most {MAX_EMBED_CHARS} characters."),
        ));
    }
    let embedder = state.embedder.clone();
    let model = embedder.model_id().to_string();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let vectors = embedder.embed(texts, Lane::Query).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| json!({ "object": "embedding", "index": i, "embedding": v }))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}
