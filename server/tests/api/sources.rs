//! Documents that stay current: a changed upload replaces its earlier version once indexed, and
//! folder and web sources sync edits, deletions and pages, within the limits an admin set.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, Backend, Options, TestApp};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

on_both_backends!(
    a_changed_upload_replaces_its_earlier_version_once_it_is_indexed,
    files_under_different_keys_stay_side_by_side,
    a_folder_source_follows_edits_and_deletions,
);

async fn documents(app: &TestApp, space: &str) -> Vec<Value> {
    let (status, page) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents?limit=200"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn search_texts(app: &TestApp, space: &str, query: &str) -> Vec<String> {
    let (status, body) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/search"),
            &json!({ "query": query, "mode": "keyword", "limit": 20 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["results"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["chunk"]["text"].as_str().unwrap_or_default().to_string())
        .collect()
}

async fn a_changed_upload_replaces_its_earlier_version_once_it_is_indexed(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Policies").await;
    let (status, first) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEmployees receive 20 vacation days per year.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["version"], 1);
    assert_eq!(first["source_key"], "leave.md");
    app.wait_for_ingestion(&space, first["id"].as_str().unwrap())
        .await;

    let (status, second) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEmployees receive 25 vacation days per year.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 202, "{second}");
    assert_eq!(second["version"], 2);
    let done = app
        .wait_for_ingestion(&space, second["id"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "ready", "{done}");

    let docs = documents(&app, &space).await;
    assert_eq!(docs.len(), 1, "the old version is gone: {docs:?}");
    assert_eq!(docs[0]["id"], second["id"]);
    let texts = search_texts(&app, &space, "vacation days").await;
    assert!(
        texts.iter().any(|t| t.contains("25 vacation days")),
        "{texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.contains("20 vacation")),
        "stale text is still found: {texts:?}"
    );
    let events = app
        .ask(
            &space,
            json!({ "question": "How many vacation days do employees receive?" }),
        )
        .await;
    let answer = crate::helpers::answer_text(&events);
    assert!(answer.contains("25"), "{answer}");
    assert!(!answer.contains("20 vacation"), "{answer}");
    assert_eq!(
        app.stored_files().len(),
        1,
        "the old file was removed: {:?}",
        app.stored_files()
    );

    // The same bytes again change nothing.
    let (status, again) = app
        .upload(
            &space,
            "leave.md",
            b"# Leave\n\nEmployees receive 25 vacation days per year.\n".to_vec(),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], second["id"]);
}

async fn files_under_different_keys_stay_side_by_side(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Two folders").await;
    let mut ids = Vec::new();
    for (key, text) in [
        ("a/readme.md", "Alpha team notes."),
        ("b/readme.md", "Beta team notes."),
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(text.as_bytes().to_vec()).file_name("readme.md"),
        );
        let r = app
            .client
            .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
            .query(&[("key", key)])
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let doc: Value = r.json().await.unwrap();
        assert_eq!(doc["source_key"], key);
        ids.push(doc["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_for_ingestion(&space, id).await;
    }
    assert_eq!(documents(&app, &space).await.len(), 2);

    // A key that is blank or too long is refused with a reason.
    for key in ["   ", &"k".repeat(3000)] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"x y z".to_vec()).file_name("x.txt"),
        );
        let r = app
            .client
            .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
            .query(&[("key", key)])
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let body: Value = r.json().await.unwrap();
        assert_error(&body, "invalid_key");
    }
}

/// A test server whose folder sources may read `root`.
async fn app_with_root(backend: Backend, root: &Path) -> TestApp {
    let root = root.to_path_buf();
    spawn_app_with(
        backend,
        Options {
            serve: Box::new(move |c| c.source_roots = vec![root]),
            ..Options::default()
        },
    )
    .await
}

