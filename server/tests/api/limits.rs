//! Rate limits per client and route class (429 with the wait), and load shedding of answers
//! (503 at once when the concurrency cap is reached, capacity back when a stream ends).

use crate::chat::{question, seeded};
use crate::helpers::{spawn_app_with, Backend, Options, TestApp};
use crate::redis::TestRedis;
use crate::stub::{Behaviour, Stub};
use kenning::config::GeneratorKind;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(
    a_client_over_its_search_rate_gets_429_with_the_wait,
    answers_beyond_the_concurrency_cap_are_shed_with_503,
);

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

async fn search(app: &TestApp, space: &str) -> reqwest::Response {
    app.client
        .post(app.url(&format!("/api/v1/spaces/{space}/search")))
        .json(&json!({ "query": "vacation" }))
        .send()
        .await
        .expect("request")
}

async fn a_client_over_its_search_rate_gets_429_with_the_wait(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            serve: Box::new(|c| {
                c.limits.rate_limit_search = "3/min".parse().unwrap();
                c.limits.rate_limit_chat = "2/min".parse().unwrap();
            }),
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Limited").await;
    for left in ["2", "1", "0"] {
        let r = search(&app, &space).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "ratelimit-limit"), "3");
        assert_eq!(header(&r, "ratelimit-remaining"), left);
    }
    let r = search(&app, &space).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = header(&r, "retry-after").parse().expect("Retry-After");
    // One search comes back every 20 s at 3/min.
    assert!((1..=20).contains(&wait), "Retry-After {wait}");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("search"));

    // Other classes have their own allowance (off here), and pages are never limited.
    let (status, _) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(app.get("/search").await.status(), 200);

    // The OpenAI-compatible API counts against the chat limit, whatever the handler answers.
    let completions = || async {
        app.client
            .post(app.url("/v1/chat/completions"))
            .json(&json!({ "model": "no-such-space", "messages": [] }))
            .send()
            .await
            .expect("request")
            .status()
    };
    assert_ne!(completions().await, 429);
    assert_ne!(completions().await, 429);
    assert_eq!(completions().await, 429);

    let metrics = app.get("/metrics").await.text().await.unwrap();
    for class in ["search", "chat"] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(&format!("kenning_rate_limited_total{{class=\"{class}\"}}"))),
            "kenning_rate_limited_total for {class} missing"
        );
    }
}

async fn answers_beyond_the_concurrency_cap_are_shed_with_503(backend: Backend) {
    let stub = Stub::start(Behaviour::Endless).await;
    let url = stub.base_url.clone();
    let app = spawn_app_with(
        backend,
        Options {
            generate: Box::new(move |g| {
                g.generators = vec![GeneratorKind::Openai, GeneratorKind::Extractive];
                g.generator_retries = 0;
                g.openai_base_url = Some(url);
            }),
            serve: Box::new(|c| c.limits.max_concurrent_chats = 1),
            ..Options::default()
        },
    )
    .await;
    let space = seeded(&app, "Busy").await;
    let ask = || async {
        app.client
            .post(app.url(&format!("/api/v1/spaces/{space}/chat")))
            .json(&question("Who replaces broken hardware?"))
            .send()
            .await
            .expect("request")
    };
    // One answer streams endlessly and holds the only slot.
    let mut first = ask().await;
    assert_eq!(first.status(), 200);
    let mut seen = String::new();
    while !seen.contains("event: token") {
        let piece = first.chunk().await.unwrap().expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&piece));
    }
    let started = Instant::now();
    let refused = ask().await;
    assert_eq!(refused.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shed at once, not queued"
    );
    assert_eq!(header(&refused, "retry-after"), "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");

    // Leaving frees the slot.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ask().await;
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("kenning_requests_shed_total{class=\"chat\"}"));
}

async fn app_sharing_limits(redis: &TestRedis) -> TestApp {
    let url = redis.url();
    spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(move |c| {
                c.limits.rate_limit_search = "3/min".parse().unwrap();
                c.limits.redis_url = Some(url.into());
            }),
            ..Options::default()
        },
    )
    .await
}

/// Two instances on one Redis share a client's allowance; when Redis goes away each instance
/// limits on its own and says so in /health, and sharing resumes when Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_rate_limit_through_redis() {
    let mut redis = TestRedis::start();
    let a = app_sharing_limits(&redis).await;
    let b = app_sharing_limits(&redis).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.health_check("redis").await["status"] != "healthy"
        || b.health_check("redis").await["status"] != "healthy"
    {
        assert!(
            Instant::now() < deadline,
            "the instances never reached Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let space_a = a.create_space("A").await;
    let space_b = b.create_space("B").await;

    // One allowance of 3 across both instances.
    let r = search(&a, &space_a).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "ratelimit-remaining")),
        (200, "2".into())
    );
    let r = search(&b, &space_b).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "ratelimit-remaining")),
        (200, "1".into())
    );
    let r = search(&a, &space_a).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "ratelimit-remaining")),
        (200, "0".into())
    );
    let r = search(&b, &space_b).await;
    assert_eq!(r.status(), 429, "the other instance saw the same allowance");
    assert!(header(&r, "retry-after").parse::<u64>().unwrap() >= 1);
    assert_eq!(search(&a, &space_a).await.status(), 429);

    // Redis dies: requests are still limited, by each instance alone, and health says degraded.
    redis.stop();
    let r = search(&a, &space_a).await;
    assert_eq!(r.status(), 200, "the local limiter has its own allowance");
    let (_, report) = a.get_json("/health").await;
    assert_eq!(report["status"], "degraded", "{report}");
    let check = a.health_check("redis").await;
    assert_eq!(check["status"], "degraded");
    assert!(check["message"].as_str().unwrap().contains("per instance"));
    for _ in 0..2 {
        assert_eq!(search(&a, &space_a).await.status(), 200);
    }
    assert_eq!(search(&a, &space_a).await.status(), 429, "still limited");

    // Redis is back (empty): sharing resumes.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.health_check("redis").await["status"] != "healthy" {
        assert!(Instant::now() < deadline, "sharing never resumed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = search(&b, &space_b).await;
    assert_eq!(
        (r.status().as_u16(), header(&r, "ratelimit-remaining")),
        (200, "2".into())
    );
}
