//! Attacks on a running server, each closed and kept closed: DNS rebinding and forwarded
//! requests in single-user mode, the first visitor making themselves admin, credentials a proxy
//! adds, cross-site questions, oversized search bodies, concurrent health probes, open
//! redirects after sign-in, missing security headers, password guessing spread over many
//! addresses, API keys minting keys, and NUL characters.

use crate::helpers::{self, assert_error, no_redirects, spawn_app, spawn_app_with, Backend};
use crate::helpers::{admin_cookie, new_key, Options, TestApp, PASSWORD};
use kenning::auth::AuthMode;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION};
use serde_json::{json, Value};

on_both_backends!(nul_characters_are_refused_or_dropped_never_a_server_error);

async fn with_accounts(
    change: impl FnOnce(&mut kenning::config::ServeConfig) + Send + 'static,
) -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(move |c| {
                c.auth = AuthMode::Password;
                c.limits.rate_limit_sign_in = "off".parse().unwrap();
                change(c);
            }),
            ..Options::default()
        },
    )
    .await
}

fn port(app: &TestApp) -> u16 {
    app.address.rsplit(':').next().unwrap().parse().unwrap()
}

fn session_cookie(r: &reqwest::Response) -> String {
    helpers::session_cookie(r).expect("a session cookie")
}

