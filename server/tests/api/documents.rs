use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend, Options};
use bytes::Bytes;
use reqwest::multipart::{Form, Part};

on_both_backends!(
    an_uploaded_markdown_file_is_stored_and_listed,
    uploading_identical_content_again_is_a_no_op,
    an_empty_upload_is_rejected_and_nothing_is_written,
    an_oversized_upload_is_rejected_with_413_and_nothing_is_written,
    binary_content_is_rejected_with_415,
    requests_without_a_file_are_rejected,
    uploading_to_an_unknown_space_is_404,
    a_space_id_that_is_no_id_is_404_on_every_kind_of_route,
    documents_are_listed_one_page_at_a_time,
    deleting_a_document_removes_its_row_and_file,
    an_upload_in_flight_finishes_during_graceful_shutdown,
    hostile_file_names_stay_inside_the_data_directory_and_are_escaped_in_pages,
);

async fn an_uploaded_markdown_file_is_stored_and_listed(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let content = b"# Title\n\nSome text about onboarding.\n".to_vec();
    let (status, doc) = app
        .upload(&space, "../onboarding.md", content.clone())
        .await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["filename"], "onboarding.md");
    assert_eq!(doc["mime"], "text/markdown");
    assert_eq!(doc["size_bytes"], content.len());
    assert!(
        ["pending", "processing", "ready"].contains(&doc["status"].as_str().unwrap()),
        "{doc}"
    );
    assert!(
        doc["job_id"].is_string(),
        "an accepted upload names its job: {doc}"
    );
    assert_eq!(doc["space_id"].as_str(), Some(space.as_str()));
    assert_eq!(doc["content_hash"].as_str().map(str::len), Some(64));

    let (status, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], doc["id"]);

    let files = app.stored_files();
    assert_eq!(files.len(), 1);
    assert_eq!(std::fs::read(&files[0]).unwrap(), content);
    let (_, s) = app.get_json(&format!("/api/v1/spaces/{space}")).await;
    assert_eq!(s["document_count"], 1);
}

async fn uploading_identical_content_again_is_a_no_op(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let (s1, first) = app.upload(&space, "a.txt", b"same bytes".to_vec()).await;
    let (s2, second) = app.upload(&space, "b.txt", b"same bytes".to_vec()).await;
    assert_eq!((s1, s2), (202, 200));
    assert_eq!(first["id"], second["id"]);
    let (_, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(page["total"], 1);
    assert_eq!(app.stored_files().len(), 1);

    // The same bytes in another space are another document.
    let other = app.create_space("Other").await;
    let (s3, third) = app.upload(&other, "a.txt", b"same bytes".to_vec()).await;
    assert_eq!(s3, 202);
    assert_ne!(third["id"], first["id"]);
}

async fn an_empty_upload_is_rejected_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let (status, body) = app.upload(&space, "empty.md", Vec::new()).await;
    assert_eq!(status, 400);
    assert_error(&body, "empty_file");
    let (_, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(page["total"], 0);
    assert!(app.stored_files().is_empty());
}

async fn an_oversized_upload_is_rejected_with_413_and_nothing_is_written(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            max_upload_bytes: 1000,
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Docs").await;
    let (status, _) = app.upload(&space, "fits.txt", vec![b'a'; 1000]).await;
    assert_eq!(status, 202);
    let (status, body) = app.upload(&space, "big.txt", vec![b'b'; 1001]).await;
    assert_eq!(status, 413);
    assert_error(&body, "file_too_large");
    let (_, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(page["total"], 1);
    assert_eq!(app.stored_files().len(), 1);
}

async fn binary_content_is_rejected_with_415(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let (status, body) = app
        .upload(&space, "notes.md", vec![0x50, 0x4b, 0x03, 0x04, 0x00, 0xff])
        .await;
    assert_eq!(status, 415);
    assert_error(&body, "unsupported_media_type");
    assert!(app.stored_files().is_empty());
}

async fn requests_without_a_file_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let url = app.url(&format!("/api/v1/spaces/{space}/documents"));

    let r = app
        .client
        .post(&url)
        .multipart(Form::new().text("note", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.unwrap(), "missing_file");

    let r = app
        .client
        .post(&url)
        .json(&serde_json::json!({ "file": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.unwrap(), "expected_multipart");
}

async fn uploading_to_an_unknown_space_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = app
        .upload(
            "0190f5a2-7c1e-7000-8000-000000000000",
            "a.md",
            b"# hi".to_vec(),
        )
        .await;
    assert_eq!(status, 404);
    assert_error(&body, "space_not_found");
    assert!(app.stored_files().is_empty());
}

async fn a_space_id_that_is_no_id_is_404_on_every_kind_of_route(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/api/v1/spaces/not-a-space",
        "/api/v1/spaces/not-a-space/documents",
        "/api/v1/spaces/%20/documents",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_error(&body, "space_not_found");
    }
    let (status, body) = app
        .post_json(
            "/api/v1/spaces/not-a-space/chat",
            &serde_json::json!({ "question": "hi" }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "space_not_found");
    let (status, body) = app.upload("not-a-space", "a.md", b"# hi".to_vec()).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "space_not_found");
    assert!(app.stored_files().is_empty());
}

async fn documents_are_listed_one_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    for i in 0..7 {
        let (status, _) = app
            .upload(
                &space,
                &format!("doc{i}.txt"),
                format!("text {i}").into_bytes(),
            )
            .await;
        assert_eq!(status, 202);
    }
    let (_, first) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents?limit=3"))
        .await;
    assert_eq!(first["total"], 7);
    assert_eq!(first["items"][0]["filename"], "doc6.txt");
    let (_, third) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/documents?limit=3&offset=6"
        ))
        .await;
    assert_eq!(third["items"].as_array().unwrap().len(), 1);
    assert_eq!(third["items"][0]["filename"], "doc0.txt");
}

