//! Memories (`/api/v1/memories`): texts a caller asks Kenning to remember, embedded by the
//! server's own model and found again by meaning; bad input is refused whole with a JSON error.
//! That one caller cannot reach another's memories is proven in `accounts`.

use crate::helpers::{assert_error, spawn_app, Backend};
use serde_json::json;

on_every_vector_store!(
    memories_are_remembered_found_by_meaning_and_forgotten,
    bad_memories_are_refused_whole_with_a_json_error,
);

async fn memories_are_remembered_found_by_meaning_and_forgotten(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, empty) = app
        .post_json("/api/v1/memories/search", &json!({ "query": "anything" }))
        .await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["memories"], json!([]), "nothing remembered yet");

    let (status, written) = app
        .put_json(
            "/api/v1/memories",
            &json!({ "memories": [
                { "id": 1, "text": "I prefer answers in British English.", "metadata": { "kind": "preference" } },
                { "text": "The staging database runs PostgreSQL 15 on the host db-2.", "metadata": { "kind": "fact" } },
                { "id": "0192f1a0-0000-7000-8000-00000000000a", "text": "My team ships releases every second Tuesday.", "metadata": { "kind": "fact" } },
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{written}");
    let ids = written["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], 1);
    assert_eq!(ids[2], "0192f1a0-0000-7000-8000-00000000000a");
    let generated = ids[1]
        .as_str()
        .expect("a new UUID for a memory without an id");

    let (_, info) = app.get_json("/api/v1/memories").await;
    assert_eq!(info["memories"], 3, "{info}");
    assert!(info["model"].as_str().unwrap().contains("MiniLM"), "{info}");

    // By meaning, not by shared words.
    let (status, found) = app
        .post_json(
            "/api/v1/memories/search",
            &json!({ "query": "which version of postgres is on staging?", "limit": 2 }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let hits = found["memories"].as_array().unwrap();
    assert_eq!(hits.len(), 2, "{found}");
    assert_eq!(hits[0]["id"], generated, "{found}");
    assert_eq!(hits[0]["metadata"], json!({ "kind": "fact" }));
    assert!(hits[0]["text"].as_str().unwrap().contains("PostgreSQL 15"));
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());

    let (_, filtered) = app
        .post_json(
            "/api/v1/memories/search",
            &json!({ "query": "which version of postgres is on staging?", "filter": { "kind": "preference" } }),
        )
        .await;
    let hits = filtered["memories"].as_array().unwrap();
    assert_eq!(hits.len(), 1, "{filtered}");
    assert_eq!(hits[0]["id"], 1);
    let (status, refused) = app
        .post_json(
            "/api/v1/memories/search",
            &json!({ "query": "postgres", "filter": { "kind": "fact", "knd": "fact" } }),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["code"], "unknown_filter_field",
        "{refused}"
    );

    let (_, strict) = app
        .post_json(
            "/api/v1/memories/search",
            &json!({ "query": "which version of postgres is on staging?", "min_score": 0.99 }),
        )
        .await;
    assert_eq!(strict["memories"], json!([]), "{strict}");

    // Replacing by id keeps one memory with the new text.
    let (status, _) = app
        .put_json(
            "/api/v1/memories",
            &json!({ "memories": [{ "id": 1, "text": "I prefer short answers." }] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, one) = app.get_json("/api/v1/memories/1").await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["text"], "I prefer short answers.");
    assert_eq!(one["metadata"], json!({}));
    assert!(one.get("score").is_none(), "{one}");

    let gone = app.delete("/api/v1/memories/1").await;
    assert_eq!(gone.status(), 204);
    let (status, body) = app.get_json("/api/v1/memories/1").await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "memory_not_found");
    assert_eq!(app.delete("/api/v1/memories/1").await.status(), 404);
    let (_, info) = app.get_json("/api/v1/memories").await;
    assert_eq!(info["memories"], 2, "{info}");
}

async fn bad_memories_are_refused_whole_with_a_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let too_many: Vec<_> = (0..101)
        .map(|i| json!({ "text": format!("memory {i}") }))
        .collect();
    let long = "x".repeat(8_001);
    for (body, code) in [
        (json!({ "memories": [] }), "invalid_input"),
        (json!({ "memories": too_many }), "invalid_input"),
        (
            json!({ "memories": [{ "text": "fine" }, { "text": "   " }] }),
            "invalid_input",
        ),
        (json!({ "memories": [{ "text": long }] }), "invalid_input"),
        (
            json!({ "memories": [{ "text": "a", "metadata": { "text": "clash" } }] }),
            "invalid_metadata",
        ),
        (
            json!({ "memories": [{ "id": -3, "text": "a" }] }),
            "invalid_point_id",
        ),
        (
            json!({ "memories": [{ "id": "not-an-id", "text": "a" }] }),
            "invalid_point_id",
        ),
    ] {
        let (status, answer) = app.put_json("/api/v1/memories", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_error(&answer, code);
    }
    let (status, answer) = app
        .put_json("/api/v1/memories", &json!({ "memories": [{ "text": 5 }] }))
        .await;
    assert_eq!(status, 422, "{answer}");
    let (_, info) = app.get_json("/api/v1/memories").await;
    assert_eq!(
        info["memories"], 0,
        "nothing of a refused batch is kept: {info}"
    );

    let (status, answer) = app
        .post_json("/api/v1/memories/search", &json!({ "query": "" }))
        .await;
    assert_eq!(status, 400, "{answer}");
    // Checked even while the caller has no memories (a shortcut once answered these with 200).
    for (body, code) in [
        (
            json!({ "query": "q", "min_score": -2 }),
            "invalid_min_score",
        ),
        (json!({ "query": "q", "limit": 0 }), "invalid_limit"),
        (json!({ "query": "q", "limit": 51 }), "invalid_limit"),
        (
            json!({ "query": "q", "filter": { "kind": ["a"] } }),
            "invalid_filter",
        ),
    ] {
        let (status, answer) = app.post_json("/api/v1/memories/search", &body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        assert_error(&answer, code);
    }
    // The largest unsigned 64-bit id is a valid id.
    let (status, answer) = app
        .put_json(
            "/api/v1/memories",
            &json!({ "memories": [{ "id": u64::MAX, "text": "the largest id" }] }),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ids"][0], u64::MAX);
    let (status, answer) = app.get_json("/api/v1/memories/banana").await;
    assert_eq!(status, 400, "{answer}");
    assert_error(&answer, "invalid_point_id");
}
