//! The OpenAI-compatible API, checked on the wire format OpenAI's own SDKs parse: model
//! listing, streamed `chat.completion.chunk`s ending in `[DONE]`, a whole `chat.completion`,
//! embeddings, and OpenAI-style errors for bad input. Also the local model, end to end.

use crate::helpers::{
    answer_text, event, expect_error, parse_sse, spawn_app, spawn_app_with, Backend, Options,
    TestApp,
};
use kenning::config::GeneratorKind;
use serde_json::{json, Value};

on_both_backends!(
    spaces_are_listed_as_models,
    a_completion_answers_from_the_named_space_with_its_sources,
    a_streamed_completion_is_a_series_of_chunks_ending_in_done,
    bad_completion_requests_are_rejected,
    embeddings_come_from_the_configured_embedder,
);

const LEAVE: &str = "# Leave policy\n\nEvery employee receives twenty-five days of paid vacation \
each year. Requests go to your manager two weeks in advance.\n";

async fn seeded(app: &TestApp, name: &str) -> String {
    let space = app.create_space(name).await;
    let (status, doc) = app
        .upload(&space, "leave.md", LEAVE.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202, "{doc}");
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    space
}

async fn spaces_are_listed_as_models(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_space("Handbook").await;
    app.create_space("Runbooks").await;
    let (status, body) = app.get_json("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "list");
    let models = body["data"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    let handbook = models.iter().find(|m| m["id"] == "Handbook").unwrap();
    assert_eq!(handbook["object"], "model");
    assert_eq!(handbook["kenning_space_id"], id.as_str());
    assert!(handbook["created"].as_i64().unwrap() > 1_700_000_000);

    // One model by name, as SDKs' `models.retrieve` asks; an unknown one is a typed 404.
    let (status, one) = app.get_json("/v1/models/Runbooks").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], "Runbooks");
    assert_eq!(one["object"], "model");
    let (status, missing) = app.get_json("/v1/models/Nope").await;
    expect_error(status, &missing, 404, "model_not_found");
    assert_eq!(missing["error"]["type"], "not_found_error");
}

