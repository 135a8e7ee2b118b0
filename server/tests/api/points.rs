//! The points API on both backends: the same data gives the same ids in the same order, and bad
//! input is refused whole with a JSON error.

use crate::helpers::{expect_error, spawn_app, spawn_app_with, Backend, Options, TestApp};
use serde_json::{json, Value};

on_every_vector_store!(
    points_round_trip_through_upsert_get_search_and_delete,
    search_order_matches_an_exact_cosine_ranking,
    filters_and_min_score_narrow_the_results,
    a_space_keeps_the_dimensions_of_its_first_points,
    bad_points_are_refused_whole_with_a_json_error,
    bad_searches_and_ids_are_refused,
    a_large_space_is_searched_through_its_graph_with_high_recall,
);

fn points_path(space: &str) -> String {
    format!("/api/v1/spaces/{space}/points")
}

async fn upsert(app: &TestApp, space: &str, points: Value) -> (u16, Value) {
    app.put_json(&points_path(space), &json!({ "points": points }))
        .await
}

async fn search(app: &TestApp, space: &str, body: Value) -> (u16, Value) {
    app.post_json(&format!("{}/search", points_path(space)), &body)
        .await
}

fn ids(body: &Value) -> Vec<Value> {
    body["points"]
        .as_array()
        .expect("points array")
        .iter()
        .map(|p| p["id"].clone())
        .collect()
}

const UUID: &str = "5b4e6b1c-5d1a-4c55-9c1e-2b4f0c8e9a10";

async fn points_round_trip_through_upsert_get_search_and_delete(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Vectors").await;
    let (status, body) = upsert(
        &app,
        &space,
        json!([
            { "id": 1, "vector": [1.0, 0.0, 0.0], "payload": { "text": "east" } },
            { "id": UUID.to_uppercase(), "vector": [0.0, 1.0, 0.0], "payload": { "text": "north" } },
            { "id": "3", "vector": [0.7, 0.7, 0.0] },
        ]),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "upserted": 3, "dimensions": 3 }));

    let (status, point) = app.get_json(&format!("{}/1", points_path(&space))).await;
    assert_eq!(status, 200);
    assert_eq!(
        point,
        json!({ "id": 1, "vector": [1.0, 0.0, 0.0], "payload": { "text": "east" } })
    );
    let (status, point) = app
        .get_json(&format!("{}/{UUID}", points_path(&space)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(point["id"], UUID, "UUIDs come back lower-case");

    let (status, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.1, 0.0], "limit": 2 }),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(ids(&found), [json!(1), json!(3)]);
    assert_eq!(found["points"][0]["payload"]["text"], "east");
    let top = found["points"][0]["score"].as_f64().unwrap();
    assert!(
        top > 0.99 && top <= 1.0001,
        "cosine of near-identical vectors: {top}"
    );

    // Re-upserting an id replaces its vector and payload.
    let (status, _) = upsert(
        &app,
        &space,
        json!([{ "id": 1, "vector": [0.0, 0.0, 1.0], "payload": { "text": "up" } }]),
    )
    .await;
    assert_eq!(status, 200);
    let (_, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.1, 0.0], "limit": 2 }),
    )
    .await;
    assert_eq!(ids(&found), [json!(3), json!(UUID)]);
    let (_, found) = search(
        &app,
        &space,
        json!({ "vector": [0.0, 0.0, 1.0], "limit": 1 }),
    )
    .await;
    assert_eq!(found["points"][0]["payload"], json!({ "text": "up" }));

    let gone = app.delete(&format!("{}/3", points_path(&space))).await;
    assert_eq!(gone.status().as_u16(), 204);
    let again = app.delete(&format!("{}/3", points_path(&space))).await;
    assert_eq!(again.status().as_u16(), 404);
    let (status, body) = app.get_json(&format!("{}/3", points_path(&space))).await;
    expect_error(status, &body, 404, "point_not_found");
    let (_, found) = search(&app, &space, json!({ "vector": [0.7, 0.7, 0.0] })).await;
    assert_eq!(ids(&found).len(), 2);
    assert!(!ids(&found).contains(&json!(3)));

    // Deleting the space deletes its points; the API then knows neither.
    let deleted = app.delete(&format!("/api/v1/spaces/{space}")).await;
    assert_eq!(deleted.status().as_u16(), 204);
    let (status, body) = app.get_json(&format!("{}/1", points_path(&space))).await;
    expect_error(status, &body, 404, "space_not_found");
}

