//! Asking a space: the SSE answer stream (sources, tokens, done), citations that point at real
//! passages, conversations, the answer cache, bad input, and the generator chain degrading
//! through a misbehaving OpenAI-compatible provider.

use crate::helpers::{
    answer_text, event, expect_error, spawn_app, spawn_app_with, Backend, Options, TestApp,
};
use crate::stub::{Behaviour, Stub};
use kenning::config::GeneratorKind;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(
    an_answer_streams_sources_then_tokens_then_done_and_is_remembered,
    the_same_question_is_served_from_the_answer_cache_until_the_space_changes,
    bad_chat_requests_are_rejected_before_any_event,
    a_question_as_long_as_allowed_is_answered,
    a_question_before_indexing_finishes_says_so,
    a_provider_stream_is_relayed_token_by_token,
    a_failing_provider_degrades_answers_and_its_breaker_opens_then_recovers,
    garbage_and_hanging_providers_fall_through_to_the_next_generator,
    a_client_that_leaves_mid_answer_stops_the_provider_stream,
    failing_hanging_and_abandoned_answers_leave_no_tasks_behind,
    answers_stream_uncompressed_and_keep_non_ascii_text_intact,
    a_follow_up_is_answered_in_the_context_of_the_question_before_it,
    the_server_checks_every_cited_sentence_against_its_source,
    a_providers_markdown_reaches_the_page_rendered_with_its_html_escaped,
    questions_no_passage_is_close_to_are_declined_without_a_generator,
);

const LEAVE: &str = "# Leave policy\n\nEvery employee receives twenty-five days of paid vacation \
each year. Requests go to your manager two weeks in advance.\n\n## Carry over\n\nUp to five unused \
vacation days carry over into the next year.\n";
const LAPTOP: &str = "# Equipment\n\nNew hires get a laptop on their first day. Broken hardware \
is replaced by the IT desk within one business day.\n";

pub async fn seeded(app: &TestApp, name: &str) -> String {
    let space = app.create_space(name).await;
    for (file, text) in [("leave.md", LEAVE), ("laptop.md", LAPTOP)] {
        let (status, doc) = app.upload(&space, file, text.as_bytes().to_vec()).await;
        assert_eq!(status, 202, "{doc}");
        let done = app
            .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "ready", "{done}");
    }
    space
}

pub fn question(q: &str) -> Value {
    json!({ "question": q })
}

async fn an_answer_streams_sources_then_tokens_then_done_and_is_remembered(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Handbook").await;
    let events = app
        .ask(
            &space,
            question("How many vacation days does an employee get?"),
        )
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"sources"), "{names:?}");
    assert_eq!(names.last(), Some(&"done"), "{names:?}");
    assert!(
        names.iter().filter(|n| **n == "token").count() > 1,
        "{names:?}"
    );

    let sources = event(&events, "sources").data["sources"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!sources.is_empty());
    assert_eq!(sources[0]["n"], 1);
    assert_eq!(sources[0]["filename"], "leave.md");
    // The citation points at the exact passage: its offsets select its text in the document.
    let doc_id = sources[0]["document_id"].as_str().unwrap();
    let (_, chunks) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents/{doc_id}/chunks"))
        .await;
    let cited = chunks["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == sources[0]["chunk_id"])
        .expect("the cited chunk exists");
    assert_eq!(cited["char_start"], sources[0]["char_start"]);
    assert_eq!(cited["text"], sources[0]["text"]);

    let answer = answer_text(&events);
    assert!(answer.contains("twenty-five days"), "{answer}");
    assert!(answer.contains("[1]"), "{answer}");
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "extractive");
    assert_eq!(done["degraded"], false);
    assert_eq!(done["cached"], false);
    assert!(done["usage"]["completion_tokens"].as_u64().unwrap() > 1);
    assert!(
        done["timings"]["first_token_ms"].as_f64().unwrap()
            <= done["timings"]["total_ms"].as_f64().unwrap()
    );

    // The conversation holds the question and the answer with the sources it cites.
    let conversation = done["conversation_id"].as_str().unwrap();
    let (status, list) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], conversation);
    let (_, messages) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/conversations/{conversation}/messages"
        ))
        .await;
    let items = messages["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{messages}");
    assert_eq!(items[0]["role"], "user");
    assert_eq!(items[1]["role"], "assistant");
    assert_eq!(items[1]["content"], answer);
    assert_eq!(items[1]["citations"][0]["n"], 1);

    // A follow-up in the same conversation adds to it instead of starting another.
    let events = app
        .ask(
            &space,
            json!({ "question": "Who replaces broken hardware?", "conversation_id": conversation }),
        )
        .await;
    assert!(answer_text(&events).contains("IT desk"));
    let (_, list) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(list["total"], 1);

    let r = app
        .delete(&format!(
            "/api/v1/spaces/{space}/conversations/{conversation}"
        ))
        .await;
    assert_eq!(r.status(), 204);
    let (status, body) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/conversations/{conversation}/messages"
        ))
        .await;
    expect_error(status, &body, 404, "conversation_not_found");
}