/// Starts a sync and waits until it and the ingestion it queued are over.
async fn sync_and_wait(app: &TestApp, space: &str, source: &str) -> Value {
    let (status, started) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/sources/{source}/sync"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let finished = loop {
        let (_, s) = app
            .get_json(&format!("/api/v1/spaces/{space}/sources/{source}"))
            .await;
        if s["status"] == "idle" {
            break s;
        }
        assert!(Instant::now() < deadline, "the sync did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    loop {
        let docs = documents(app, space).await;
        if docs
            .iter()
            .all(|d| d["status"] == "ready" || d["status"] == "failed")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ingestion did not finish: {docs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    finished
}

async fn a_folder_source_follows_edits_and_deletions(backend: Backend) {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("handbook");
    std::fs::create_dir_all(folder.join("hr")).unwrap();
    std::fs::write(
        folder.join("hr/leave.md"),
        "# Leave\n\nStaff get 20 vacation days a year.\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("travel.md"),
        "# Travel\n\nTrains are booked in second class.\n",
    )
    .unwrap();
    std::fs::write(
        folder.join("security.md"),
        "# Security\n\nBadges are worn at all times.\n",
    )
    .unwrap();
    let app = app_with_root(backend, root.path()).await;
    let space = app.create_space("Handbook").await;

    let (status, source) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/sources"),
            &json!({ "kind": "folder", "location": folder.to_str().unwrap() }),
        )
        .await;
    assert_eq!(status, 201, "{source}");
    let source_id = source["id"].as_str().unwrap().to_string();
    let first = sync_and_wait(&app, &space, &source_id).await;
    assert_eq!(first["last_result"]["added"], 3, "{first}");
    assert!(first["last_error"].is_null(), "{first}");
    let docs = documents(&app, &space).await;
    assert_eq!(docs.len(), 3);
    assert!(
        docs.iter().all(|d| d["source_id"] == source["id"]),
        "{docs:?}"
    );
    assert!(
        docs.iter().any(|d| d["source_key"] == "hr/leave.md"),
        "{docs:?}"
    );

    // Edit one file (its size changes with it), delete another, leave the third alone.
    std::fs::write(
        folder.join("hr/leave.md"),
        "# Leave\n\nStaff get 27 vacation days a year, from now on.\n",
    )
    .unwrap();
    std::fs::remove_file(folder.join("travel.md")).unwrap();
    let second = sync_and_wait(&app, &space, &source_id).await;
    assert_eq!(
        second["last_result"],
        json!({ "added": 0, "updated": 1, "unchanged": 1, "deleted": 1, "failed": 0, "errors": [] }),
        "{second}"
    );
    let docs = documents(&app, &space).await;
    assert_eq!(docs.len(), 2, "{docs:?}");
    let leave = docs
        .iter()
        .find(|d| d["source_key"] == "hr/leave.md")
        .unwrap();
    assert_eq!(leave["version"], 2);
    let texts = search_texts(&app, &space, "vacation days").await;
    assert!(texts.iter().any(|t| t.contains("27 vacation")), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("20 vacation")),
        "{texts:?}"
    );
    assert!(search_texts(&app, &space, "trains second class")
        .await
        .is_empty());
    let answer = crate::helpers::answer_text(
        &app.ask(
            &space,
            json!({ "question": "How many vacation days do staff get?" }),
        )
        .await,
    );
    assert!(answer.contains("27"), "{answer}");
    assert!(!answer.contains("20 vacation"), "{answer}");

    // Deleting the source removes what it brought.
    let r = app
        .delete(&format!("/api/v1/spaces/{space}/sources/{source_id}"))
        .await;
    assert_eq!(r.status(), 204);
    assert!(documents(&app, &space).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn folder_sources_stay_inside_the_roots_an_admin_set() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("docs")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let app = app_with_root(Backend::Sqlite, root.path()).await;
    let space = app.create_space("Guarded").await;
    let path = format!("/api/v1/spaces/{space}/sources");
    let escape = format!("{}/docs/../..", root.path().display());
    for (body, code) in [
        (
            json!({ "kind": "folder", "location": elsewhere.path().to_str().unwrap() }),
            "invalid_folder",
        ),
        (
            json!({ "kind": "folder", "location": escape }),
            "invalid_folder",
        ),
        (
            json!({ "kind": "folder", "location": "/etc" }),
            "invalid_folder",
        ),
        (
            json!({ "kind": "folder", "location": "docs" }),
            "invalid_folder",
        ),
        (
            json!({ "kind": "ftp", "location": "ftp://example.com/" }),
            "invalid_kind",
        ),
        (
            json!({ "kind": "url", "location": "file:///etc/passwd" }),
            "invalid_url",
        ),
        (
            json!({ "kind": "url", "location": "https://example.com/", "interval_minutes": 0 }),
            "invalid_interval",
        ),
        (
            json!({ "kind": "site", "location": "https://example.com/", "max_pages": 100000 }),
            "invalid_max_pages",
        ),
    ] {
        let (status, err) = app.post_json(&path, &body).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_error(&err, code);
    }
    let (status, err) = app.post_json(&path, &json!({ "kind": "folder", "location": root.path().join("docs").to_str().unwrap(), "extra": 1 })).await;
    assert_eq!(status, 422, "{err}");
    assert_error(&err, "invalid_fields");
    let ok = json!({ "kind": "folder", "location": root.path().join("docs").to_str().unwrap() });
    let (status, created) = app.post_json(&path, &ok).await;
    assert_eq!(status, 201, "{created}");
    let (status, again) = app.post_json(&path, &ok).await;
    assert_eq!(status, 409, "{again}");
    let (status, _) = app
        .get_json(&format!("/api/v1/spaces/{space}/sources/not-an-id"))
        .await;
    assert_eq!(status, 404);
    let (status, list) = app.get_json(&path).await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1);

    // Without roots, folder sources are off.
    let plain = spawn_app(Backend::Sqlite).await;
    let space = plain.create_space("No roots").await;
    let (status, err) = plain
        .post_json(
            &format!("/api/v1/spaces/{space}/sources"),
            &json!({ "kind": "folder", "location": root.path().to_str().unwrap() }),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&err, "invalid_folder");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--source-roots"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_syncs_of_one_source_never_run_at_once() {
    let root = tempfile::tempdir().unwrap();
    for i in 0..300 {
        std::fs::write(
            root.path().join(format!("note-{i}.md")),
            format!("Note number {i}.\n"),
        )
        .unwrap();
    }
    let app = app_with_root(Backend::Sqlite, root.path()).await;
    let space = app.create_space("Busy").await;
    let (_, source) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/sources"),
            &json!({ "kind": "folder", "location": root.path().to_str().unwrap() }),
        )
        .await;
    let sync = format!(
        "/api/v1/spaces/{space}/sources/{}/sync",
        source["id"].as_str().unwrap()
    );
    let empty = json!({});
    let (a, b) = tokio::join!(app.post_json(&sync, &empty), app.post_json(&sync, &empty));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [202, 409], "{a:?} {b:?}");
    let refused = if a.0 == 409 { a.1 } else { b.1 };
    assert_error(&refused, "conflict");
}

