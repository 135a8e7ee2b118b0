//! A stand-in for a hosted OpenAI-compatible provider: a real HTTP server speaking the
//! `/v1/chat/completions` streaming wire format, told per test how to (mis)behave.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::json;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The prompt size the stub reports in its usage chunk, whatever it was sent.
pub const PROMPT_TOKENS: usize = 4_321;

/// How the stub answers.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// A well-formed stream of these pieces, then `[DONE]`.
    Answer(Vec<&'static str>),
    /// An error status with a JSON error body.
    Status(u16),
    /// 200 with a stream whose data is not JSON.
    Garbage,
    /// Accepts the request and never answers.
    Hang,
    /// Streams a piece every 50 ms until the client goes away.
    Endless,
}

#[derive(Clone)]
struct Shared {
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<AtomicUsize>,
    open_streams: Arc<AtomicUsize>,
    last_body: Arc<Mutex<serde_json::Value>>,
}

/// A running stub.
pub struct Stub {
    /// Base URL including `/v1`, as a client would configure it.
    pub base_url: String,
    shared: Shared,
}

/// Serves a stand-in provider on a free loopback port; returns its base URL, with `/v1`.
pub async fn serve_stub(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind stub");
    let addr = listener.local_addr().expect("stub address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/v1")
}

impl Stub {
    /// Starts a stub on a free loopback port.
    pub async fn start(behaviour: Behaviour) -> Self {
        let shared = Shared {
            behaviour: Arc::new(Mutex::new(behaviour)),
            calls: Arc::new(AtomicUsize::new(0)),
            open_streams: Arc::new(AtomicUsize::new(0)),
            last_body: Arc::new(Mutex::new(serde_json::Value::Null)),
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        Self {
            base_url: serve_stub(app).await,
            shared,
        }
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// Streams still being written (an `Endless` stream ends when its client leaves).
    pub fn open_streams(&self) -> usize {
        self.shared.open_streams.load(Ordering::SeqCst)
    }

    /// Changes how later requests are answered.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().expect("lock") = behaviour;
    }

    /// The JSON body of the last request.
    pub fn last_body(&self) -> serde_json::Value {
        self.shared.last_body.lock().expect("lock").clone()
    }
}

fn chunk(delta: serde_json::Value, finish: Option<&str>) -> Bytes {
    let c = json!({
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "stub",
        "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
    });
    Bytes::from(format!("data: {c}\n\n"))
}

fn sse(body: Body) -> Response {
    ([(header::CONTENT_TYPE, "text/event-stream")], body).into_response()
}

/// Decrements the open-stream count when the response body is dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn completions(State(s): State<Shared>, body: Bytes) -> Response {
    s.calls.fetch_add(1, Ordering::SeqCst);
    *s.last_body.lock().expect("lock") =
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let behaviour = s.behaviour.lock().expect("lock").clone();
    match behaviour {
        Behaviour::Answer(pieces) => {
            // As OpenAI does: one token per piece, cut at `max_completion_tokens` with
            // `finish_reason: "length"`, and a usage chunk when `include_usage` asks for it.
            let request: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let cap = request["max_completion_tokens"]
                .as_u64()
                .map_or(usize::MAX, |c| c as usize);
            let sent = &pieces[..pieces.len().min(cap)];
            let finish = if sent.len() < pieces.len() {
                "length"
            } else {
                "stop"
            };
            let mut frames = vec![chunk(json!({"role": "assistant"}), None)];
            frames.extend(sent.iter().map(|p| chunk(json!({ "content": p }), None)));
            frames.push(chunk(json!({}), Some(finish)));
            if request["stream_options"]["include_usage"] == true {
                let usage = json!({
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "choices": [],
                    "usage": {
                        "prompt_tokens": PROMPT_TOKENS,
                        "completion_tokens": sent.len(),
                        "total_tokens": PROMPT_TOKENS + sent.len(),
                    },
                });
                frames.push(Bytes::from(format!("data: {usage}\n\n")));
            }
            frames.push(Bytes::from_static(b"data: [DONE]\n\n"));
            let stream = futures::stream::iter(frames).then(|f| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok::<_, Infallible>(f)
            });
            sse(Body::from_stream(stream))
        }
        Behaviour::Status(code) => (
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            axum::Json(json!({"error": {"message": "stub failure", "type": "server_error"}})),
        )
            .into_response(),
        Behaviour::Garbage => sse(Body::from("data: {this is not json\n\n")),
        Behaviour::Hang => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Behaviour::Endless => {
            s.open_streams.fetch_add(1, Ordering::SeqCst);
            let guard = OpenGuard(s.open_streams.clone());
            let stream = futures::stream::unfold(guard, |guard| async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Some((
                    Ok::<_, Infallible>(chunk(json!({ "content": " more" }), None)),
                    guard,
                ))
            });
            sse(Body::from_stream(stream))
        }
    }
}

use futures::StreamExt;