async fn the_same_question_is_served_from_the_answer_cache_until_the_space_changes(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Cached").await;
    let q = question("Who replaces broken hardware?");
    let first = app.ask(&space, q.clone()).await;
    assert_eq!(event(&first, "done").data["cached"], false);
    let second = app.ask(&space, q.clone()).await;
    assert_eq!(event(&second, "done").data["cached"], true);
    assert_eq!(answer_text(&first), answer_text(&second));
    // Regenerate skips the cache.
    let again = app
        .ask(
            &space,
            json!({ "question": "Who replaces broken hardware?", "regenerate": true }),
        )
        .await;
    assert_eq!(event(&again, "done").data["cached"], false);

    // Any write to the space changes its version: the cached answer is not served.
    let (status, doc) = app
        .upload(
            &space,
            "more.md",
            b"# Hardware\n\nBroken hardware is also replaced by the vendor.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202);
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    let after = app.ask(&space, q).await;
    assert_eq!(event(&after, "done").data["cached"], false);
}

/// The question limit is the question's, not the search query's (shorter): a long question is
/// searched by its beginning and answered, never refused as a too-long query.
async fn a_question_as_long_as_allowed_is_answered(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Long").await;
    let mut question = String::from("Who replaces broken hardware?");
    while question.chars().count() < 4000 {
        question.push_str(" Please say who replaces broken hardware.");
    }
    let question: String = question.chars().take(4000).collect();
    let events = app.ask(&space, json!({ "question": question })).await;
    let sources = &event(&events, "sources").data["sources"];
    assert!(
        sources.as_array().is_some_and(|s| !s.is_empty()),
        "a long question finds sources: {sources}"
    );
    assert!(!answer_text(&events).trim().is_empty());
    // A follow-up to it is searched together with it, still within the query's limit.
    let conversation = event(&events, "done").data["conversation_id"].clone();
    let follow_up = app
        .ask(
            &space,
            json!({ "question": "And who pays for it?", "conversation_id": conversation }),
        )
        .await;
    assert_eq!(
        event(&follow_up, "done").data["conversation_id"],
        conversation
    );
}

async fn bad_chat_requests_are_rejected_before_any_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Strict").await;
    let path = format!("/api/v1/spaces/{space}/chat");
    let cases = [
        (json!({ "question": "   " }), 400, "empty_question"),
        (
            json!({ "question": "x".repeat(4001) }),
            400,
            "question_too_long",
        ),
        (
            json!({ "question": "hi", "max_sources": 0 }),
            400,
            "invalid_max_sources",
        ),
        (
            json!({ "question": "hi", "max_sources": 21 }),
            400,
            "invalid_max_sources",
        ),
        (json!({ "question": 5 }), 422, "invalid_fields"),
        (
            json!({ "question": "hi", "mode": "psychic" }),
            422,
            "invalid_fields",
        ),
        (
            json!({ "question": "hi", "conversation_id": "00000000-0000-7000-8000-000000000000" }),
            400,
            "conversation_not_found",
        ),
        (
            json!({ "question": "hi", "conversation_id": "nope" }),
            400,
            "conversation_not_found",
        ),
    ];
    for (body, status, code) in cases {
        let (s, b) = app.post_json(&path, &body).await;
        expect_error(s, &b, status, code);
    }
    let (s, b) = app
        .post_json(
            "/api/v1/spaces/00000000-0000-7000-8000-000000000000/chat",
            &question("hi"),
        )
        .await;
    expect_error(s, &b, 404, "space_not_found");
    let r = app
        .client
        .post(app.url(&path))
        .header("content-type", "application/json")
        .body("{\"question\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // GET with query parameters (for EventSource) validates the same way.
    let (s, b) = app.get_json(&format!("{path}?question=%20")).await;
    expect_error(s, &b, 400, "empty_question");
    let (s, b) = app.get_json(&path).await;
    expect_error(s, &b, 400, "invalid_query");
}

async fn a_question_before_indexing_finishes_says_so(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            workers: 0,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Early").await;
    let (status, _) = app
        .upload(&space, "leave.md", LEAVE.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202);
    let events = app
        .ask(&space, question("How many vacation days do we get?"))
        .await;
    let sources = &event(&events, "sources").data;
    assert_eq!(sources["pending_documents"], 1);
    assert!(sources["notice"]
        .as_str()
        .unwrap()
        .contains("still being indexed"));
    assert!(answer_text(&events).starts_with("I don't know"));
}

async fn app_with_stub(backend: Backend, behaviour: Behaviour) -> (TestApp, Stub) {
    let stub = Stub::start(behaviour).await;
    let url = stub.base_url.clone();
    let options = Options {
        generate: Box::new(move |g| {
            g.generators = vec![GeneratorKind::Openai, GeneratorKind::Extractive];
            g.generator_retries = 0;
            g.breaker_failures = 2;
            g.breaker_reset_secs = 1;
            g.first_token_timeout_ms = 1_000;
            g.openai_timeout_secs = 5;
            g.openai_base_url = Some(url);
        }),
        ..Options::default()
    };
    (spawn_app_with(backend, options).await, stub)
}

async fn a_provider_stream_is_relayed_token_by_token(backend: Backend) {
    let (app, stub) = app_with_stub(
        backend,
        Behaviour::Answer(vec!["Twenty-five", " days", " [1]."]),
    )
    .await;
    let space = seeded(&app, "Relayed").await;
    let events = app
        .ask(
            &space,
            question("How many vacation days does an employee get?"),
        )
        .await;
    let tokens: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "token")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, vec!["Twenty-five", " days", " [1]."]);
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "openai");
    assert_eq!(done["degraded"], false);
    // The provider saw the grounded prompt: numbered sources, then the question.
    let sent = stub.last_body();
    assert_eq!(sent["stream"], true);
    // What newer models accept: max_completion_tokens, and no temperature unless configured.
    assert!(sent["max_completion_tokens"].as_u64().is_some(), "{sent}");
    assert!(sent.get("max_tokens").is_none(), "{sent}");
    assert!(sent.get("temperature").is_none(), "{sent}");
    let user = sent["messages"][1]["content"].as_str().unwrap();
    assert!(user.starts_with("Sources:\n[1] (leave.md"), "{user}");
    assert!(user.contains("twenty-five days"), "{user}");
    assert!(sent["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("I don't know"));
}

async fn a_failing_provider_degrades_answers_and_its_breaker_opens_then_recovers(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Status(500)).await;
    let space = seeded(&app, "Degraded").await;
    for i in 0..2 {
        let events = app
            .ask(
                &space,
                json!({ "question": "Who replaces broken hardware?", "regenerate": true }),
            )
            .await;
        let done = &event(&events, "done").data;
        assert_eq!(done["generator"], "extractive", "answer {i}");
        assert_eq!(done["degraded"], true);
        assert!(
            done["notice"].as_str().unwrap().contains("openai failed"),
            "{done}"
        );
        assert!(answer_text(&events).contains("IT desk"));
    }
    assert_eq!(stub.calls(), 2);
    let check = app.health_check("generator:openai").await;
    assert_eq!(check["status"], "degraded", "{check}");
    let (_, health) = app.get_json("/health").await;
    assert_eq!(health["status"], "degraded");

    // Open: the provider is skipped without being called.
    let events = app
        .ask(
            &space,
            json!({ "question": "Who replaces broken hardware?", "regenerate": true }),
        )
        .await;
    assert!(event(&events, "done").data["notice"]
        .as_str()
        .unwrap()
        .contains("paused"));
    assert_eq!(stub.calls(), 2);

    // After the reset time one probe goes through; the provider is healthy again, so it closes.
    stub.set(Behaviour::Answer(vec!["Back", " again."]));
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let events = app
        .ask(
            &space,
            json!({ "question": "Who replaces broken hardware?", "regenerate": true }),
        )
        .await;
    assert_eq!(event(&events, "done").data["generator"], "openai");
    assert_eq!(
        app.health_check("generator:openai").await["status"],
        "healthy"
    );
}

