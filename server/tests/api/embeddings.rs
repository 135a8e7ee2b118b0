//! The OpenAI-compatible embedder: a space indexed and searched with a provider's vectors, a
//! provider failure ending a job with its reason, and a data set indexed by one model re-embedded
//! when served with another.

use crate::embed_stub::EmbedStub;
use crate::helpers::{spawn_app_with, Backend, Options, TestApp};
use kenning::config::{EmbedderKind, ServeConfig};
use serde_json::json;

on_both_backends!(
    a_provider_embeds_passages_and_questions,
    a_failing_provider_fails_the_job_with_its_reason,
    switching_the_embedder_re_embeds_indexed_spaces_in_the_background,
);

async fn with_provider(backend: Backend, stub: &EmbedStub, attempts: i32) -> TestApp {
    let url = stub.base_url.clone();
    spawn_app_with(
        backend,
        Options {
            serve: Box::new(move |c: &mut ServeConfig| {
                c.ingest.embedder = EmbedderKind::Openai;
                c.ingest.embed_base_url = Some(url);
                c.ingest.embed_api_key = Some("sk-test-key".to_string().into());
                c.ingest.embed_model = "stub-embed-1".into();
                c.ingest.embed_batch = 4;
                c.ingest.job_max_attempts = attempts;
            }),
            ..Options::default()
        },
    )
    .await
}

const HANDBOOK: &[u8] =
    b"# Leave\n\nEvery employee receives twenty-five vacation days each year.\n";

const NOTES: [(&str, &str); 3] = [
    (
        "leave.md",
        "# Leave\n\nEvery employee receives twenty-five vacation days each year.\n",
    ),
    (
        "hardware.md",
        "# Hardware\n\nBroken laptops are replaced by the IT desk within two days.\n",
    ),
    (
        "travel.md",
        "# Travel\n\nTrain tickets are booked through the travel portal.\n",
    ),
];

async fn a_provider_embeds_passages_and_questions(backend: Backend) {
    let stub = EmbedStub::start().await;
    let app = with_provider(backend, &stub, 5).await;
    let space = app.create_space("Provided").await;
    let mut passages = 0;
    for (name, text) in NOTES {
        let (status, doc) = app.upload(&space, name, text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{doc}");
        let done = app
            .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "ready", "{done}");
        passages += done["chunk_count"].as_u64().unwrap() as usize;
    }

    let (status, found) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": "who replaces broken laptops", "mode": "dense" }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["filename"], "hardware.md", "{found}");

    let requests = stub.requests();
    // The start-up probe, the passages in batches of at most 4, then the question.
    assert!(requests.len() >= 3, "{requests:?}");
    for (token, body) in &requests {
        assert_eq!(token.as_deref(), Some("sk-test-key"));
        assert_eq!(body["model"], "stub-embed-1");
        assert!(body["input"].as_array().unwrap().len() <= 4, "{body}");
    }
    let ingested: usize = requests[1..requests.len() - 1]
        .iter()
        .map(|(_, b)| b["input"].as_array().unwrap().len())
        .sum();
    assert_eq!(ingested, passages, "every passage embedded once");
    assert_eq!(
        requests.last().unwrap().1["input"][0],
        "who replaces broken laptops"
    );
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["status"], "healthy", "{health}");
}

async fn a_failing_provider_fails_the_job_with_its_reason(backend: Backend) {
    let stub = EmbedStub::start().await;
    let app = with_provider(backend, &stub, 2).await;
    stub.fail(true);
    let space = app.create_space("Down").await;
    let (_, doc) = app.upload(&space, "handbook.md", HANDBOOK.to_vec()).await;
    let done = app
        .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let reason = done["error"].as_str().unwrap();
    assert!(
        reason.contains("embedding failed") && reason.contains("500"),
        "{reason}"
    );
}

/// Data indexed by one model and served with another is re-embedded in the background, with
/// vectors of another length (64 against 384): each document is indexed again by the new model,
/// dense search answers from the new vectors, and a second restart finds nothing left to do.
async fn switching_the_embedder_re_embeds_indexed_spaces_in_the_background(backend: Backend) {
    let app = spawn_app_with(backend, Options::default()).await;
    let space = app.create_space("Notes").await;
    let mut documents = Vec::new();
    let mut passages = 0;
    for (name, text) in NOTES {
        let (status, doc) = app.upload(&space, name, text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{doc}");
        let id = doc["id"].as_str().unwrap().to_string();
        let done = app.wait_for_ingestion(&space, &id).await;
        assert_eq!(done["status"], "ready", "{done}");
        passages += done["chunk_count"].as_u64().unwrap() as usize;
        documents.push(id);
    }

    let stub = EmbedStub::start().await;
    let url = stub.base_url.clone();
    let provider = move |c: &mut ServeConfig| {
        c.ingest.embedder = EmbedderKind::Openai;
        c.ingest.embed_base_url = Some(url);
        c.ingest.embed_model = "stub-embed-1".into();
    };
    let app = app.restart_with(provider.clone()).await;
    for id in &documents {
        let done = app.wait_for_ingestion(&space, id).await;
        assert_eq!(done["status"], "ready", "{done}");
    }
    let requests = stub.requests();
    let embedded: usize = requests[1..]
        .iter()
        .map(|(_, b)| b["input"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        embedded, passages,
        "every passage embedded again by the new model"
    );

    let (status, found) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": "who replaces broken laptops", "mode": "dense", "limit": 10 }),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["results"][0]["filename"], "hardware.md", "{found}");
    assert_eq!(
        found["results"].as_array().unwrap().len(),
        passages,
        "each passage once, no vector of the old model left: {found}"
    );
    assert_eq!(
        found["pending_documents"].as_u64().unwrap_or(0),
        0,
        "{found}"
    );

    // Already on the new model: a restart queues nothing.
    let before = stub.requests().len();
    let app = app.restart_with(provider).await;
    let (_, doc) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/documents/{}",
            documents[0]
        ))
        .await;
    assert_eq!(doc["status"], "ready", "{doc}");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(stub.requests().len(), before + 1, "only the start-up probe");
}
