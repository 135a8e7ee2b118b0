//! Retrieval over real embeddings: each mode finds the passage that answers, hybrid fuses,
//! filters and limits hold, caches never go stale, and bad requests get 4xx.

use crate::helpers::{assert_error, spawn_app, Backend, TestApp};
use serde_json::{json, Value};

on_every_vector_store!(
    every_mode_finds_the_passage_that_answers,
    results_respect_limit_document_filter_and_min_score,
    a_cached_result_is_never_stale_after_a_change,
    a_search_before_indexing_finishes_says_so,
    bad_search_requests_are_rejected,
    searches_never_cross_spaces,
);

const LEAVE: &str =
    "# Leave policy\n\nEvery employee receives twenty-five days of paid vacation each year. \
Requests go to your manager two weeks in advance.\n";
const LAPTOP: &str =
    "# Equipment\n\nNew hires get a laptop on their first day. Broken hardware is replaced \
by the IT desk within one business day.\n";
const DEPLOY: &str =
    "# Deployments\n\nProduction deploys happen on Tuesdays after the release checklist \
is signed off. Rollbacks use the previous container image.\n";

async fn seeded(app: &TestApp, name: &str) -> (String, Vec<String>) {
    let space = app.create_space(name).await;
    let mut ids = Vec::new();
    for (file, text) in [
        ("leave.md", LEAVE),
        ("laptop.md", LAPTOP),
        ("deploy.md", DEPLOY),
    ] {
        let (status, doc) = app.upload(&space, file, text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{doc}");
        let id = doc["id"].as_str().unwrap().to_string();
        let done = app.wait_for_ingestion(&space, &id).await;
        assert_eq!(done["status"], "ready", "{done}");
        ids.push(id);
    }
    (space, ids)
}

async fn search(app: &TestApp, space: &str, body: Value) -> (u16, Value) {
    app.post_json(&format!("/api/v1/spaces/{space}/search"), &body)
        .await
}

fn first_file(res: &Value) -> &str {
    res["results"][0]["filename"].as_str().unwrap_or("<none>")
}

async fn every_mode_finds_the_passage_that_answers(backend: Backend) {
    let app = spawn_app(backend).await;
    let (space, _) = seeded(&app, "Handbook").await;
    // Paraphrase with no shared keywords: only the dense side can find it.
    let (status, dense) = search(
        &app,
        &space,
        json!({"query": "how much holiday time off do staff get", "mode": "dense"}),
    )
    .await;
    assert_eq!(status, 200, "{dense}");
    assert_eq!(dense["mode"], "dense");
    assert_eq!(first_file(&dense), "leave.md", "{dense}");
    let score = dense["results"][0]["score"].as_f64().unwrap();
    assert!(
        score > 0.3 && score <= 1.0001,
        "cosine similarity, got {score}"
    );

    let (_, keyword) = search(&app, &space, json!({"query": "laptop", "mode": "keyword"})).await;
    assert_eq!(first_file(&keyword), "laptop.md", "{keyword}");
    assert_eq!(
        keyword["results"].as_array().unwrap().len(),
        1,
        "only passages containing the word: {keyword}"
    );

    let (_, hybrid) = search(
        &app,
        &space,
        json!({"query": "when are production deploys"}),
    )
    .await;
    assert_eq!(hybrid["mode"], "hybrid");
    assert_eq!(first_file(&hybrid), "deploy.md", "{hybrid}");
    let top = &hybrid["results"][0];
    assert!(
        top["dense_rank"].is_number() && top["keyword_rank"].is_number(),
        "{top}"
    );
    // Each stage's own score is shown beside the fused one: a cosine and a positive text rank.
    let cosine = top["dense_score"].as_f64().unwrap();
    assert!(cosine > 0.0 && cosine <= 1.0, "{top}");
    assert!(top["keyword_score"].as_f64().unwrap() > 0.0, "{top}");
    let chunk = &top["chunk"];
    assert!(chunk["text"].as_str().unwrap().contains("Tuesdays"));
    assert_eq!(chunk["heading_path"], "Deployments");
}

async fn results_respect_limit_document_filter_and_min_score(backend: Backend) {
    let app = spawn_app(backend).await;
    let (space, ids) = seeded(&app, "Filters").await;
    let (_, res) = search(
        &app,
        &space,
        json!({"query": "work", "mode": "dense", "limit": 2}),
    )
    .await;
    assert_eq!(res["results"].as_array().unwrap().len(), 2);

    let (_, res) = search(
        &app,
        &space,
        json!({"query": "work", "mode": "dense", "document_id": ids[1]}),
    )
    .await;
    let results = res["results"].as_array().unwrap();
    assert!(!results.is_empty());
    assert!(
        results
            .iter()
            .all(|r| r["chunk"]["document_id"] == ids[1].as_str()),
        "{res}"
    );

    let (_, res) = search(
        &app,
        &space,
        json!({"query": "paid vacation days", "mode": "dense", "min_score": 0.99}),
    )
    .await;
    assert!(res["results"].as_array().unwrap().is_empty(), "{res}");
}

async fn a_cached_result_is_never_stale_after_a_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let (space, ids) = seeded(&app, "Cache").await;
    let body = json!({"query": "laptop hardware", "mode": "hybrid"});
    let (_, first) = search(&app, &space, body.clone()).await;
    assert_eq!(first["cached"], false);
    let (_, second) = search(&app, &space, body.clone()).await;
    assert_eq!(second["cached"], true);
    assert_eq!(second["results"], first["results"]);

    assert_eq!(
        app.delete(&format!("/api/v1/spaces/{space}/documents/{}", ids[1]))
            .await
            .status(),
        204
    );
    let (_, after) = search(&app, &space, body).await;
    assert_eq!(after["cached"], false, "a write bumps the space version");
    assert!(
        after["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["filename"] != "laptop.md"),
        "{after}"
    );
}

async fn a_search_before_indexing_finishes_says_so(backend: Backend) {
    let app = crate::helpers::spawn_app_with(
        backend,
        crate::helpers::Options {
            workers: 0,
            ..Default::default()
        },
    )
    .await;
    let space = app.create_space("Early").await;
    let (status, _) = app
        .upload(&space, "leave.md", LEAVE.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202);
    let (status, res) = search(&app, &space, json!({"query": "vacation"})).await;
    assert_eq!(status, 200);
    assert_eq!(res["pending_documents"], 1);
    assert!(
        res["notice"]
            .as_str()
            .unwrap()
            .contains("still being indexed"),
        "{res}"
    );
    assert!(res["results"].as_array().unwrap().is_empty());
}

async fn bad_search_requests_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Bad").await;
    for body in [
        json!({"query": "  "}),
        json!({"query": "x", "limit": 0}),
        json!({"query": "x", "limit": 51}),
        json!({"query": "x", "document_id": "nope"}),
        json!({"query": "x".repeat(2001)}),
    ] {
        let (status, res) = search(&app, &space, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {res}");
        assert_error(&res, "invalid_search");
    }
    let (status, res) = search(&app, &space, json!({"query": "x", "mode": "psychic"})).await;
    assert_eq!(status, 422, "{res}");
    // A filter the API does not have is refused, not silently ignored.
    let (status, res) = search(
        &app,
        &space,
        json!({"query": "x", "filter": {"author": "ana"}}),
    )
    .await;
    assert_eq!(status, 422, "{res}");
    assert!(
        res["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("filter"),
        "{res}"
    );
    let (status, res) = search(
        &app,
        "0190f5a2-7c1e-7000-8000-000000000000",
        json!({"query": "x"}),
    )
    .await;
    assert_eq!(status, 404);
    assert_error(&res, "space_not_found");
}

async fn searches_never_cross_spaces(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, _) = seeded(&app, "Theirs").await;
    let mine = app.create_space("Mine").await;
    for mode in ["dense", "keyword", "hybrid"] {
        let (status, res) = search(
            &app,
            &mine,
            json!({"query": "laptop vacation deploys", "mode": mode}),
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            res["results"].as_array().unwrap().is_empty(),
            "{mode}: {res}"
        );
    }
}
