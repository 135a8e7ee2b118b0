//! A stand-in for a hosted embeddings provider: a real HTTP server speaking the OpenAI
//! `/v1/embeddings` wire format. Its vectors are bags of words hashed into 64 buckets, so texts
//! that share words are near each other and a search can be checked.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Vector length of the stub's model.
pub const DIMENSIONS: usize = 64;

/// Each request: its bearer token and its JSON body.
type Requests = Arc<Mutex<Vec<(Option<String>, Value)>>>;

#[derive(Clone, Default)]
struct Shared {
    failing: Arc<AtomicBool>,
    requests: Requests,
}

/// A running provider.
pub struct EmbedStub {
    /// Base URL including `/v1`.
    pub base_url: String,
    shared: Shared,
}

/// The stub's embedding of one text.
pub fn embed(text: &str) -> Vec<f32> {
    let mut v = vec![0f32; DIMENSIONS];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() > 2)
    {
        let h = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        v[(h % DIMENSIONS as u64) as usize] += 1.0;
    }
    // Never all zero: a text without words still gets a (meaningless) direction.
    v[0] += 0.01;
    v
}

impl EmbedStub {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/embeddings", post(embeddings))
            .with_state(shared.clone());
        Self {
            base_url: crate::stub::serve_stub(app).await,
            shared,
        }
    }

    /// From now on, answer every request with HTTP 500.
    pub fn fail(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Each request so far: its bearer token and its JSON body.
    pub fn requests(&self) -> Vec<(Option<String>, Value)> {
        self.shared.requests.lock().expect("lock").clone()
    }
}

async fn embeddings(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    s.requests.lock().expect("lock").push((token, body.clone()));
    if s.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(
                json!({ "error": { "message": "stub provider is down", "type": "server_error" } }),
            ),
        )
            .into_response();
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or_default().to_string())
            .collect(),
        _ => return (StatusCode::BAD_REQUEST, "input must be text").into_response(),
    };
    // Answered in reverse order, as the API allows: clients must sort by index.
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({ "object": "embedding", "index": i, "embedding": embed(t) }))
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": { "prompt_tokens": 0, "total_tokens": 0 },
    }))
    .into_response()
}