async fn a_completion_answers_from_the_named_space_with_its_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Handbook").await;
    // The model may be named by the space's name in any case, or by its id.
    for model in ["handbook", space.as_str()] {
        let (status, body) = app
            .post_json(
                "/v1/chat/completions",
                &json!({
                    "model": model,
                    "messages": [
                        { "role": "system", "content": "Be brief." },
                        { "role": "user", "content": [{ "type": "text", "text": "How many vacation days do we get?" }] }
                    ]
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["object"], "chat.completion");
        assert_eq!(body["model"], "Handbook");
        assert_eq!(body["choices"][0]["message"]["role"], "assistant");
        assert_eq!(body["choices"][0]["finish_reason"], "stop");
        let content = body["choices"][0]["message"]["content"].as_str().unwrap();
        assert!(content.contains("twenty-five days"), "{content}");
        assert_eq!(body["sources"][0]["filename"], "leave.md");
        let usage = &body["usage"];
        assert_eq!(
            usage["total_tokens"].as_u64().unwrap(),
            usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
        );
    }
}

/// A streamed vacation question to the "Handbook" model, with `extra` request fields; the raw
/// body and its events.
async fn streamed(app: &TestApp, extra: Value) -> (String, Vec<crate::helpers::SseEvent>) {
    let mut request = json!({
        "model": "Handbook",
        "stream": true,
        "messages": [{ "role": "user", "content": "How many vacation days do we get?" }]
    });
    if let (Some(fields), Value::Object(more)) = (request.as_object_mut(), extra) {
        fields.extend(more);
    }
    let r = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let events = parse_sse(&body);
    (body, events)
}

async fn a_streamed_completion_is_a_series_of_chunks_ending_in_done(backend: Backend) {
    let app = spawn_app(backend).await;
    seeded(&app, "Handbook").await;
    let (body, events) = streamed(&app, json!({})).await;
    // OpenAI's stream: unnamed `data:` events, the last one the literal [DONE].
    assert!(events.iter().all(|e| e.event == "message"));
    assert_eq!(events.last().unwrap().data, Value::String("[DONE]".into()));
    let chunks = &events[..events.len() - 1];
    assert!(chunks.len() >= 3, "{body}");
    for c in chunks {
        assert_eq!(c.data["object"], "chat.completion.chunk", "{}", c.data);
        assert_eq!(c.data["id"], chunks[0].data["id"]);
    }
    assert_eq!(chunks[0].data["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0].data["sources"][0]["n"], 1);
    let text: String = chunks
        .iter()
        .filter_map(|c| c.data["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("twenty-five days"), "{text}");
    let last = &chunks[chunks.len() - 1].data;
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    // `stream_options.include_usage`: one more chunk, with no choices and the usage.
    let (body, events) =
        streamed(&app, json!({ "stream_options": { "include_usage": true } })).await;
    assert_eq!(events.last().unwrap().data, Value::String("[DONE]".into()));
    let usage = &events[events.len() - 2].data;
    assert_eq!(usage["choices"], json!([]), "{body}");
    assert_eq!(usage["object"], "chat.completion.chunk");
    let u = &usage["usage"];
    assert!(u["prompt_tokens"].as_u64().unwrap() > 0, "{u}");
    assert_eq!(
        u["total_tokens"].as_u64().unwrap(),
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!(
        events[events.len() - 3].data["choices"][0]["finish_reason"],
        "stop"
    );
}

async fn bad_completion_requests_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    seeded(&app, "Handbook").await;
    let cases = [
        (
            json!({ "model": "Nope", "messages": [{ "role": "user", "content": "hi" }] }),
            404,
            "model_not_found",
        ),
        (
            json!({ "model": "Handbook", "messages": [] }),
            400,
            "invalid_messages",
        ),
        (
            json!({ "model": "Handbook", "messages": [{ "role": "wizard", "content": "hi" }] }),
            400,
            "invalid_messages",
        ),
        (
            json!({ "model": "Handbook", "messages": [{ "role": "system", "content": "hi" }] }),
            400,
            "invalid_messages",
        ),
        (
            json!({ "model": "Handbook", "messages": [{ "role": "user", "content": 42 }] }),
            400,
            "invalid_messages",
        ),
        (
            json!({ "model": "Handbook", "messages": [{ "role": "user", "content": "  " }] }),
            400,
            "empty_question",
        ),
        (
            json!({ "model": "Handbook", "messages": "hi" }),
            422,
            "invalid_fields",
        ),
        (
            json!({ "messages": [{ "role": "user", "content": "hi" }] }),
            422,
            "invalid_fields",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = app.post_json("/v1/chat/completions", &body).await;
        expect_error(s, &b, status, code);
        // OpenAI's error shape, which SDKs pick their exception class by.
        let kind = if status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(b["error"]["type"], kind, "{b}");
        assert!(b["error"]["param"].is_null(), "{b}");
        assert!(b["error"]["message"].is_string(), "{b}");
    }
    let (s, b) = app.get_json("/v1/nothing-here").await;
    expect_error(s, &b, 404, "route_not_found");
}

async fn embeddings_come_from_the_configured_embedder(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = app
        .post_json(
            "/v1/embeddings",
            &json!({
                "model": "text-embedding-3-small",
                "input": ["How many vacation days do we get?", "Employees receive 25 days of paid vacation.", "The database connection pool is full."]
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "local/all-MiniLM-L6-v2-int8");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[1]["index"], 1);
    let vector =
        |i: usize| -> Vec<f64> { serde_json::from_value(data[i]["embedding"].clone()).unwrap() };
    let (q, answer, unrelated) = (vector(0), vector(1), vector(2));
    assert_eq!(q.len(), 384);
    let norm: f64 = q.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-3);
    let cosine = |a: &[f64], b: &[f64]| -> f64 { a.iter().zip(b).map(|(x, y)| x * y).sum() };
    assert!(
        cosine(&q, &answer) > cosine(&q, &unrelated) + 0.2,
        "the answer is nearer the question than an unrelated text"
    );

    for (input, code) in [
        (json!(""), "invalid_input"),
        (json!([]), "invalid_input"),
        (json!([1, 2]), "invalid_input"),
        (json!("x".repeat(8001)), "invalid_input"),
    ] {
        let (s, b) = app
            .post_json("/v1/embeddings", &json!({ "input": input }))
            .await;
        expect_error(s, &b, 400, code);
        assert_eq!(b["error"]["type"], "invalid_request_error");
    }

    // base64 (openai-node's default): the same vectors as little-endian f32s.
    let texts = json!([
        "How many vacation days do we get?",
        "The database connection pool is full."
    ]);
    let (status, floats) = app
        .post_json(
            "/v1/embeddings",
            &json!({ "input": texts, "encoding_format": "float", "dimensions": 384 }),
        )
        .await;
    assert_eq!(status, 200, "{floats}");
    let (status, packed) = app
        .post_json(
            "/v1/embeddings",
            &json!({ "input": texts, "encoding_format": "base64" }),
        )
        .await;
    assert_eq!(status, 200, "{packed}");
    for i in 0..2 {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                packed["data"][i]["embedding"]
                    .as_str()
                    .expect("a base64 string"),
            )
            .expect("valid base64");
        assert_eq!(bytes.len(), 384 * 4, "four bytes per dimension");
        let decoded: Vec<f32> = bytes
            .as_chunks::<4>()
            .0
            .iter()
            .map(|b| f32::from_le_bytes(*b))
            .collect();
        let plain: Vec<f32> =
            serde_json::from_value(floats["data"][i]["embedding"].clone()).unwrap();
        assert_eq!(decoded, plain, "text {i}: base64 holds the same vector");
    }
    for (body, code) in [
        (
            json!({ "input": "x", "encoding_format": "int8" }),
            "invalid_encoding_format",
        ),
        (
            json!({ "input": "x", "dimensions": 256 }),
            "invalid_dimensions",
        ),
    ] {
        let (s, b) = app.post_json("/v1/embeddings", &body).await;
        expect_error(s, &b, 400, code);
    }
}

/// Refusals made before the OpenAI router (here: no credentials) carry OpenAI's error type too.
#[tokio::test]
async fn refusals_under_v1_are_typed_as_openai_errors() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(|c| c.auth = kenning::auth::AuthMode::Password),
            ..Options::default()
        },
    )
    .await;
    let (status, body) = app.get_json("/v1/models").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    // The REST API keeps its own error shape.
    let (status, body) = app.get_json("/api/v1/spaces").await;
    assert_eq!(status, 401);
    assert!(body["error"].get("type").is_none(), "{body}");
}

/// The real local model (SmolLM2 on llama.cpp) answers through the chat API: tokens stream,
/// the usage counts real tokens, and the answer is attributed to `local`.
#[tokio::test]
async fn the_local_model_streams_a_grounded_answer() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            generate: Box::new(|g| {
                g.generators = vec![GeneratorKind::Local, GeneratorKind::Extractive];
                g.max_answer_tokens = 48;
                g.first_token_timeout_ms = 60_000;
            }),
            ..Options::default()
        },
    )
    .await;
    let space = seeded(&app, "Handbook").await;
    let events = app
        .ask(
            &space,
            json!({ "question": "How many days of paid vacation does an employee get each year?" }),
        )
        .await;
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "local", "{done}");
    assert_eq!(done["degraded"], false);
    let tokens = events.iter().filter(|e| e.event == "token").count() as u64;
    assert!(tokens > 1, "streamed token by token");
    // Counted by the model: at least one token per streamed piece.
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() >= tokens);
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() <= 48);
    // Counted by the model's own tokenizer: the prompt with one source is well over 50 tokens.
    assert!(
        done["usage"]["prompt_tokens"].as_u64().unwrap() > 50,
        "{done}"
    );
    assert!(!answer_text(&events).trim().is_empty());

    // A client's cap ends the model's answer, and the client is told so.
    let (status, body) = app
        .post_json(
            "/v1/chat/completions",
            &json!({ "model": "Handbook", "max_tokens": 2, "messages": [{ "role": "user", "content": "How many days of paid vacation?" }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kenning"]["generator"], "local", "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    assert_eq!(body["usage"]["completion_tokens"], 2, "{body}");
}

/// The provider's own account of an answer reaches the client: a token cap (the server's, or
/// a lower one the client sets) ends it with `finish_reason: "length"` and a notice, `usage`
/// holds the provider's counts, and the client's system message reaches the model below
/// Kenning's rules.
#[tokio::test]
async fn caps_usage_and_system_messages_reach_the_provider_and_come_back_exact() {
    use crate::stub::{Behaviour, Stub, PROMPT_TOKENS};
    let stub = Stub::start(Behaviour::Answer(vec![
        "One ", "two ", "three ", "four ", "five ", "six.",
    ]))
    .await;
    let url = stub.base_url.clone();
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            generate: Box::new(move |g| {
                g.generators = vec![GeneratorKind::Openai];
                g.generator_retries = 0;
                g.max_answer_tokens = 4;
                g.openai_base_url = Some(url);
            }),
            ..Options::default()
        },
    )
    .await;
    let space = seeded(&app, "Capped").await;

    // The server's cap: the chat API's done event says the answer was cut.
    let events = app
        .ask(&space, json!({ "question": "How many vacation days?" }))
        .await;
    let done = &event(&events, "done").data;
    assert_eq!(done["truncated"], true, "{done}");
    assert!(
        done["notice"]
            .as_str()
            .unwrap_or("")
            .contains("length limit"),
        "{done}"
    );
    assert_eq!(done["usage"]["completion_tokens"], 4, "{done}");
    assert_eq!(done["usage"]["prompt_tokens"], PROMPT_TOKENS, "{done}");
    assert_eq!(answer_text(&events), "One two three four ");
    assert_eq!(stub.last_body()["max_completion_tokens"], 4);

    // A lower cap of the client's, under its older name, with a system message.
    let (status, body) = app
        .post_json(
            "/v1/chat/completions",
            &json!({ "model": "Capped", "max_tokens": 2, "messages": [
                { "role": "system", "content": "Answer in French." },
                { "role": "user", "content": "How many vacation days?" },
            ] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "One two ");
    assert_eq!(body["choices"][0]["finish_reason"], "length", "{body}");
    assert_eq!(
        body["usage"],
        json!({ "prompt_tokens": PROMPT_TOKENS, "completion_tokens": 2, "total_tokens": PROMPT_TOKENS + 2 })
    );
    let sent = stub.last_body();
    assert_eq!(sent["max_completion_tokens"], 2);
    let system = sent["messages"][0]["content"].as_str().unwrap_or("");
    assert!(
        system.starts_with("You answer questions using only the numbered sources")
            && system.ends_with("Answer in French."),
        "Kenning's rules first, the client's guidance after: {system}"
    );
    let user = sent["messages"][1]["content"].as_str().unwrap_or("");
    assert!(!user.contains("French"), "{user}");

    // A cap above the server's is lowered to it; an answer that ends by itself says `stop`.
    stub.set(Behaviour::Answer(vec!["Twenty-five ", "days."]));
    let (_, frames) = streamed(
        &app,
        json!({ "model": "Capped", "max_completion_tokens": 1_000_000, "stream_options": { "include_usage": true },
                "messages": [{ "role": "user", "content": "Vacation days per year?" }] }),
    )
    .await;
    assert_eq!(stub.last_body()["max_completion_tokens"], 4);
    let chunks: Vec<&Value> = frames
        .iter()
        .map(|f| &f.data)
        .filter(|d| d.is_object())
        .collect();
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|c| &c["finish_reason"])
        .filter(|r| !r.is_null())
        .collect();
    assert_eq!(finishes, vec!["stop"]);
    let last = chunks.last().expect("a usage chunk");
    assert_eq!(last["usage"]["completion_tokens"], 2, "{last}");

    // Nonsense caps and oversized system messages are refused before anything runs.
    let calls = stub.calls();
    for (bad, expected) in [
        (
            json!({ "model": "Capped", "max_tokens": 0, "messages": [{ "role": "user", "content": "q" }] }),
            400,
        ),
        (
            json!({ "model": "Capped", "max_completion_tokens": -1, "messages": [{ "role": "user", "content": "q" }] }),
            422,
        ),
        (
            json!({ "model": "Capped", "messages": [{ "role": "system", "content": "x".repeat(4_001) }, { "role": "user", "content": "q" }] }),
            400,
        ),
    ] {
        let (status, body) = app.post_json("/v1/chat/completions", &bad).await;
        assert_eq!(status, expected, "{bad}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    assert_eq!(stub.calls(), calls);
}

/// A whole (non-streamed) answer may take as long as answers may, not only the request
/// timeout: with a 1 s request timeout and a provider that keeps writing, the answer runs
/// until the 3 s answer timeout stops it, and that is what the client is told.
#[tokio::test]
async fn a_whole_answer_is_bounded_by_the_answer_timeout_not_the_request_timeout() {
    use crate::stub::{Behaviour, Stub};
    let stub = Stub::start(Behaviour::Endless).await;
    let url = stub.base_url.clone();
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            generate: Box::new(move |g| {
                g.generators = vec![GeneratorKind::Openai];
                g.generator_retries = 0;
                g.answer_timeout_secs = 3;
                g.max_answer_tokens = 100_000;
                g.openai_base_url = Some(url);
            }),
            serve: Box::new(|c| c.request_timeout_secs = 1),
            ..Options::default()
        },
    )
    .await;
    seeded(&app, "Slow").await;
    let started = std::time::Instant::now();
    let (status, body) = app
        .post_json(
            "/v1/chat/completions",
            &json!({ "model": "Slow", "messages": [{ "role": "user", "content": "How many vacation days?" }] }),
        )
        .await;
    let took = started.elapsed();
    assert_ne!(status, 408, "cut by the request timeout: {body}");
    assert!(
        took >= std::time::Duration::from_secs(2),
        "{took:?}: {body}"
    );
    assert_eq!(body["error"]["code"], "answer_timeout", "{status} {body}");
}

/// A client that keeps its own conversation: a follow-up is searched together with the
/// question before it, and nothing is stored unless the client sends `store: true`.
#[tokio::test]
async fn a_follow_up_uses_the_clients_history_and_nothing_is_stored_unless_asked() {
    let app = spawn_app(Backend::Sqlite).await;
    let space = seeded(&app, "Policies").await;
    let (status, doc) = app
        .upload(
            &space,
            "expenses.md",
            b"# Expenses\n\nYour team lead approves expense reports within a week.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{doc}");
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    let ask = |messages: Value, store: bool| {
        let app = &app;
        async move {
            let (status, body) = app
                .post_json(
                    "/v1/chat/completions",
                    &json!({ "model": "Policies", "messages": messages, "store": store }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let first_source = |body: &Value| {
        body["sources"][0]["filename"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };

    let alone = ask(
        json!([{ "role": "user", "content": "Who approves them?" }]),
        false,
    )
    .await;
    assert_eq!(first_source(&alone), "expenses.md", "{alone}");
    let follow_up = ask(
        json!([
            { "role": "system", "content": "Answer briefly." },
            { "role": "user", "content": "How many days of paid vacation does every employee receive?" },
            { "role": "assistant", "content": "Twenty-five days [1]." },
            { "role": "user", "content": "Who approves them?" }
        ]),
        false,
    )
    .await;
    assert_eq!(first_source(&follow_up), "leave.md", "{follow_up}");
    assert!(follow_up["kenning"]["conversation_id"].is_null());

    let (_, listed) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(listed["total"], 0, "nothing stored: {listed}");
    let kept = ask(
        json!([{ "role": "user", "content": "How many vacation days?" }]),
        true,
    )
    .await;
    let id = kept["kenning"]["conversation_id"]
        .as_str()
        .expect("a stored conversation");
    let (_, listed) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(listed["total"], 1, "{listed}");
    assert_eq!(listed["items"][0]["id"], id);
}