/// A deterministic pseudo-random vector.
fn vector(seed: u64, dims: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dims)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64) * (*y as f64))
        .sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

async fn search_order_matches_an_exact_cosine_ranking(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Ranked").await;
    let dims = 16;
    let all: Vec<(u64, Vec<f32>)> = (1..=300).map(|i| (i, vector(i, dims))).collect();
    for batch in all.chunks(100) {
        let points: Vec<Value> = batch
            .iter()
            .map(|(id, v)| json!({ "id": id, "vector": v, "payload": { "n": id } }))
            .collect();
        let (status, body) = upsert(&app, &space, json!(points)).await;
        assert_eq!(status, 200, "{body}");
    }
    for q in 0..5 {
        let query = vector(1000 + q, dims);
        let mut expected: Vec<(f64, u64)> =
            all.iter().map(|(id, v)| (cosine(&query, v), *id)).collect();
        expected.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<Value> = expected.iter().take(10).map(|(_, id)| json!(id)).collect();
        let (status, found) = search(&app, &space, json!({ "vector": query })).await;
        assert_eq!(status, 200, "{found}");
        assert_eq!(ids(&found), want, "query {q}");
        for (hit, (score, _)) in found["points"].as_array().unwrap().iter().zip(&expected) {
            let got = hit["score"].as_f64().unwrap();
            assert!((got - score).abs() < 1e-4, "score {got} vs exact {score}");
            assert_eq!(hit["payload"]["n"], hit["id"]);
        }
    }
}

async fn filters_and_min_score_narrow_the_results(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Memories").await;
    let (status, _) = upsert(
        &app,
        &space,
        json!([
            { "id": 1, "vector": [1.0, 0.0], "payload": { "user": "ana", "n": 1 } },
            { "id": 2, "vector": [0.9, 0.1], "payload": { "user": "bo", "n": 2 } },
            { "id": 3, "vector": [0.0, 1.0], "payload": { "user": "ana", "n": 3 } },
            { "id": 4, "vector": [-1.0, 0.0], "payload": { "user": "ana", "n": 4 } },
        ]),
    )
    .await;
    assert_eq!(status, 200);
    let (_, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.0], "filter": { "user": "ana" } }),
    )
    .await;
    assert_eq!(ids(&found), [json!(1), json!(3), json!(4)]);
    let (_, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.0], "filter": { "user": "ana" }, "min_score": 0.0 }),
    )
    .await;
    assert_eq!(ids(&found), [json!(1), json!(3)], "-1 is below min_score 0");
    let (_, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.0], "filter": { "n": 2.0 } }),
    )
    .await;
    assert_eq!(ids(&found), [json!(2)], "numbers compare by value");
    // Keys are keys, whatever they hold: a dot or a space is not a path into nested values.
    let (status, _) = upsert(
        &app,
        &space,
        json!([
            { "id": 5, "vector": [0.5, 0.5], "payload": { "a.b": "x", "user id": 7, "w": 1.0 } },
            { "id": 6, "vector": [0.5, 0.5], "payload": { "a": { "b": "x" }, "w": 2 } },
        ]),
    )
    .await;
    assert_eq!(status, 200);
    for (filter, want) in [
        (json!({ "a.b": "x" }), json!(5)),
        (json!({ "user id": 7 }), json!(5)),
        (json!({ "w": 1 }), json!(5)),
        (json!({ "w": 2.0 }), json!(6)),
    ] {
        let (status, found) = search(
            &app,
            &space,
            json!({ "vector": [1.0, 0.0], "filter": filter }),
        )
        .await;
        assert_eq!(status, 200, "{filter}: {found}");
        assert_eq!(ids(&found), [want], "{filter}: {found}");
    }
    let (status, found) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.0], "filter": { "user": "cy" } }),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        ids(&found),
        Vec::<Value>::new(),
        "a known key with no match"
    );
    // A key no point has can never match: almost always a misspelt key, so it is refused.
    let (status, refused) = search(
        &app,
        &space,
        json!({ "vector": [1.0, 0.0], "filter": { "user": "ana", "team": "x" } }),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(
        refused["error"]["code"], "unknown_filter_field",
        "{refused}"
    );
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("team"),
        "{refused}"
    );
}