async fn garbage_and_hanging_providers_fall_through_to_the_next_generator(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Garbage).await;
    let space = seeded(&app, "Garbage").await;
    let events = app
        .ask(&space, question("Who replaces broken hardware?"))
        .await;
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "extractive");
    assert!(
        done["notice"].as_str().unwrap().contains("malformed"),
        "{done}"
    );

    stub.set(Behaviour::Hang);
    let started = Instant::now();
    let events = app
        .ask(
            &space,
            json!({ "question": "When do new hires get a laptop?", "regenerate": true }),
        )
        .await;
    assert_eq!(event(&events, "done").data["generator"], "extractive");
    // The first-token timeout (1 s here) bounds the wait, not the provider.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

async fn a_client_that_leaves_mid_answer_stops_the_provider_stream(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Endless).await;
    let space = seeded(&app, "Leaving").await;
    let mut r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/chat")))
        .json(&question("Who replaces broken hardware?"))
        .send()
        .await
        .unwrap();
    // Read until tokens are flowing from the provider.
    let mut seen = String::new();
    while !seen.contains("event: token") {
        let piece = r.chunk().await.unwrap().expect("stream open");
        seen.push_str(&String::from_utf8_lossy(&piece));
    }
    assert_eq!(stub.open_streams(), 1);
    drop(r);
    let deadline = Instant::now() + Duration::from_secs(10);
    while stub.open_streams() > 0 {
        assert!(
            Instant::now() < deadline,
            "the provider stream was not closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the reader already saw is kept in the conversation, marked as stopped.
    let conversation = seen
        .split("\"conversation_id\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the sources event names the conversation")
        .to_string();
    let path = format!("/api/v1/spaces/{space}/conversations/{conversation}/messages");
    loop {
        let (_, messages) = app.get_json(&path).await;
        if let Some(answer) = messages["items"].as_array().unwrap().get(1) {
            assert_eq!(answer["generator"], "openai (stopped)");
            let text = answer["content"].as_str().unwrap();
            assert!(text.starts_with(" more") && text.ends_with(" …"), "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "the stopped answer was not kept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answers_stream_uncompressed_and_keep_non_ascii_text_intact(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Urlaub").await;
    let text = "# Urlaub\n\nMitarbeitende erhalten fünfundzwanzig Urlaubstage pro Jahr — \
                übertragbar sind höchstens fünf Tage. 休暇は年間25日です。\n";
    let (status, doc) = app
        .upload(&space, "urlaub.md", text.as_bytes().to_vec())
        .await;
    assert_eq!(status, 202);
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    // A client that accepts compression still gets a plain event stream: compressing SSE would
    // hold tokens back in the compressor's buffer.
    let r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/chat")))
        .header("accept-encoding", "gzip, br")
        .json(&question("Wie viele Urlaubstage erhalten Mitarbeitende?"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-encoding").is_none(),
        "{:?}",
        r.headers()
    );
    let events = crate::helpers::parse_sse(&r.text().await.unwrap());
    let answer = answer_text(&events);
    assert!(answer.contains("fünfundzwanzig Urlaubstage"), "{answer}");
    assert!(answer.contains("höchstens fünf Tage"), "{answer}");
}

async fn a_follow_up_is_answered_in_the_context_of_the_question_before_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = seeded(&app, "Follow-ups").await;
    let first = app
        .ask(&space, question("Who replaces broken hardware?"))
        .await;
    let conversation = event(&first, "done").data["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let follow_up = app
        .ask(
            &space,
            json!({ "question": "And how fast?", "conversation_id": conversation }),
        )
        .await;
    let sources = &event(&follow_up, "sources").data["sources"];
    assert_eq!(sources[0]["filename"], "laptop.md", "{sources}");
    let answer = answer_text(&follow_up);
    assert!(answer.contains("one business day"), "{answer}");

    // Conversations can be renamed; titles are checked.
    let path = format!("/api/v1/spaces/{space}/conversations/{conversation}");
    let r = app
        .client
        .patch(app.url(&path))
        .json(&json!({ "title": "Hardware questions" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, list) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(list["items"][0]["title"], "Hardware questions");
    let (s, b) = app.patch_json(&path, &json!({ "title": "  " })).await;
    expect_error(s, &b, 400, "invalid_title");
    let (s, b) = app
        .patch_json(
            &format!("/api/v1/spaces/{space}/conversations/00000000-0000-7000-8000-000000000000"),
            &json!({ "title": "x" }),
        )
        .await;
    expect_error(s, &b, 404, "conversation_not_found");
}

/// Tasks alive on this test's runtime, which runs the server, the provider stand-in and the client.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

async fn failing_hanging_and_abandoned_answers_leave_no_tasks_behind(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Garbage).await;
    let space = seeded(&app, "Leaks").await;
    let ask = |n: usize| json!({ "question": format!("Who replaces broken hardware? ({n})") });
    // One of each first, so pooled connections and lazily started tasks exist in the baseline.
    app.ask(&space, ask(0)).await;
    stub.set(Behaviour::Hang);
    app.ask(&space, ask(1)).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let baseline = alive_tasks();

    const ROUNDS: usize = 6;
    for round in 0..ROUNDS {
        for behaviour in [Behaviour::Garbage, Behaviour::Status(500), Behaviour::Hang] {
            stub.set(behaviour);
            let events = app.ask(&space, ask(10 + round)).await;
            assert_eq!(event(&events, "done").data["generator"], "extractive");
        }
        // A reader that leaves while the provider is still streaming.
        stub.set(Behaviour::Endless);
        let mut r = app
            .client
            .post(app.url(&format!("/api/v1/spaces/{space}/chat")))
            .json(&ask(100 + round))
            .send()
            .await
            .unwrap();
        let _ = r.chunk().await;
        drop(r);
        // Past the breaker's reset, so the provider is called again in the next round.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }

    // Every round started several tasks (requests, provider calls, streams); a leak of even
    // one per round would leave the count ROUNDS above the baseline.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = alive_tasks();
        if alive <= baseline + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{alive} tasks alive after {ROUNDS} rounds, {baseline} before"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn the_server_checks_every_cited_sentence_against_its_source(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Answer(vec!["unused"])).await;
    let space = seeded(&app, "Checked").await;
    let ask = "How many vacation days does an employee get?";
    // The sources the answer will get, in order: the same search the chat runs.
    let (_, found) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": ask, "limit": 5 }),
        )
        .await;
    let n_of = |needle: &str| {
        found["results"]
            .as_array()
            .unwrap()
            .iter()
            .position(|h| h["chunk"]["text"].as_str().unwrap().contains(needle))
            .map(|i| i + 1)
            .unwrap_or_else(|| panic!("no source holds {needle:?}: {found}"))
    };
    let (leave, laptop) = (n_of("twenty-five days"), n_of("laptop"));
    // A provider citing the laptop passage for the leave policy, and making one claim up.
    let answer: &'static str = Box::leak(
        format!(
            "Every employee receives twenty-five days of paid vacation each year [{laptop}]. \
             Requests are approved by the chief executive in person [{leave}]."
        )
        .into_boxed_str(),
    );
    stub.set(Behaviour::Answer(vec![answer]));

    let events = app.ask(&space, question(ask)).await;
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "openai", "{done}");
    let sentences = done["sentences"].as_array().unwrap();
    assert_eq!(sentences.len(), 2, "{done}");
    // The wrong citation is replaced by the passage that says it.
    assert_eq!(sentences[0]["claimed"], json!([laptop]), "{done}");
    assert_eq!(sentences[0]["sources"], json!([leave]), "{done}");
    assert_eq!(sentences[0]["supported"], true);
    // The made-up claim keeps no citation and is marked.
    assert_eq!(sentences[1]["claimed"], json!([leave]));
    assert_eq!(sentences[1]["sources"], json!([]), "{done}");
    assert_eq!(sentences[1]["supported"], false);
    assert_eq!(done["unsupported"], 1);
    assert!(
        done["notice"]
            .as_str()
            .unwrap_or("")
            .contains("supported by none of the sources"),
        "{done}"
    );
    // The page gets the same verdicts as HTML: the verified citation links its passage, the
    // wrong one is gone, the made-up claim is marked.
    let html = done["html"].as_str().unwrap_or_default();
    assert!(
        html.contains(&format!(">[{leave}]</a>"))
            && html.contains(&format!("href=\"/spaces/{space}/documents/")),
        "{html}"
    );
    assert!(!html.contains(&format!(">[{laptop}]</a>")), "{html}");
    assert!(
        html.contains(
            "<span class=\"unsupported\" title=\"No source supports this sentence\">Requests are approved"
        ),
        "{html}"
    );

    // The stored turn keeps the verified citations only.
    let checked = format!(
        "Every employee receives twenty-five days of paid vacation each year. [{leave}] \
         Requests are approved by the chief executive in person."
    );
    let conversation = done["conversation_id"].as_str().unwrap();
    let (_, messages) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/conversations/{conversation}/messages"
        ))
        .await;
    let turn = &messages["items"][1];
    assert_eq!(turn["content"], checked.as_str(), "{messages}");
    let cited: Vec<u64> = turn["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n"].as_u64().unwrap())
        .collect();
    assert_eq!(cited, vec![leave as u64], "{turn}");

    // A whole answer through the OpenAI API carries the checked text too.
    let (status, body) = app
        .post_json(
            "/v1/chat/completions",
            &json!({ "model": "Checked", "messages": [{ "role": "user", "content": ask }] }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], checked.as_str());
}

async fn a_providers_markdown_reaches_the_page_rendered_with_its_html_escaped(backend: Backend) {
    let (app, _stub) = app_with_stub(
        backend,
        Behaviour::Answer(vec![
            "## Leave\n\n- Every employee receives **twenty-five days** of paid vacation each \
             year [1].\n- <img src=x onerror=alert(1)> <script>alert(2)</script>\n\n\
             ```text\nleave --days 25 [2]\n```\n\n[more](javascript:alert(3))\n",
        ]),
    )
    .await;
    let space = seeded(&app, "Markdown").await;
    let events = app
        .ask(
            &space,
            question("How many vacation days does an employee get?"),
        )
        .await;
    let done = &event(&events, "done").data;
    let html = done["html"].as_str().unwrap_or_default();
    for rendered in [
        "<h2>Leave</h2>",
        "<li>Every employee receives <strong>twenty-five days</strong> of paid vacation each year.",
        "<pre><code class=\"language-text\">leave --days 25 [2]\n</code></pre>",
        "&lt;img src=x onerror=alert(1)&gt;",
        "&lt;script&gt;alert(2)&lt;/script&gt;",
    ] {
        assert!(html.contains(rendered), "{rendered:?} not in {html}");
    }
    for markup in ["<img", "<script", "javascript:"] {
        assert!(!html.contains(markup), "{markup:?} in {html}");
    }
    assert!(
        html.contains("more"),
        "a refused link keeps its text: {html}"
    );
    // The REST history carries the text only; the chat page's server function renders it.
    let conversation = done["conversation_id"].as_str().unwrap();
    let (_, messages) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/conversations/{conversation}/messages"
        ))
        .await;
    assert!(messages["items"][1].get("html").is_none(), "{messages}");
    assert!(messages["items"][1]["content"]
        .as_str()
        .unwrap_or_default()
        .contains("<script>"));
}

