//! One suite for every vector store: the same points and queries on each backend must give the
//! same ids in the same order (the exact cosine ranking, computed here), the same scores, the
//! same filtering by space and document, and the same results after re-upserts and deletes.
//! The embedded and Qdrant Edge stores always run; pgvector on `KENNING_TEST_POSTGRES_URL`; Qdrant when
//! `QDRANT_URL` names a server (gRPC port), and the test says so when it is skipped.

use kenning::points::{EmbeddedVectorStore, SqlitePointStore};
use kenning::vector::{
    Chunks, EdgeVectorStore, PgVectorStore, QdrantSettings, QdrantVectorStore, VectorError,
    VectorPoint, VectorQuery, VectorStore,
};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

const DIMS: usize = 8;

/// The data every backend gets: two documents in one space, one in another.
struct Fixture {
    space: Uuid,
    other_space: Uuid,
    doc_a: Uuid,
    doc_b: Uuid,
    points: Vec<VectorPoint>,
    queries: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let mut rng = fastrand::Rng::with_seed(42);
    let mut vector = || {
        (0..DIMS)
            .map(|_| rng.f32() * 2.0 - 1.0)
            .collect::<Vec<f32>>()
    };
    let (space, other_space) = (Uuid::now_v7(), Uuid::now_v7());
    let (doc_a, doc_b, doc_c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut points = Vec::new();
    for i in 0..120 {
        let (space_id, document_id) = match i % 3 {
            0 => (space, doc_a),
            1 => (space, doc_b),
            _ => (other_space, doc_c),
        };
        points.push(VectorPoint {
            chunk_id: Uuid::now_v7(),
            space_id,
            document_id,
            vector: vector(),
            text: format!("passage {i}"),
        });
    }
    let queries = (0..5).map(|_| vector()).collect();
    Fixture {
        space,
        other_space,
        doc_a,
        doc_b,
        points,
        queries,
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The exact answer: the points of the space (and document) by falling cosine similarity.
fn expected(
    points: &[VectorPoint],
    space: Uuid,
    document: Option<Uuid>,
    query: &[f32],
    limit: usize,
) -> Vec<(Uuid, f32)> {
    let mut scored: Vec<(Uuid, f32)> = points
        .iter()
        .filter(|p| p.space_id == space && document.is_none_or(|d| p.document_id == d))
        .map(|p| (p.chunk_id, cosine(&p.vector, query)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(limit);
    scored
}

async fn search(
    store: &dyn VectorStore,
    space: Uuid,
    document: Option<Uuid>,
    query: &[f32],
    limit: usize,
) -> Vec<(Uuid, f32)> {
    store
        .search(VectorQuery {
            space_id: space,
            vector: query.to_vec(),
            document_id: document,
            limit,
        })
        .await
        .expect("search")
        .into_iter()
        .map(|h| (h.chunk_id, h.score))
        .collect()
}

/// Same ids in the same order, and scores that agree with the exact cosine.
fn assert_ranked(backend: &str, what: &str, got: &[(Uuid, f32)], want: &[(Uuid, f32)]) {
    let ids = |v: &[(Uuid, f32)]| v.iter().map(|(id, _)| *id).collect::<Vec<_>>();
    assert_eq!(ids(got), ids(want), "{backend}: {what}: ids and order");
    for ((_, g), (_, w)) in got.iter().zip(want) {
        assert!(
            (g - w).abs() < 1e-4,
            "{backend}: {what}: score {g} where the exact cosine is {w}"
        );
    }
}

/// The whole contract, run against one backend.
async fn contract(store: &dyn VectorStore) {
    let backend = store.backend_name();
    let f = fixture();
    store.ping().await.expect("ping");
    store.upsert(f.points.clone()).await.expect("upsert");

    for (i, q) in f.queries.iter().enumerate() {
        let got = search(store, f.space, None, q, 10).await;
        assert_ranked(
            backend,
            &format!("query {i}"),
            &got,
            &expected(&f.points, f.space, None, q, 10),
        );
        let got = search(store, f.space, Some(f.doc_b), q, 5).await;
        assert_ranked(
            backend,
            &format!("query {i} in one document"),
            &got,
            &expected(&f.points, f.space, Some(f.doc_b), q, 5),
        );
    }
    // A deep list (hybrid search fuses more than a page) holds every point of the space.
    let all = search(store, f.space, None, &f.queries[0], 200).await;
    assert_eq!(all.len(), 80, "{backend}: limit above the space's size");

    // Re-upserting a chunk moves it; it is never found twice.
    let mut moved = f.points[0].clone();
    moved.vector = f.queries[1].clone();
    store.upsert(vec![moved.clone()]).await.expect("re-upsert");
    let mut points = f.points.clone();
    points[0] = moved.clone();
    let got = search(store, f.space, None, &f.queries[1], 10).await;
    assert_eq!(got[0].0, moved.chunk_id, "{backend}: the moved point");
    assert!(
        (got[0].1 - 1.0).abs() < 1e-4,
        "{backend}: identical vectors score 1"
    );
    assert_ranked(
        backend,
        "after a re-upsert",
        &got,
        &expected(&points, f.space, None, &f.queries[1], 10),
    );

    // One ingestion attempt takes back only the chunks it wrote: another attempt's chunks of the
    // same document, and same-numbered chunks elsewhere, stay.
    let of_a = |points: &[VectorPoint]| -> Vec<Uuid> {
        points
            .iter()
            .filter(|p| p.document_id == f.doc_a)
            .map(|p| p.chunk_id)
            .collect()
    };
    let a = of_a(&points);
    let (mine, theirs) = a.split_at(10);
    let mut doomed = mine.to_vec();
    // A chunk of another document named by mistake is not the document's to delete.
    let b_chunk = points[1].chunk_id;
    doomed.push(b_chunk);
    store
        .delete_chunks(f.space, f.doc_a, Chunks::Only(&doomed))
        .await
        .expect("delete one attempt's chunks");
    store
        .delete_chunks(f.space, f.doc_a, Chunks::Only(&[]))
        .await
        .expect("deleting no chunks");
    points.retain(|p| !mine.contains(&p.chunk_id));
    let in_a = search(store, f.space, Some(f.doc_a), &f.queries[3], 100).await;
    assert_eq!(
        in_a.len(),
        theirs.len(),
        "{backend}: the other attempt's chunks stay"
    );
    assert!(
        search(store, f.space, Some(f.doc_b), &f.queries[3], 100)
            .await
            .iter()
            .any(|(id, _)| *id == b_chunk),
        "{backend}: another document's chunk is never deleted through this one"
    );
    // A finished attempt clears everything else of its document.
    let (kept, stale) = theirs.split_at(5);
    store
        .delete_chunks(f.space, f.doc_a, Chunks::AllBut(kept))
        .await
        .expect("delete all but the finished attempt's chunks");
    points.retain(|p| !stale.contains(&p.chunk_id));
    let mut left: Vec<Uuid> = search(store, f.space, Some(f.doc_a), &f.queries[3], 100)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    left.sort();
    assert_eq!(
        left,
        kept.to_vec(),
        "{backend}: only the kept chunks are left"
    );
    assert_ranked(
        backend,
        "after deleting chunks",
        &search(store, f.space, None, &f.queries[3], 100).await,
        &expected(&points, f.space, None, &f.queries[3], 100),
    );

    // Deleting a document leaves its space's other document and other spaces alone.
    store
        .delete_document(f.space, f.doc_a)
        .await
        .expect("delete document");
    points.retain(|p| p.document_id != f.doc_a);
    let got = search(store, f.space, None, &f.queries[2], 100).await;
    assert_eq!(got.len(), 40, "{backend}: only document b is left");
    assert_ranked(
        backend,
        "after deleting a document",
        &got,
        &expected(&points, f.space, None, &f.queries[2], 100),
    );
    let other = search(store, f.other_space, None, &f.queries[2], 100).await;
    assert_eq!(other.len(), 40, "{backend}: the other space is untouched");

    store.delete_space(f.space).await.expect("delete space");
    assert!(
        search(store, f.space, None, &f.queries[0], 10)
            .await
            .is_empty(),
        "{backend}: a deleted space finds nothing"
    );
    assert_eq!(
        search(store, f.other_space, None, &f.queries[0], 100)
            .await
            .len(),
        40,
        "{backend}: deleting a space keeps the others"
    );

    // Bad vectors are refused, whole batches with them.
    let mut short = f.points[1].clone();
    short.vector.pop();
    let err = store.upsert(vec![short]).await.unwrap_err();
    assert!(matches!(err, VectorError::Invalid(_)), "{backend}: {err}");
    let mut nan = f.points[1].clone();
    nan.vector[3] = f32::NAN;
    let fine = VectorPoint {
        chunk_id: Uuid::now_v7(),
        ..f.points[1].clone()
    };
    let err = store.upsert(vec![fine.clone(), nan]).await.unwrap_err();
    assert!(matches!(err, VectorError::Invalid(_)), "{backend}: {err}");
    assert!(
        search(store, f.space, None, &fine.vector, 10)
            .await
            .is_empty(),
        "{backend}: nothing of a refused batch is stored"
    );
    let err = store
        .search(VectorQuery {
            space_id: f.space,
            vector: vec![1.0; DIMS + 1],
            document_id: None,
            limit: 10,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, VectorError::Invalid(_)), "{backend}: {err}");
    store
        .delete_space(f.other_space)
        .await
        .expect("clean up the other space");
}

#[tokio::test]
async fn the_embedded_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(dir.path().join("v.db"))
                .create_if_missing(true),
        )
        .await
        .expect("sqlite");
    let engine = Arc::new(
        SqlitePointStore::open(pool.clone(), 128, 20_000)
            .await
            .expect("points engine"),
    );
    let store = EmbeddedVectorStore::open(engine, pool, DIMS)
        .await
        .expect("embedded store");
    contract(&store).await;
}

#[tokio::test]
async fn the_qdrant_edge_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EdgeVectorStore::open(dir.path(), "contract-model", DIMS)
        .await
        .expect("edge shard");
    contract(&store).await;
}

#[tokio::test]
async fn a_qdrant_edge_shard_keeps_its_points_across_restarts_and_optimisation() {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = fixture();
    let query = &f.queries[0];
    let want = expected(&f.points, f.space, None, query, 10);
    {
        let store = EdgeVectorStore::open(dir.path(), "m", DIMS)
            .await
            .expect("edge shard");
        store.upsert(f.points.clone()).await.expect("upsert");
        store.optimize().await.expect("optimise");
        let got = search(&store, f.space, None, query, 10).await;
        assert_ranked("edge", "after optimising", &got, &want);
    }
    // Reopened from disk (the first store is gone, and its lock with it): the same answers.
    let store = EdgeVectorStore::open(dir.path(), "m", DIMS)
        .await
        .expect("edge shard, reopened");
    let got = search(&store, f.space, None, query, 10).await;
    assert_ranked("edge", "after reopening", &got, &want);
    // Another vector length is another shard, which starts empty.
    let other = EdgeVectorStore::open(dir.path(), "m", DIMS * 2)
        .await
        .expect("edge shard of another length");
    assert_ne!(other.path(), store.path());
    let got = other
        .search(VectorQuery {
            space_id: f.space,
            vector: vec![0.5; DIMS * 2],
            document_id: None,
            limit: 10,
        })
        .await
        .expect("search");
    assert!(got.is_empty(), "a new shard holds nothing");
    // One process owns a shard: a second open while this one is alive is refused, clearly.
    let Err(err) = EdgeVectorStore::open(dir.path(), "m", DIMS).await else {
        panic!("opened a Qdrant Edge shard that is already open");
    };
    assert!(
        matches!(&err, VectorError::Unavailable(m) if m.contains("another Kenning process")),
        "{err}"
    );
}

fn passage(space: Uuid, document: Uuid, text: &str) -> VectorPoint {
    VectorPoint {
        chunk_id: Uuid::now_v7(),
        space_id: space,
        document_id: document,
        vector: vec![0.5; DIMS],
        text: text.into(),
    }
}

async fn keyword(
    store: &dyn VectorStore,
    space: Uuid,
    query: &str,
    document: Option<Uuid>,
) -> Vec<Uuid> {
    store
        .keyword(space, query, document, 10)
        .await
        .expect("keyword search")
        .expect("Qdrant Edge keeps its own keyword index")
        .into_iter()
        .map(|h| h.chunk_id)
        .collect()
}

#[tokio::test]
async fn qdrant_edge_keyword_search_is_bm25_over_one_space() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EdgeVectorStore::open(dir.path(), "m", DIMS)
        .await
        .expect("edge shard");
    let (space, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (manual, handbook) = (Uuid::now_v7(), Uuid::now_v7());
    let gauge = passage(
        space,
        manual,
        "The pump's pressure gauge reads high when the valve is shut.",
    );
    let pumps = passage(
        space,
        manual,
        "Pumps are serviced every spring; pumps need oil.",
    );
    let leave = passage(
        space,
        handbook,
        "Employees take their annual leave in agreed weeks.",
    );
    let elsewhere = passage(
        other,
        Uuid::now_v7(),
        "The pressure of pumps in another space.",
    );
    store
        .upsert(vec![
            gauge.clone(),
            pumps.clone(),
            leave.clone(),
            elsewhere.clone(),
        ])
        .await
        .expect("upsert");

    // Stemmed: "pumping" finds "pumps" and "pump's"; the passage that also says "pressure" and
    // "gauge" ranks first; another space's passage never shows up.
    let got = keyword(&store, space, "pumping pressure gauge", None).await;
    assert_eq!(got, vec![gauge.chunk_id, pumps.chunk_id]);
    // Term frequency counts: a passage saying "pumps" twice beats one saying it once.
    let got = keyword(&store, space, "pumps", None).await;
    assert_eq!(got, vec![pumps.chunk_id, gauge.chunk_id]);
    assert_eq!(
        keyword(&store, space, "leave", Some(handbook)).await,
        vec![leave.chunk_id]
    );
    assert!(keyword(&store, space, "leave", Some(manual))
        .await
        .is_empty());
    assert!(
        keyword(&store, space, "the of when", None).await.is_empty(),
        "stop words alone match nothing"
    );
    // Deleting a document takes its keyword side with it.
    store.delete_document(space, manual).await.expect("delete");
    assert!(keyword(&store, space, "pressure", None).await.is_empty());
    assert_eq!(
        keyword(&store, other, "pressure", None).await,
        vec![elsewhere.chunk_id]
    );
}

#[tokio::test]
async fn new_and_older_qdrant_edge_shards_ask_once_for_every_space_to_be_indexed_again() {
    use qdrant_edge::{
        Distance, EdgeConfigBuilder, EdgeShard, EdgeVectorParamsBuilder, PointId,
        PointInsertOperations, PointOperations, PointStruct, UpdateOperation, Vectors,
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let path = kenning::vector::edge_shard_dir(dir.path(), "m", DIMS);
    {
        // A dense-only shard with one passage, as the first Qdrant Edge backend made them.
        std::fs::create_dir_all(&path).expect("shard dir");
        let config = EdgeConfigBuilder::new()
            .vector(
                "dense",
                EdgeVectorParamsBuilder::new(DIMS, Distance::Cosine).build(),
            )
            .build();
        let shard = EdgeShard::new(&path, config).expect("old shard");
        let point = PointStruct::new(
            PointId::Uuid(Uuid::now_v7()),
            Vectors::new_named([("dense", vec![0.5f32; DIMS])]),
            serde_json::json!({ "space_id": Uuid::now_v7().to_string(), "document_id": Uuid::now_v7().to_string() }),
        );
        shard
            .update(UpdateOperation::PointOperation(
                PointOperations::UpsertPoints(PointInsertOperations::PointsList(
                    vec![point.into()],
                )),
            ))
            .expect("old passage");
    }
    let space = Uuid::now_v7();
    {
        let store = EdgeVectorStore::open(dir.path(), "m", DIMS)
            .await
            .expect("upgraded");
        assert!(
            store.needs_reindex(),
            "its passages have no keyword side yet"
        );
        let p = passage(space, Uuid::now_v7(), "Valves open clockwise.");
        store.upsert(vec![p.clone()]).await.expect("upsert");
        assert_eq!(
            keyword(&store, space, "valve", None).await,
            vec![p.chunk_id]
        );
        store.reindex_queued().await.expect("recorded");
    }
    let store = EdgeVectorStore::open(dir.path(), "m", DIMS)
        .await
        .expect("reopened");
    assert!(
        !store.needs_reindex(),
        "asked once: the keyword side is there now"
    );
    // A new shard asks too: spaces indexed before were indexed into another store.
    let fresh = EdgeVectorStore::open(&dir.path().join("new"), "m", DIMS)
        .await
        .expect("new shard");
    assert!(fresh.needs_reindex());
    fresh.reindex_queued().await.expect("recorded");
    assert!(!fresh.needs_reindex());
}

#[tokio::test]
async fn pgvector_keeps_the_contract() {
    let url = crate::postgres::fresh_postgres_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&url)
        .await
        .expect("postgres");
    let store = PgVectorStore::open(pool, DIMS, 100)
        .await
        .expect("pgvector");
    contract(&store).await;
}

#[tokio::test]
async fn qdrant_keeps_the_contract() {
    let Ok(url) = std::env::var("QDRANT_URL") else {
        eprintln!("SKIPPED: QDRANT_URL is not set, so the Qdrant backend was not tested");
        return;
    };
    for int8 in [false, true] {
        let settings = QdrantSettings {
            url: url.clone(),
            api_key: std::env::var("QDRANT_API_KEY").ok().map(Into::into),
            // Quantization is fixed when a collection is made, so each setting has its own; runs
            // share them safely, as every run's spaces are new and deleted at the end.
            collection_prefix: format!("kenning_test{}", if int8 { "_int8" } else { "" }),
            int8,
            timeout: Duration::from_secs(10),
        };
        let store = QdrantVectorStore::open(settings.clone(), "contract-model", DIMS)
            .await
            .expect("qdrant");
        contract(&store).await;
        // Opening again finds the collection and its indexes in place.
        QdrantVectorStore::open(settings, "contract-model", DIMS)
            .await
            .expect("reopen");
    }
}

#[tokio::test]
async fn an_unreachable_qdrant_is_reported_within_the_timeout() {
    let started = std::time::Instant::now();
    let settings = QdrantSettings {
        // Port 9 on loopback: nothing listens (discard), so the connection is refused.
        url: "http://127.0.0.1:9".into(),
        api_key: None,
        collection_prefix: "kenning".into(),
        int8: false,
        timeout: Duration::from_secs(2),
    };
    let Err(err) = QdrantVectorStore::open(settings, "m", DIMS).await else {
        panic!("opened a Qdrant store with no server");
    };
    assert!(matches!(err, VectorError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// A data directory the embedded engine kept (the default before Qdrant Edge) served with the
/// new default: its spaces are indexed again into Edge in the background and its points are
/// copied over, so nothing indexed before is lost to search.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_of_the_embedded_engine_moves_to_qdrant_edge_whole() {
    use crate::helpers::{spawn_app, Backend};
    use serde_json::json;
    let app = spawn_app(Backend::Embedded).await;
    let space = app.create_space("Before").await;
    let text =
        "# Boilers\n\nThe boiler's pilot light is relit with the red button under the cover.";
    let (status, doc) = app
        .upload(&space, "boiler.md", text.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202, "{doc}");
    let id = doc["id"].as_str().expect("id").to_string();
    assert_eq!(app.wait_for_ingestion(&space, &id).await["status"], "ready");
    let points = format!("/api/v1/spaces/{space}/points");
    let (status, body) = app
        .put_json(
            &points,
            &json!({ "points": [
                { "id": 1, "vector": [1.0, 0.0], "payload": { "k": "a" } },
                { "id": 2, "vector": [0.0, 1.0] },
            ] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The same data directory served with the defaults: Qdrant Edge.
    let app = app.restart_with(|_| {}).await;
    let (status, health) = app.get_json("/health/readiness").await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(app.wait_for_ingestion(&space, &id).await["status"], "ready");
    for mode in ["dense", "keyword", "hybrid"] {
        let (status, found) = app
            .post_json(
                &format!("/api/v1/spaces/{space}/search"),
                &json!({ "query": "how do I relight the boiler pilot light", "mode": mode }),
            )
            .await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(
            found["results"][0]["filename"], "boiler.md",
            "{mode}: {found}"
        );
        assert_eq!(
            found["results"].as_array().map(Vec::len),
            Some(1),
            "{mode}: {found}"
        );
    }
    let (status, point) = app.get_json(&format!("{points}/1")).await;
    assert_eq!(status, 200, "{point}");
    assert_eq!(
        point,
        json!({ "id": 1, "vector": [1.0, 0.0], "payload": { "k": "a" } })
    );
    let (_, info) = app.get_json(&points).await;
    assert_eq!(info["points"], 2, "{info}");
    assert!(
        app.data_dir.join("edge/points/kenning.moved").exists(),
        "the move is recorded, so a restart does not copy again"
    );
}
