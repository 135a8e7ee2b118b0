//! An OpenAI-compatible API at `/v1`, so existing SDKs and chat clients talk to Kenning
//! unchanged: `/v1/models` lists spaces as models, `/v1/chat/completions` answers from the
//! named space (streamed `chat.completion.chunk`s ending in `[DONE]`, or one JSON answer) with
//! its sources attached, and `/v1/embeddings` exposes the configured embedder.

use super::extract::ApiJson;
use super::limits::RouteClass;
use super::{ApiError, AppState, Policy, Routes};
use crate::auth::Caller;
use crate::chat::{ChatEvent, ClientTurns};
use crate::domain::PageRequest;
use crate::embed::Lane;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{extract::State, Extension, Json};
use base64::Engine as _;
use futures::StreamExt;
use kenning_api::{ChatRequest, DoneEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

/// Most texts one embeddings request may carry.
const MAX_EMBED_INPUTS: usize = 256;
/// Longest text accepted for embedding, in characters.
const MAX_EMBED_CHARS: usize = 8_000;

pub fn router(request_timeout: Duration, completion_timeout: Duration) -> Routes {
    // Every space a caller reads through `/v1` is checked with the same `authorize` as REST.
    let signed = Policy::signed().reads();
    let quick = Routes::new()
        .get("/models", signed, models)
        .get("/models/{model}", signed, model)
        .post("/embeddings", signed.class(RouteClass::Search), embeddings)
        .map(|r| r.layer(super::timeout(request_timeout)));
    Routes::new()
        .post(
            "/chat/completions",
            signed.class(RouteClass::Chat),
            completions,
        )
        .map(|r| r.layer(super::timeout(completion_timeout)))
        .merge(quick)
        .map(|r| r.fallback(|| async { ApiError::not_found_route() }))
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
        data.extend(page.items.iter().map(model_object));
        match page.next_offset() {
            Some(next) => offset = next,
            None => break,
        }
    }
    Ok(Json(json!({ "object": "list", "data": data })))
}

/// Gives every error under `/v1` (the sign-in, rate-limit and cross-site refusals made before
/// this router included) the `type` and `param` fields OpenAI's errors carry, which SDKs read
/// to pick their exception class.
pub async fn with_error_types(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let openai = req.uri().path().starts_with("/v1/");
    let response = next.run(req).await;
    let status = response.status();
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !openai || !json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "error body too large").into_response();
    };
    let mut value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(_) => return Response::from_parts(parts, axum::body::Body::from(bytes)),
    };
    if let Some(error) = value.get_mut("error").and_then(Value::as_object_mut) {
        let kind = match status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        error.entry("type").or_insert_with(|| json!(kind));
        error.entry("param").or_insert(Value::Null);
    }
    let body = value.to_string();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// The space a model name stands for, if the caller may read it: to a caller, a space they