async fn a_space_keeps_the_dimensions_of_its_first_points(backend: Backend) {
    let app = spawn_app(backend).await;
    let four = app.create_space("Four").await;
    let three = app.create_space("Three").await;
    let (status, _) = upsert(
        &app,
        &four,
        json!([{ "id": 1, "vector": [1.0, 0.0, 0.0, 0.0] }]),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = upsert(&app, &four, json!([{ "id": 2, "vector": [1.0, 0.0, 0.0] }])).await;
    expect_error(status, &body, 400, "wrong_dimensions");
    let (status, body) = search(&app, &four, json!({ "vector": [1.0, 0.0, 0.0] })).await;
    expect_error(status, &body, 400, "wrong_dimensions");
    // Another space is free to use another size.
    let (status, _) = upsert(
        &app,
        &three,
        json!([{ "id": 2, "vector": [1.0, 0.0, 0.0] }]),
    )
    .await;
    assert_eq!(status, 200);
    let (_, found) = search(&app, &three, json!({ "vector": [1.0, 0.0, 0.0] })).await;
    assert_eq!(ids(&found), [json!(2)]);
    let (_, found) = search(&app, &four, json!({ "vector": [1.0, 0.0, 0.0, 0.0] })).await;
    assert_eq!(ids(&found), [json!(1)]);
}

async fn bad_points_are_refused_whole_with_a_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Strict").await;
    let good = json!({ "id": 1, "vector": [1.0, 0.0] });
    let cases = [
        (
            json!([good, { "id": 2, "vector": [1.0, 0.0, 0.0] }]),
            400,
            "wrong_dimensions",
        ),
        (
            json!([good, { "id": 2, "vector": [1.0, 1e39] }]),
            400,
            "invalid_vector",
        ),
        (
            json!([good, { "id": 2, "vector": [0.0, 0.0] }]),
            400,
            "invalid_vector",
        ),
        (
            json!([good, { "id": 2, "vector": [] }]),
            400,
            "invalid_vector",
        ),
        (
            json!([good, { "id": -2, "vector": [1.0, 0.0] }]),
            400,
            "invalid_point_id",
        ),
        (
            json!([good, { "id": "two", "vector": [1.0, 0.0] }]),
            400,
            "invalid_point_id",
        ),
        (
            json!([good, { "id": 1, "vector": [0.0, 1.0] }]),
            400,
            "duplicate_point_id",
        ),
        (
            json!([good, { "id": 2, "vector": [1.0, 0.0], "payload": { "t": "x".repeat(70_000) } }]),
            400,
            "payload_too_large",
        ),
        (
            json!([good, { "id": 2, "vector": [1.0, 0.0], "colour": "red" }]),
            422,
            "invalid_fields",
        ),
        (
            json!([good, { "id": 2, "vector": ["a", 0.0] }]),
            422,
            "invalid_fields",
        ),
        (json!([]), 400, "invalid_batch"),
    ];
    for (points, want, code) in cases {
        let (status, body) = upsert(&app, &space, points.clone()).await;
        assert_eq!(status, want, "{points}: {body}");
        expect_error(status, &body, want, code);
    }
    let too_many: Vec<Value> = (0..1001)
        .map(|i| json!({ "id": i, "vector": [1.0] }))
        .collect();
    let (status, body) = upsert(&app, &space, json!(too_many)).await;
    expect_error(status, &body, 400, "invalid_batch");
    // Nothing of any refused batch was written, not even its good first point.
    let (status, body) = app.get_json(&format!("{}/1", points_path(&space))).await;
    expect_error(status, &body, 404, "point_not_found");
    let (status, body) = upsert(&app, "00000000-0000-0000-0000-000000000000", json!([good])).await;
    expect_error(status, &body, 404, "space_not_found");
}

