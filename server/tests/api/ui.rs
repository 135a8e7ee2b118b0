//! Server-rendered pages: readable without JavaScript.

use crate::helpers::{answer_text, event, spawn_app, Backend};
use serde_json::json;

on_both_backends!(
    the_home_page_is_server_rendered_with_navigation,
    a_space_page_lists_its_documents_without_javascript,
    unknown_pages_are_404,
    a_conversation_and_its_cited_passage_render_on_the_server,
);

async fn the_home_page_is_server_rendered_with_navigation(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.get("/").await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    for needle in [
        "Kenning",
        "href=\"/spaces\"",
        "href=\"/chat\"",
        "href=\"/search\"",
        "href=\"/status\"",
        "No spaces yet",
    ] {
        assert!(html.contains(needle), "home page lacks {needle}");
    }
}

async fn a_space_page_lists_its_documents_without_javascript(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Field notes").await;
    let (status, _) = app
        .upload(&space, "visit-report.md", b"# Visit\n".to_vec())
        .await;
    assert_eq!(status, 202);
    let html = app
        .get(&format!("/spaces/{space}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Field notes"));
    let table = html
        .find("id=\"documents\"")
        .expect("documents table rendered on the server");
    assert!(html[table..].contains("visit-report.md"));
    assert!(
        !html.contains("Loading documents") && !html.contains("<template"),
        "the page must be complete HTML, not placeholders filled in by script"
    );

    let spaces = app.get("/spaces").await.text().await.unwrap();
    assert!(spaces.contains("Field notes"));
}

async fn unknown_pages_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app.get("/no/such/page").await;
    assert_eq!(r.status(), 404);
}

async fn a_conversation_and_its_cited_passage_render_on_the_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Handbook").await;
    let (_, doc) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEvery employee receives twenty-five days of paid vacation.\n".to_vec(),
        )
        .await;
    app.wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    let events = app
        .ask(&space, json!({ "question": "How many vacation days?" }))
        .await;
    let conversation = event(&events, "done").data["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Rendered twice on a multi-threaded runtime: page state dropped on another thread than
    // the one that rendered it must not panic the server.
    for _ in 0..2 {
        let r = app
            .get(&format!("/chat?space={space}&c={conversation}"))
            .await;
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains("How many vacation days?"), "question missing");
        assert!(
            html.contains("twenty-five days of paid vacation"),
            "answer missing"
        );
        assert!(html.contains("class=\"cite\""), "citation link missing");
        assert!(html.contains("Handbook"), "space picker missing");
    }
    assert!(answer_text(&events).contains("[1]"));
    // The citation's target: the document page with the passage highlighted.
    let source = &event(&events, "sources").data["sources"][0];
    let html = app
        .get(&format!(
            "/spaces/{space}/documents/{}?chunk={}",
            source["document_id"].as_str().unwrap(),
            source["chunk_id"].as_str().unwrap()
        ))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(&format!(
            "id=\"chunk-{}\" class=\"passage card cited\"",
            source["chunk_id"].as_str().unwrap()
        )),
        "cited passage not highlighted"
    );
}

/// Another server starting in the same process (as in this suite, or an embedding host) must not
/// stall pages being rendered meanwhile: building the UI's route list suppresses resource loads
/// process-wide while it runs, and a render whose data began loading in that window never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_while_other_servers_start() {
    let app = spawn_app(Backend::Sqlite).await;
    let space = app.create_space("Handbook").await;
    let done = std::sync::atomic::AtomicBool::new(false);
    let renders = async {
        let mut count = 0;
        while !done.load(std::sync::atomic::Ordering::Relaxed) || count < 20 {
            let r = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                app.get(&format!("/chat?space={space}")),
            )
            .await
            .expect("a page render stalled while another server started");
            assert_eq!(r.status(), 200);
            assert!(r.text().await.unwrap().contains("Handbook"));
            count += 1;
        }
        count
    };
    let starts = async {
        tokio::task::spawn_blocking(|| {
            for _ in 0..3000 {
                drop(kenning::startup::ui_route_list());
            }
        })
        .await
        .expect("route lists");
        for _ in 0..3 {
            drop(spawn_app(Backend::Sqlite).await);
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (count, ()) = tokio::join!(renders, starts);
    assert!(count >= 20);
}