async fn deleting_a_document_removes_its_row_and_file(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let other = app.create_space("Other").await;
    let (_, doc) = app.upload(&space, "a.md", b"# A".to_vec()).await;
    let id = doc["id"].as_str().unwrap();

    // A document cannot be deleted through another space.
    assert_eq!(
        app.delete(&format!("/api/v1/spaces/{other}/documents/{id}"))
            .await
            .status(),
        404
    );
    assert_eq!(app.stored_files().len(), 1);

    assert_eq!(
        app.delete(&format!("/api/v1/spaces/{space}/documents/{id}"))
            .await
            .status(),
        204
    );
    assert!(app.stored_files().is_empty());
    let r = app
        .delete(&format!("/api/v1/spaces/{space}/documents/{id}"))
        .await;
    assert_eq!(r.status(), 404);
    assert_error(&r.json().await.unwrap(), "document_not_found");
    let r = app
        .delete(&format!("/api/v1/spaces/{space}/documents/garbage"))
        .await;
    assert_eq!(r.status(), 404);
}

async fn an_upload_in_flight_finishes_during_graceful_shutdown(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let space = app.create_space("Docs").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let form = Form::new().part("file", Part::stream(body).file_name("slow.txt"));
    let request = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
        .multipart(form)
        .send();
    let pending = tokio::spawn(request);

    tx.send(Ok(Bytes::from_static(b"first half, ")))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let server = app.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    tx.send(Ok(Bytes::from_static(b"second half")))
        .await
        .unwrap();
    drop(tx);

    let response = pending.await.unwrap().expect("in-flight request completes");
    assert_eq!(response.status(), 202);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_eq!(doc["size_bytes"], 23);
    server.await.unwrap().expect("server stops cleanly");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A name that climbs out of the upload directory is cut to its last component, and markup in
/// a name or in the text is shown as text, never run, on the server-rendered pages.
async fn hostile_file_names_stay_inside_the_data_directory_and_are_escaped_in_pages(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Hostile").await;
    let (status, named) = app
        .post_json(
            "/api/v1/spaces",
            &serde_json::json!({ "name": "</title><script>alert(3)</script>" }),
        )
        .await;
    assert_eq!(status, 201, "{named}");
    let html = app
        .get(&format!("/spaces/{}", named["id"].as_str().unwrap()))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<script>alert(3)"),
        "a space name broke out of the page: {:?}",
        html.match_indices("alert(3)")
            .map(|(i, _)| html.get(i.saturating_sub(60)..i + 20).unwrap_or_default())
            .collect::<Vec<_>>()
    );
    let (status, climbed) = app
        .upload(
            &space,
            "../../../escape.md",
            b"# Escape\n\nJust text.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{climbed}");
    assert_eq!(climbed["filename"], "escape.md");
    let outside = app.data_dir.parent().unwrap();
    for dir in [outside, outside.parent().unwrap()] {
        assert!(
            !dir.join("escape.md").exists(),
            "a file escaped into {dir:?}"
        );
    }

    let (status, doc) = app
        .upload(
            &space,
            "<svg onload=alert(1)>.md",
            b"# <img src=x onerror=alert(2)>\n\nText with <b>tags</b>.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["filename"], "<svg onload=alert(1)>.md");
    let id = doc["id"].as_str().unwrap();
    app.wait_for_ingestion(&space, id).await;
    for page in [
        format!("/spaces/{space}"),
        format!("/spaces/{space}/documents/{id}"),
    ] {
        let html = app.get(&page).await.text().await.unwrap();
        assert!(
            !html.contains("<svg onload"),
            "{page} runs the name: {:?}",
            html.match_indices("<svg")
                .map(|(i, _)| html.get(i.saturating_sub(60)..i + 60).unwrap_or_default())
                .collect::<Vec<_>>()
        );
        assert!(!html.contains("<img src=x"), "{page} runs the text");
        // Escaped `<` is what keeps markup from starting.
        assert!(
            html.contains("&lt;svg onload=alert(1)"),
            "{page} lost the name: {:?}",
            html.match_indices("svg")
                .map(|(i, _)| html.get(i.saturating_sub(30)..i + 30).unwrap_or_default())
                .collect::<Vec<_>>()
        );
    }
}
