//! Server-rendered pages: readable without JavaScript.

use crate::helpers::{spawn_app, Backend};

on_both_backends!(
    the_home_page_is_server_rendered_with_navigation,
    a_space_page_lists_its_documents_without_javascript,
    unknown_pages_are_404,
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