/// `GET /api/v1/spaces` with one header: the status.
async fn spaces_status(app: &TestApp, name: reqwest::header::HeaderName, value: &str) -> u16 {
    let r = app
        .client
        .get(app.url("/api/v1/spaces"))
        .header(name, value)
        .send();
    r.await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_user_mode_answers_only_to_this_machine_by_its_own_name() {
    let app = spawn_app(Backend::Sqlite).await;
    let port = port(&app);
    let rebound = format!("rebind.attacker.example:{port}");
    // A page whose DNS name now points at 127.0.0.1: the browser sends its own name.
    let r = app
        .client
        .post(app.url("/api/v1/spaces"))
        .header("host", &rebound)
        .header("origin", format!("http://{rebound}"))
        .json(&json!({ "name": "Rebound" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_error(&r.json().await.unwrap(), "not_this_machine");
    let r = app
        .client
        .get(app.url("/api/v1/spaces"))
        .header("host", &rebound)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "reads too");
    // Another port on this machine is another origin.
    let r = app
        .client
        .get(app.url("/api/v1/spaces"))
        .header("host", format!("localhost:{}", port.wrapping_add(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A proxy or tunnel in front would hand the single user to its network.
    for header in [
        "x-forwarded-for",
        "forwarded",
        "x-real-ip",
        "x-forwarded-host",
    ] {
        let r = app
            .client
            .get(app.url("/api/v1/spaces"))
            .header(header, "203.0.113.9")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{header}");
    }
    // Nothing was created, and this machine by any of its names is served.
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let r = app
            .client
            .get(app.url("/api/v1/spaces"))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["total"], 0, "{page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_account_from_elsewhere_needs_the_setup_token() {
    let app = with_accounts(|c| c.setup_token = Some("let-me-in-4f1c".to_string().into())).await;
    let setup = |token: Option<&str>| {
        let mut body = json!({ "email": "admin@example.org", "password": PASSWORD });
        if let Some(t) = token {
            body["setup_token"] = json!(t);
        }
        // Through a proxy: the request did not start on this machine.
        no_redirects()
            .post(app.url("/api/v1/auth/setup"))
            .header("x-forwarded-for", "203.0.113.9")
            .json(&body)
            .send()
    };
    for token in [None, Some("guess"), Some("")] {
        let r = setup(token).await.unwrap();
        assert_eq!(r.status(), 403, "{token:?}");
        assert_error(&r.json().await.unwrap(), "forbidden");
    }
    let (_, session) = app.get_json("/api/v1/auth/session").await;
    assert_eq!(session["needs_setup"], true, "no account was made");
    let r = setup(Some("let-me-in-4f1c")).await.unwrap();
    assert_eq!(r.status(), 201);
    // Once an account exists the token opens nothing, and the answer comes before any hashing.
    let r = setup(Some("let-me-in-4f1c")).await.unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_of_another_scheme_are_ignored_not_refused() {
    let app = with_accounts(|_| {}).await;
    let cookie = admin_cookie(&app).await;
    let basic = "Basic dXNlcjpwYXNzd29yZA==";
    let get = |path: &str, auth: &str, cookie: Option<&str>| {
        let mut r = app.client.get(app.url(path)).header(AUTHORIZATION, auth);
        if let Some(c) = cookie {
            r = r.header(COOKIE, c);
        }
        r.send()
    };
    assert_eq!(
        get("/health/liveness", basic, None).await.unwrap().status(),
        200
    );
    assert_eq!(get("/health", basic, None).await.unwrap().status(), 200);
    // A stale key does not stop a public probe either.
    assert_eq!(
        get("/health/liveness", "Bearer kn_revoked", None)
            .await
            .unwrap()
            .status(),
        200
    );
    let r = get("/api/v1/spaces", basic, None).await.unwrap();
    assert_eq!(r.status(), 401);
    // The refusal names the scheme that works, and it is not Basic (no browser dialog).
    assert_eq!(
        r.headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"kenning\"")
    );
    assert_error(&r.json().await.unwrap(), "unauthenticated");
    let r = get("/api/v1/spaces", basic, Some(&cookie)).await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "the session behind a proxy's Basic credentials works"
    );
    let r = get("/api/v1/spaces", "bearer kn_nope", None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "invalid_api_key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_by_get_from_another_site_is_refused() {
    let app = spawn_app(Backend::Sqlite).await;
    let space = app.create_space("Cross").await;
    let path = format!("/api/v1/spaces/{space}/chat?question=what");
    let r = app
        .client
        .get(app.url(&path))
        .header("origin", "https://evil.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_error(&r.json().await.unwrap(), "cross_site_request");
    let r = app
        .client
        .get(app.url(&path))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "fetch metadata alone");
    let (_, list) = app
        .get_json(&format!("/api/v1/spaces/{space}/conversations"))
        .await;
    assert_eq!(list["total"], 0, "no conversation was started: {list}");
    // The server's own pages may still ask by GET.
    let r = app
        .client
        .get(app.url(&path))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_bodies_are_held_to_the_json_limit() {
    let app = spawn_app(Backend::Sqlite).await;
    let space = app.create_space("Big").await;
    let body = format!(r#"{{"query": "{}"}}"#, "a".repeat(2 * 1024 * 1024));
    let started = std::time::Instant::now();
    let r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/search")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413, "refused by size, not parsed first");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_health_probes_all_see_a_healthy_server() {
    let app = spawn_app(Backend::Sqlite).await;
    let probes = (0..200).map(|_| app.client.get(app.url("/health")).send());
    let answers = futures::future::join_all(probes).await;
    let failed: Vec<String> = answers
        .into_iter()
        .map(|r| r.expect("an answer"))
        .filter(|r| r.status() != 200)
        .map(|r| r.status().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 200 failed: {failed:?}",
        failed.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(&app.data_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".health-probe"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "probe files left behind: {leftovers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_never_redirects_off_the_site() {
    let app = with_accounts(|_| {}).await;
    admin_cookie(&app).await;
    for next in [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\\evil.example",
        "//evil.example",
        "https://evil.example",
    ] {
        let r = no_redirects()
            .post(app.url("/api/v1/auth/login"))
            .form(&[
                ("email", "admin@example.org"),
                ("password", PASSWORD),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()[LOCATION], "/", "{next:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    for path in [
        "/",
        "/api/v1/spaces",
        "/health/liveness",
        "/api/v1/nothing-here",
        "/metrics",
    ] {
        let r = app.get(path).await;
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("object-src 'none'"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "same-origin", "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_one_password_from_many_addresses_still_slows_down() {
    // A trusted proxy range that includes the client, as private ranges do for LAN clients:
    // every attempt claims another address, so the per-address limit never applies.
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(|c| {
                c.auth = AuthMode::Password;
                c.limits.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
            }),
            ..Options::default()
        },
    )
    .await;
    admin_cookie(&app).await;
    let attempt = |n: u32, password: &'static str| {
        no_redirects()
            .post(app.url("/api/v1/auth/login"))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .json(&json!({ "email": "Admin@Example.org", "password": password }))
            .send()
    };
    for n in 0..5 {
        assert_eq!(
            attempt(n, "guess").await.unwrap().status(),
            401,
            "attempt {n}"
        );
    }
    let r = attempt(99, PASSWORD).await.unwrap();
    assert_eq!(
        r.status(),
        429,
        "even the right password waits once the account is under attack"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait >= 1, "Retry-After {wait}");
    assert_error(&r.json().await.unwrap(), "too_many_attempts");
    // After the wait the owner gets in, and that clears the count.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    assert_eq!(attempt(100, PASSWORD).await.unwrap().status(), 200);
    assert_eq!(attempt(101, "guess").await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_cannot_manage_api_keys() {
    let app = with_accounts(|_| {}).await;
    let cookie = admin_cookie(&app).await;
    let (created, key) = new_key(&app, &cookie).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/keys"))
        .header(AUTHORIZATION, &key)
        .json(&json!({ "name": "outlives its parent" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_error(&r.json().await.unwrap(), "forbidden");
    let id = created["id"].as_str().unwrap();
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/auth/keys/{id}")))
        .header(AUTHORIZATION, &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The key still works for everything else.
    assert_eq!(spaces_status(&app, AUTHORIZATION, &key).await, 200);
}

async fn nul_characters_are_refused_or_dropped_never_a_server_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = app
        .post_json("/api/v1/spaces", &json!({ "name": "bad\u{0}name" }))
        .await;
    assert_eq!(status, 400, "{body}");
    let space = app.create_space("Nul").await;
    let (status, body) = app
        .post_json(
            &format!("/api/v1/spaces/{space}/chat"),
            &json!({ "question": "what\u{0}now" }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "invalid_question");
    let (status, body) = app
        .put_json(
            &format!("/api/v1/spaces/{space}/points"),
            &json!({ "points": [{ "id": 1, "vector": [0.1, 0.2, 0.3], "payload": { "k": "a\u{0}b" } }] }),
        )
        .await;
    assert!(status == 200 || status == 400, "{status} {body}");
    // A document with NUL bytes past the part read to tell its type (a NUL there makes it
    // binary) is indexed without them, not retried to failure.
    let mut text = "Filler sentence about nothing in particular. "
        .repeat(400)
        .into_bytes();
    text.extend_from_slice(b"\n\nHolidays: twenty\0five days a year.\n");
    let (status, doc) = app.upload(&space, "nul.txt", text).await;
    assert_eq!(status, 202, "{doc}");
    let doc = app
        .wait_for_ingestion(&space, doc["id"].as_str().unwrap())
        .await;
    assert_eq!(doc["status"], "ready", "{doc}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_records_its_use_at_most_once_a_minute() {
    let app = with_accounts(|_| {}).await;
    let cookie = admin_cookie(&app).await;
    let (_, key) = new_key(&app, &cookie).await;
    let last_used = || async {
        let r = app
            .client
            .get(app.url("/api/v1/auth/keys"))
            .header(COOKIE, &cookie)
            .send()
            .await
            .unwrap();
        let keys: Value = r.json().await.unwrap();
        keys[0]["last_used_at"].clone()
    };
    let use_key = || async { assert_eq!(spaces_status(&app, AUTHORIZATION, &key).await, 200) };
    use_key().await;
    let first = last_used().await;
    assert!(first.is_string(), "the first use is recorded: {first}");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    for _ in 0..3 {
        use_key().await;
    }
    assert_eq!(
        last_used().await,
        first,
        "later uses within the minute write nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_and_signing_out_everywhere_end_every_other_session() {
    let app = with_accounts(|_| {}).await;
    let laptop = admin_cookie(&app).await;
    let sign_in = |password: &'static str| {
        no_redirects()
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({ "email": "admin@example.org", "password": password }))
            .send()
    };
    let phone = session_cookie(&sign_in(PASSWORD).await.unwrap());
    let app = &app;
    let status = |cookie: String| async move { spaces_status(app, COOKIE, &cookie).await };
    let change = |cookie: &str, current: &str, new: &str| {
        app.client
            .post(app.url("/api/v1/auth/password"))
            .header(COOKIE, cookie)
            .json(&json!({ "current_password": current, "new_password": new }))
            .send()
    };
    // The current password is needed, and a key cannot do it.
    let r = change(&laptop, "not it", "a brand new secret")
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (_, key) = new_key(app, &laptop).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/password"))
        .header(AUTHORIZATION, &key)
        .json(&json!({ "current_password": PASSWORD, "new_password": "a brand new secret" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // Changed from the laptop: the phone's session ends, the laptop gets a fresh one.
    let r = change(&laptop, PASSWORD, "a brand new secret")
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let fresh = session_cookie(&r);
    assert_eq!(status(phone).await, 401);
    assert_eq!(status(laptop).await, 401);
    assert_eq!(status(fresh.clone()).await, 200);
    assert_eq!(
        sign_in(PASSWORD).await.unwrap().status(),
        401,
        "the old password is gone"
    );
    let again = session_cookie(&sign_in("a brand new secret").await.unwrap());
    // Signing out everywhere ends both sessions; keys keep working.
    let r = app
        .client
        .post(app.url("/api/v1/auth/logout-everywhere"))
        .header(COOKIE, &fresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(status(fresh).await, 401);
    assert_eq!(status(again).await, 401);
    assert_eq!(spaces_status(app, AUTHORIZATION, &key).await, 200);
}

/// A DOCX whose body holds `size` bytes of one letter: a few hundred KB on the wire.
fn docx_bomb(size: usize) -> Vec<u8> {
    use std::io::Write;
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("word/document.xml", options).unwrap();
    zip.write_all(br#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body><w:p><w:r><w:t>"#)
        .unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..size >> 20 {
        zip.write_all(&block).unwrap();
    }
    zip.write_all(b"</w:t></w:r></w:p></w:body></w:document>")
        .unwrap();
    zip.finish().unwrap();
    buf.into_inner()
}

/// Uploads `bytes` and waits for its job; returns the document and its job.
async fn ingest(app: &TestApp, space: &str, name: &str, bytes: Vec<u8>) -> (Value, Value) {
    let (status, doc) = app.upload(space, name, bytes).await;
    assert_eq!(status, 202, "{doc}");
    let doc = app
        .wait_for_ingestion(space, doc["id"].as_str().unwrap())
        .await;
    let (_, job) = app
        .get_json(&format!(
            "/api/v1/spaces/{space}/jobs/{}",
            doc["job_id"].as_str().unwrap()
        ))
        .await;
    (doc, job)
}

/// A decompression bomb is read in a child process with a memory allowance and a cap on the
/// text it may yield: each limit fails the job for good, with its reason, and the server goes
/// on reading other documents. (The deadline is tested on the child itself, in
/// `ingest::isolate`.)
#[tokio::test]
async fn documents_that_blow_up_when_read_fail_for_good_and_cost_only_their_parser() {
    type Change = Box<dyn FnOnce(&mut kenning::config::ServeConfig) + Send>;
    let cases: [(&str, usize, Change); 2] = [
        // 250 MB of text held three times over (the XML, the paragraph, the page).
        ("512 MB", 250, Box::new(|c| c.ingest.parse_memory_mb = 512)),
        (
            "larger than the 8 MB",
            24,
            Box::new(|c| c.ingest.max_document_text_mb = 8),
        ),
    ];
    for (reason, body_mb, serve) in cases {
        let bomb = docx_bomb(body_mb << 20);
        assert!(
            bomb.len() < 1 << 20,
            "small on the wire: {} bytes",
            bomb.len()
        );
        let app = spawn_app_with(
            Backend::Sqlite,
            Options {
                serve,
                ..Options::default()
            },
        )
        .await;
        let space = app.create_space("Bombs").await;
        let (doc, job) = ingest(&app, &space, "bomb.docx", bomb).await;
        assert_eq!(doc["status"], "failed", "{reason}: {doc}");
        let error = doc["error"].as_str().unwrap_or_default();
        assert!(error.contains(reason), "{reason}: {error}");
        assert_eq!(job["attempts"], 1, "{reason}: not retried: {job}");

        // The server and its worker go on as before.
        let (doc, _) = ingest(
            &app,
            &space,
            "fine.md",
            b"# Fine\n\nA normal page.".to_vec(),
        )
        .await;
        assert_eq!(doc["status"], "ready", "{reason}: {doc}");
        let (status, _) = app.get_json("/health/liveness").await;
        assert_eq!(status, 200);
    }
}