/// Asks `q` and checks the answer was declined before any generator ran, for a reason that
/// says `why`.
async fn assert_declined(app: &TestApp, space: &str, q: &str, why: &str) {
    let events = app.ask(space, question(q)).await;
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "none", "{done}");
    assert!(
        done["declined"].as_str().unwrap_or("").contains(why),
        "{done}"
    );
    assert!(answer_text(&events).starts_with("I don't know"));
}

async fn questions_no_passage_is_close_to_are_declined_without_a_generator(backend: Backend) {
    let (app, stub) = app_with_stub(backend, Behaviour::Answer(vec!["Canberra [1]."])).await;
    let space = seeded(&app, "Far").await;
    assert_declined(
        &app,
        &space,
        "What is the capital of Australia?",
        "close enough",
    )
    .await;
    // An empty space has nothing to answer from either.
    let empty = app.create_space("Empty").await;
    assert_declined(
        &app,
        &empty,
        "How many vacation days do we get?",
        "no passage",
    )
    .await;
    assert_eq!(stub.calls(), 0, "no generator was asked");
    // A question the space can answer still reaches the provider.
    let events = app
        .ask(
            &space,
            question("How many vacation days does an employee get?"),
        )
        .await;
    let done = &event(&events, "done").data;
    assert_eq!(done["generator"], "openai", "{done}");
    assert!(done["declined"].is_null(), "{done}");
    assert_eq!(stub.calls(), 1);
}