async fn bad_searches_and_ids_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Queries").await;
    let (status, _) = upsert(&app, &space, json!([{ "id": 1, "vector": [1.0, 0.0] }])).await;
    assert_eq!(status, 200);
    let cases = [
        (
            json!({ "vector": [1.0, 0.0], "limit": 0 }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "vector": [1.0, 0.0], "limit": 51 }),
            400,
            "invalid_limit",
        ),
        (
            json!({ "vector": [1.0, 0.0], "min_score": 2.0 }),
            400,
            "invalid_min_score",
        ),
        (
            json!({ "vector": [1.0, 0.0], "filter": { "user": { "$ne": 1 } } }),
            400,
            "invalid_filter",
        ),
        (json!({ "vector": [0.0, 0.0] }), 400, "invalid_vector"),
        (
            json!({ "vector": [1.0, 0.0], "limit": -1 }),
            422,
            "invalid_fields",
        ),
        (json!({ "limit": 3 }), 422, "invalid_fields"),
    ];
    for (body, want, code) in cases {
        let (status, reply) = search(&app, &space, body.clone()).await;
        assert_eq!(status, want, "{body}: {reply}");
        expect_error(status, &reply, want, code);
    }
    let (status, body) = app
        .get_json(&format!("{}/not-an-id", points_path(&space)))
        .await;
    expect_error(status, &body, 400, "invalid_point_id");
    let r = app
        .delete(&format!("{}/not-an-id", points_path(&space)))
        .await;
    assert_eq!(r.status().as_u16(), 400);
}

async fn a_large_space_is_searched_through_its_graph_with_high_recall(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            points_graph_min: 1000,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Large").await;
    let dims = 12;
    let all: Vec<(u64, Vec<f32>)> = (0..1500).map(|i| (i, vector(i + 7, dims))).collect();
    for batch in all.chunks(500) {
        let points: Vec<Value> = batch
            .iter()
            .map(|(id, v)| json!({ "id": id, "vector": v }))
            .collect();
        let (status, body) = upsert(&app, &space, json!(points)).await;
        assert_eq!(status, 200, "{body}");
    }
    // The embedded store builds its graph in the background; PostgreSQL's index is always there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, info) = app.get_json(&points_path(&space)).await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["points"], 1500);
        assert_eq!(info["dimensions"], dims);
        if info["index"] == "hnsw" {
            break;
        }
        assert_eq!(info["index"], "building", "{info}");
        assert!(
            std::time::Instant::now() < deadline,
            "the graph was never ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Writes after the build reach the graph: deleted points never come back, new ones are found.
    for id in 0..50 {
        let r = app.delete(&format!("{}/{id}", points_path(&space))).await;
        assert_eq!(r.status().as_u16(), 204);
    }
    let newcomer = vector(99_999, dims);
    let (status, _) = upsert(&app, &space, json!([{ "id": 5000, "vector": newcomer }])).await;
    assert_eq!(status, 200);
    let (_, found) = search(&app, &space, json!({ "vector": newcomer, "limit": 1 })).await;
    assert_eq!(ids(&found), [json!(5000)]);

    let live: Vec<&(u64, Vec<f32>)> = all.iter().filter(|(id, _)| *id >= 50).collect();
    let (mut hit, mut wanted) = (0, 0);
    for q in 0..20 {
        let query = vector(50_000 + q, dims);
        let mut exact: Vec<(f64, u64)> = live
            .iter()
            .map(|(id, v)| (cosine(&query, v), *id))
            .collect();
        exact.push((cosine(&query, &newcomer), 5000));
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: Vec<Value> = exact.iter().take(10).map(|(_, id)| json!(id)).collect();
        let (status, found) = search(&app, &space, json!({ "vector": query })).await;
        assert_eq!(status, 200);
        let got = ids(&found);
        assert!(
            got.iter().all(|id| id.as_u64().is_some_and(|n| n >= 50)),
            "a deleted point came back: {got:?}"
        );
        wanted += want.len();
        hit += got.iter().filter(|id| want.contains(id)).count();
    }
    let recall = hit as f64 / wanted as f64;
    assert!(recall >= 0.9, "recall@10 through the graph: {recall}");
}