/// A small site on this machine: pages that link to each other, a private corner robots.txt
/// forbids, and a redirect to the cloud metadata address.
async fn local_site() -> String {
    use axum::response::{Html, Redirect};
    use axum::routing::get;
    let page = |title: &'static str, links: &'static str| {
        move || async move {
            Html(format!(
                "<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>This page is about {title}.</p>{links}</main></body></html>"
            ))
        }
    };
    let app = axum::Router::new()
        .route("/", get(page("home", r#"<a href="/a">A</a> <a href='/b'>B</a> <a href="/private/secret">S</a> <a href="/c">C</a> <a href="/d">D</a> <a href="http://example.com/x">X</a>"#)))
        .route("/a", get(page("apples", r#"<a href="/">home</a>"#)))
        .route("/b", get(page("bananas", "")))
        .route("/c", get(page("cherries", "")))
        .route("/d", get(page("dates", "")))
        .route("/private/secret", get(page("the secret", "")))
        .route("/robots.txt", get(|| async { "User-agent: *\nDisallow: /private\n" }))
        .route("/metadata", get(|| async { Redirect::temporary("http://169.254.169.254/latest/meta-data") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn add_source(app: &TestApp, space: &str, body: Value) -> String {
    let (status, source) = app
        .post_json(&format!("/api/v1/spaces/{space}/sources"), &body)
        .await;
    assert_eq!(status, 201, "{source}");
    source["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_source_reads_its_pages_within_the_cap_and_robots_rules() {
    let site = local_site().await;
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(|c| c.source_allow_loopback = true),
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Site").await;
    let source = add_source(
        &app,
        &space,
        json!({ "kind": "site", "location": format!("{site}/"), "max_pages": 4 }),
    )
    .await;
    let synced = sync_and_wait(&app, &space, &source).await;
    assert_eq!(synced["last_result"]["added"], 4, "{synced}");
    let docs = documents(&app, &space).await;
    let keys: Vec<&str> = docs
        .iter()
        .filter_map(|d| d["source_key"].as_str())
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter().all(|k| k.starts_with(&site)),
        "same origin only: {keys:?}"
    );
    assert!(
        !keys.iter().any(|k| k.contains("/private")),
        "robots.txt is honoured: {keys:?}"
    );
    assert!(docs.iter().all(|d| d["status"] == "ready"), "{docs:?}");
    assert!(search_texts(&app, &space, "secret").await.is_empty());
    assert!(!search_texts(&app, &space, "apples").await.is_empty());

    // Unchanged pages are not indexed again.
    let again = sync_and_wait(&app, &space, &source).await;
    assert_eq!(again["last_result"]["unchanged"], 4, "{again}");
    assert_eq!(documents(&app, &space).await.len(), 4);

    // Loopback is open to this test, the metadata address behind a redirect is not.
    let trap = add_source(
        &app,
        &space,
        json!({ "kind": "url", "location": format!("{site}/metadata") }),
    )
    .await;
    let refused = sync_and_wait(&app, &space, &trap).await;
    assert_eq!(refused["last_result"]["failed"], 1, "{refused}");
    assert!(
        refused["last_result"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("169.254.169.254"),
        "{refused}"
    );
    assert_eq!(documents(&app, &space).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_loopback_setting_web_sources_cannot_reach_this_machine() {
    let site = local_site().await;
    let app = spawn_app(Backend::Sqlite).await;
    let space = app.create_space("Closed").await;
    let page = add_source(
        &app,
        &space,
        json!({ "kind": "url", "location": format!("{site}/a") }),
    )
    .await;
    let refused = sync_and_wait(&app, &space, &page).await;
    assert_eq!(refused["last_result"]["failed"], 1, "{refused}");
    assert!(
        refused["last_result"]["errors"][0]
            .as_str()
            .unwrap()
            .contains("loopback"),
        "{refused}"
    );
    let named = add_source(
        &app,
        &space,
        json!({ "kind": "site", "location": site.replace("127.0.0.1", "localhost") }),
    )
    .await;
    let refused = sync_and_wait(&app, &space, &named).await;
    assert!(
        refused["last_error"].as_str().unwrap().contains("loopback"),
        "{refused}"
    );
    assert_eq!(refused["failures"], 1);
    let metadata = add_source(
        &app,
        &space,
        json!({ "kind": "url", "location": "http://169.254.169.254/latest/meta-data" }),
    )
    .await;
    let refused = sync_and_wait(&app, &space, &metadata).await;
    assert_eq!(refused["last_result"]["failed"], 1, "{refused}");
    assert!(documents(&app, &space).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kenning_sync_syncs_the_sources_of_a_space_and_says_what_they_did() {
    use clap::Parser;
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("one.md"), "# One\n\nThe first note.\n").unwrap();
    std::fs::write(root.path().join("two.md"), "# Two\n\nThe second note.\n").unwrap();
    let app = app_with_root(Backend::Sqlite, root.path()).await;
    let space = app.create_space("Synced from the CLI").await;
    let command = |space: &str| {
        let cli = kenning::config::Cli::parse_from([
            "kenning",
            "sync",
            "--space",
            space,
            "--url",
            &app.address,
        ]);
        match cli.command {
            kenning::config::Command::Sync(cmd) => cmd,
            _ => panic!("expected sync"),
        }
    };
    let err = kenning::cli::sync::run(&command("Synced from the CLI"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no sources"), "{err}");
    let err = kenning::cli::sync::run(&command("Nowhere"), false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no space \"Nowhere\""), "{err}");

    add_source(
        &app,
        &space,
        json!({ "kind": "folder", "location": root.path().to_str().unwrap() }),
    )
    .await;
    let ended = kenning::cli::sync::run(&command("Synced from the CLI"), false)
        .await
        .expect("the sync runs");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].status, "idle");
    assert_eq!(
        ended[0].last_result.as_ref().map(|r| r.added),
        Some(2),
        "{:?}",
        ended[0]
    );
    let again = kenning::cli::sync::run(&command(&space), false)
        .await
        .unwrap();
    assert_eq!(
        again[0].last_result.as_ref().map(|r| r.unchanged),
        Some(2),
        "{:?}",
        again[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_folder_is_synced_soon_after_a_file_in_it_changes() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("rota.md"),
        "# Rota\n\nThe night shift starts at 22:00.\n",
    )
    .unwrap();
    let app = app_with_root(Backend::Sqlite, root.path()).await;
    let space = app.create_space("Watched").await;
    let (status, err) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/sources"),
            &json!({ "kind": "url", "location": "https://example.com/", "watch": true }),
        )
        .await;
    assert_eq!(status, 400, "{err}");
    assert_error(&err, "invalid_watch");
    let source = add_source(
        &app,
        &space,
        json!({ "kind": "folder", "location": root.path().to_str().unwrap(), "watch": true }),
    )
    .await;

    // Nobody asks for a sync: the first one is due at once, the next one follows the edit.
    let wait_for = |text: &'static str| {
        let app = &app;
        let space = space.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let found = search_texts(app, &space, "night shift").await;
                if found.iter().any(|t| t.contains(text)) {
                    return found;
                }
                assert!(
                    Instant::now() < deadline,
                    "{text:?} never became searchable: {found:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    wait_for("22:00").await;
    std::fs::write(
        root.path().join("rota.md"),
        "# Rota\n\nThe night shift starts at 23:30 from May.\n",
    )
    .unwrap();
    let found = wait_for("23:30").await;
    assert!(!found.iter().any(|t| t.contains("22:00")), "{found:?}");
    let (_, s) = app
        .get_json(&format!("/api/v1/spaces/{space}/sources/{source}"))
        .await;
    assert_eq!(s["watch"], true);
}