/// may not read is a model that does not exist.
pub(super) async fn readable_space(
    state: &AppState,
    caller: &Caller,
    model: &str,
) -> Result<kenning_api::Space, ApiError> {
    let found = match state.service.find_space(model).await {
        Ok(space) => match crate::service::Service::space_id(&space.id) {
            Ok(id) => state
                .service
                .authorize(caller, id, kenning_api::Role::Viewer)
                .await
                .map(|()| space),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    found.map_err(|e| match e {
        crate::error::ServiceError::NotFound(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("The model \"{model}\" is not a space; GET /v1/models lists the spaces."),
        ),
        other => other.into(),
    })
}

/// A space as an OpenAI model object.
fn model_object(s: &kenning_api::Space) -> Value {
    let created = chrono::DateTime::parse_from_rfc3339(&s.created_at)
        .map(|t| t.timestamp())
        .unwrap_or(0);
    json!({
        "id": s.name,
        "object": "model",
        "created": created,
        "owned_by": "kenning",
        "kenning_space_id": s.id,
    })
}

/// One model (space) by name, as SDKs' `models.retrieve` asks for it.
async fn model(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(model_object(
        &readable_space(&state, &caller, &name).await?,
    )))
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<ChatMessage>,
    #[serde(default)]
    stream: bool,
    /// OpenAI's `store`: keep the exchange as a conversation of the caller's (off by default;
    /// clients such as Open WebUI keep their own, and send background calls too).
    #[serde(default)]
    store: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// The answer's cap in tokens (lowered to the server's own cap, never raised).
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    /// The older name of `max_completion_tokens`, which many clients still send.
    #[serde(default)]
    max_tokens: Option<u64>,
}

/// OpenAI's `stream_options`.
#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    /// Ends the stream with one more chunk holding the usage (and no choices), as LangChain and
    /// other clients that count tokens ask.
    #[serde(default)]
    include_usage: bool,
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

/// The user's question before the last one, if the client sent its history.
fn previous_question(messages: &[ChatMessage]) -> Option<String> {
    messages
        .iter()
        .rev()
        .filter(|m| m.role == "user")
        .nth(1)
        .and_then(ChatMessage::text)
        .filter(|t| !t.trim().is_empty())
}

/// Longest client system message accepted, in characters: it shares the model's context with
/// the sources.
const MAX_GUIDANCE_CHARS: usize = 4_000;

/// The client's system (or developer) messages, joined: guidance for the answer.
fn guidance(messages: &[ChatMessage]) -> Result<Option<String>, ApiError> {
    let parts: Vec<String> = messages
        .iter()
        .filter(|m| matches!(m.role.as_str(), "system" | "developer"))
        .filter_map(ChatMessage::text)
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if parts.is_empty() {
        return Ok(None);
    }
    let joined = parts.join("\n");
    if joined.chars().count() > MAX_GUIDANCE_CHARS {
        return Err(bad_request(
            "system_message_too_long",
            format!("System messages may hold at most {MAX_GUIDANCE_CHARS} characters in all."),
        ));
    }
    if joined.contains('\0') {
        return Err(bad_request(
            "invalid_messages",
            "System messages may not contain NUL characters (U+0000).",
        ));
    }
    Ok(Some(joined))
}

/// The client's cap on the answer's length, if it set a usable one.
fn token_cap(req: &CompletionRequest) -> Result<Option<usize>, ApiError> {
    let (param, cap) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(c), _) => ("max_completion_tokens", c),
        (None, Some(c)) => ("max_tokens", c),
        (None, None) => return Ok(None),
    };
    if cap == 0 {
        return Err(bad_request(
            "invalid_max_tokens",
            format!("{param} must be at least 1."),
        ));
    }
    Ok(Some(usize::try_from(cap).unwrap_or(usize::MAX)))
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
    let guidance = guidance(&req.messages)?;
    let max_tokens = token_cap(&req)?;
    let space = readable_space(&state, &caller, &req.model).await?;
    // The client keeps the conversation: its previous question helps find what a follow-up
    // ("and how many carry over?") is about. Stored only when the client asks (`store`).
    let asked = state
        .chat
        .ask_with(
            &caller,
            crate::service::Service::space_id(&space.id)?,
            ChatRequest::new(question),
            Some(ClientTurns {
                previous_question: previous_question(&req.messages),
                keep: req.store,
                guidance,
                max_tokens,
            }),
        )
        .await?;
    let id = format!("chatcmpl-{}", asked.conversation_id.simple());
    let created = chrono::Utc::now().timestamp();
    let model = space.name.clone();
    if req.stream {
        let (usage_id, usage_model) = (id.clone(), model.clone());
        // The extra last chunk of `include_usage`: no choices, the usage.
        let usage_chunk = move |d: &DoneEvent| {
            Event::default().data(
                json!({
                    "id": usage_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": usage_model,
                    "choices": [],
                    "usage": usage(d),
                })
                .to_string(),
            )
        };
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
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let frames = asked
            .events
            .flat_map(move |e| {
                let frames = match e {
                    ChatEvent::Sources(s) => vec![chunk(
                        json!({ "role": "assistant", "content": "" }),
                        None,
                        Some(("sources", json!(s.sources))),
                    )],
                    ChatEvent::Token(t) => vec![chunk(json!({ "content": t.text }), None, None)],
                    ChatEvent::Done(d) => {
                        let mut frames = vec![chunk(
                            json!({}),
                            Some(finish_reason(&d)),
                            Some(("usage", usage(&d))),
                        )];
                        if include_usage {
                            frames.push(usage_chunk(&d));
                        }
                        frames
                    }
                    ChatEvent::Error(e) => vec![Event::default().data(
                        json!({ "error": { "message": e.message, "code": e.code, "type": "server_error" } })
                            .to_string(),
                    )],
                };
                futures::stream::iter(frames)
            })
            .chain(futures::stream::once(async {
                Event::default().data("[DONE]")
            }))
            .map(Ok::<_, Infallible>);
        return Ok(Sse::new(frames)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response());
    }

    let whole = asked
        .whole()
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, &e.code, e.message))?;
    let d = whole.done;
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": whole.text },
            "finish_reason": finish_reason(&d),
        }],
        "usage": usage(&d),
        "sources": whole.sources,
        // A conversation id only when one was stored (`store: true`).
        "kenning": { "generator": d.generator, "degraded": d.degraded, "cached": d.cached, "conversation_id": req.store.then_some(&d.conversation_id) },
    }))
    .into_response())
}

/// `length` when the token cap cut the answer, as clients that continue answers look for.
fn finish_reason(d: &DoneEvent) -> &'static str {
    if d.truncated {
        "length"
    } else {
        "stop"
    }
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
    /// `float` (the default) or `base64`: little-endian f32s, as openai-node asks by default.
    #[serde(default)]
    encoding_format: Option<String>,
    /// The embedder's own length only: the local model cannot shorten its vectors.
    #[serde(default)]
    dimensions: Option<u64>,
    /// Accepted and ignored, as OpenAI does.
    #[serde(default, rename = "user")]
    _user: Option<String>,
}

/// How embeddings go back to the client.
enum Encoding {
    Float,
    Base64,
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
    let encoding = match req.encoding_format.as_deref() {
        None | Some("float") => Encoding::Float,
        Some("base64") => Encoding::Base64,
        Some(other) => {
            return Err(bad_request(
                "invalid_encoding_format",
                format!("encoding_format is \"float\" or \"base64\", not \"{other}\"."),
            ))
        }
    };
    let embedder = state.embedder.clone();
    if let Some(d) = req.dimensions {
        if d != embedder.dimensions() as u64 {
            return Err(bad_request(
                "invalid_dimensions",
                format!(
                    "This embedder returns {} dimensions and cannot shorten them; leave dimensions \
                     out or ask for {}.",
                    embedder.dimensions(),
                    embedder.dimensions()
                ),
            ));
        }
    }
    let model = embedder.model_id().to_string();
    let tokens: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    let vectors = embedder.embed(texts, Lane::Query).await?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = match encoding {
                Encoding::Float => json!(v),
                Encoding::Base64 => {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
            };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": tokens, "total_tokens": tokens },
    })))
}
