//! Two instances on one PostgreSQL and one Redis reuse each other's work: a search or an answer
//! computed by one is a cache hit on the other, a write through either invalidates both, and
//! without Redis each instance simply computes again.

use crate::helpers::{event, spawn_app_with, Backend, Options, TestApp};
use crate::redis::TestRedis;
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

async fn instance(redis: &TestRedis, database_url: Option<String>) -> TestApp {
    let url = redis.url();
    // The second instance joins the first one's database.
    let backend = if database_url.is_some() {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    // Each instance keeps uploads in a data directory of its own, so only the second one (which
    // takes every upload below) runs a worker: the first one's would claim jobs whose files it
    // cannot read and, five times in a row now and then, fail them for good.
    let workers = usize::from(database_url.is_some());
    spawn_app_with(
        backend,
        Options {
            workers,
            serve: Box::new(move |c| {
                c.limits.redis_url = Some(url.into());
                if let Some(db) = database_url {
                    c.store.database_url = Some(db.into());
                }
            }),
            ..Options::default()
        },
    )
    .await
}

async fn search(app: &TestApp, space: &str, query: &str) -> Value {
    let (status, body) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": query, "mode": "hybrid" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn wait_for_redis(app: &TestApp, healthy: bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let redis = app.health_check("redis").await;
        if (redis["status"] == "healthy") == healthy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "redis health never became {healthy}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_share_search_and_answer_caches_through_redis() {
    let mut redis = TestRedis::start();
    let a = instance(&redis, None).await;
    let db = a
        .store_config
        .database_url
        .as_ref()
        .expect("a PostgreSQL database")
        .expose_secret()
        .to_string();
    let b = instance(&redis, Some(db)).await;
    wait_for_redis(&a, true).await;
    wait_for_redis(&b, true).await;

    let space = a.create_space("Shared").await;
    let (_, doc) = b
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEvery employee receives twenty-five days of paid vacation.\n".to_vec(),
        )
        .await;
    b.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;

    // A search computed on A is a hit on B (its own L1 is empty: the hit came from Redis).
    assert_eq!(search(&a, &space, "paid vacation").await["cached"], false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while search(&b, &space, "paid vacation").await["cached"] != true {
        // The copy to Redis happens in the background, just after A answered.
        assert!(Instant::now() < deadline, "B never saw A's cached search");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // An answer computed on A is served from the cache on B.
    let question = json!({ "question": "How many vacation days?" });
    let first = a.ask(&space, question.clone()).await;
    assert_eq!(event(&first, "done").data["cached"], false);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = b.ask(&space, question.clone()).await;
        if event(&again, "done").data["cached"] == true {
            break;
        }
        assert!(Instant::now() < deadline, "B never reused A's answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A write through B changes the space's version: A's cached search no longer applies.
    let (_, doc) = b
        .upload(
            &space,
            "carry.md",
            b"# Carry-over\n\nUp to five unused vacation days carry over.\n".to_vec(),
        )
        .await;
    b.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    let fresh = search(&a, &space, "paid vacation").await;
    assert_eq!(fresh["cached"], false, "a stale result after a write");
    assert_eq!(fresh["results"].as_array().unwrap().len(), 2);

    // Redis gone: both instances still answer, computing for themselves.
    redis.stop();
    let on_b = search(&b, &space, "carry over").await;
    assert_eq!(on_b["cached"], false);
    assert!(!on_b["results"].as_array().unwrap().is_empty());
    wait_for_redis(&b, false).await;
    let (status, report) = b.get_json("/health").await;
    assert_eq!(status, 200);
    assert_eq!(report["status"], "degraded");
}
