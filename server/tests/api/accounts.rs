//! Accounts, sessions, API keys and roles (`--auth password`): signing in and out, keys that
//! work until revoked, and a matrix proving that a caller cannot read, search, ask, change or
//! delete another space's data through any endpoint — REST, OpenAI-compatible, server
//! functions and pages alike — while members get exactly what their role allows.

use crate::helpers::{
    admin_cookie, assert_error, no_redirects, parse_sse, session_cookie, spawn_app_with, Backend,
    Options, TestApp, PASSWORD,
};
use app::server_fns::{GetSpace, ListConversations, ListDocuments, SearchSpace};
use kenning::auth::AuthMode;
use kenning::config::ServeConfig;
use leptos::server_fn::ServerFn;
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, SET_COOKIE};
use reqwest::multipart::{Form, Part};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    signing_in_out_and_api_keys_work_and_fail_as_they_should,
    no_caller_can_reach_a_space_they_are_not_a_member_of,
    members_get_what_their_role_allows_and_no_more,
    rate_limits_count_per_account_and_per_space,
    uploads_beyond_the_queue_cap_are_shed_and_nothing_is_kept,
    an_expired_session_signs_nobody_in,
    password_guessing_is_cut_off_by_the_sign_in_limit,
    memories_belong_to_their_caller_alone,
    disabled_and_deleted_accounts_lose_every_way_in,
    one_account_cannot_use_up_the_vector_lengths,
);

async fn spawn_with_accounts(backend: Backend) -> TestApp {
    spawn_with_accounts_and(backend, |_| {}).await
}

/// A password-mode server as [`spawn_with_accounts`], with `tweak` applied to its settings too.
async fn spawn_with_accounts_and(
    backend: Backend,
    tweak: impl FnOnce(&mut ServeConfig) + Send + 'static,
) -> TestApp {
    spawn_app_with(
        backend,
        Options {
            serve: Box::new(|c| {
                c.auth = AuthMode::Password;
                // These tests sign in more often than the guessing limit allows.
                c.limits.rate_limit_sign_in = "off".parse().unwrap();
                tweak(c);
            }),
            ..Options::default()
        },
    )
    .await
}

/// Credentials a request carries: a session cookie or an API key.
#[derive(Clone)]
enum Cred {
    Cookie(String),
    Key(String),
}

/// A caller of the test server.
struct As<'a> {
    app: &'a TestApp,
    cred: Cred,
    client: reqwest::Client,
}

impl<'a> As<'a> {
    fn new(app: &'a TestApp, cred: Cred) -> Self {
        Self {
            app,
            cred,
            client: no_redirects(),
        }
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, self.app.url(path));
        match &self.cred {
            Cred::Cookie(c) => r.header(COOKIE, c),
            Cred::Key(k) => r.header(AUTHORIZATION, format!("Bearer {k}")),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.req(method, path);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, Some(body)).await
    }

    async fn upload(&self, space: &str, name: &str, text: &str) -> (u16, Value) {
        let form = Form::new().part(
            "file",
            Part::bytes(text.as_bytes().to_vec()).file_name(name.to_string()),
        );
        let r = self
            .req(Method::POST, &format!("/api/v1/spaces/{space}/documents"))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap())
    }

    async fn server_fn(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .req(Method::POST, path)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn page(&self, path: &str) -> (u16, String) {
        let r = self.req(Method::GET, path).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn wait_ready(&self, space: &str, doc: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let (status, d) = self
                .get(&format!("/api/v1/spaces/{space}/documents/{doc}"))
                .await;
            assert_eq!(status, 200, "{d}");
            if d["status"] == "ready" {
                return;
            }
            assert_ne!(d["status"], "failed", "{d}");
            assert!(std::time::Instant::now() < deadline, "not indexed: {d}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

async fn sign_in(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    no_redirects()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Creates the admin through the first-account setup and returns its session.
async fn set_up_admin(app: &TestApp) -> As<'_> {
    As::new(app, Cred::Cookie(admin_cookie(app).await))
}

/// An account made by the admin, signed in with an API key of its own.
async fn account<'a>(app: &'a TestApp, admin: &As<'_>, email: &str) -> As<'a> {
    let (status, body) = admin
        .post(
            "/api/v1/users",
            json!({ "email": email, "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let r = sign_in(app, email, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let session = As::new(app, Cred::Cookie(session_cookie(&r).unwrap()));
    let (status, key) = session
        .post("/api/v1/auth/keys", json!({ "name": "tests" }))
        .await;
    assert_eq!(status, 201, "{key}");
    As::new(app, Cred::Key(key["key"].as_str().unwrap().to_string()))
}

async fn signing_in_out_and_api_keys_work_and_fail_as_they_should(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let anonymous = no_redirects();

    // Nothing but sign-in, health and files without credentials.
    let r = anonymous
        .get(app.url("/api/v1/spaces"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_error(&r.json().await.unwrap(), "unauthenticated");
    let r = anonymous
        .get(app.url("/spaces?offset=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "pages send strangers to sign in");
    assert_eq!(r.headers()[LOCATION], "/login?next=/spaces%3Foffset%3D0");
    assert_eq!(
        anonymous
            .get(app.url("/login"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        anonymous
            .get(app.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, session) = app.get_json("/api/v1/auth/session").await;
    assert_eq!(session["auth"], "password");
    assert_eq!(session["needs_setup"], true);

    // The first account: a short password is refused, then it is made admin, once only.
    let (status, body) = app
        .post_json(
            "/api/v1/auth/setup",
            &json!({ "email": "admin@example.org", "password": "short" }),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_password");
    let r = anonymous
        .post(app.url("/api/v1/auth/setup"))
        .json(&json!({ "email": "admin@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let set_cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );
    let admin: Value = r.json().await.unwrap();
    assert_eq!(admin["is_admin"], true);
    assert!(admin.get("password_hash").is_none(), "{admin}");
    let (status, body) = app
        .post_json(
            "/api/v1/auth/setup",
            &json!({ "email": "second@example.org", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 409, "{body}");

    // Wrong password and unknown account: the same 401 and the same words.
    let wrong = sign_in(&app, "admin@example.org", "not the password").await;
    assert_eq!(wrong.status(), 401);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown: Value = sign_in(&app, "nobody@example.org", PASSWORD)
        .await
        .json()
        .await
        .unwrap();
    assert_error(&wrong, "invalid_credentials");
    assert_eq!(wrong, unknown);

    // A session: any case of the email signs in; the cookie opens the API and the pages.
    let r = sign_in(&app, "ADMIN@example.org", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let cookie = session_cookie(&r).unwrap();
    let me = As::new(&app, Cred::Cookie(cookie.clone()));
    let (status, session) = me.get("/api/v1/auth/session").await;
    assert_eq!(status, 200);
    assert_eq!(session["user"]["email"], "admin@example.org");
    let (status, page) = me.page("/spaces").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("admin@example.org"),
        "the sidebar names who is signed in"
    );

    // API keys: shown once, listed by prefix, working until revoked.
    let (status, created) = me
        .post("/api/v1/auth/keys", json!({ "name": "laptop" }))
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("kn_") && key.len() > 40, "{key}");
    assert_eq!(created["prefix"], &key[..11]);
    let (_, keys) = me.get("/api/v1/auth/keys").await;
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert!(
        !keys.to_string().contains(&key),
        "the key is never listed: {keys}"
    );
    assert!(keys[0]["last_used_at"].is_null());
    let with_key = As::new(&app, Cred::Key(key.clone()));
    assert_eq!(with_key.get("/api/v1/spaces").await.0, 200);
    let (_, keys) = me.get("/api/v1/auth/keys").await;
    assert!(
        keys[0]["last_used_at"].is_string(),
        "use is recorded: {keys}"
    );
    let id = created["id"].as_str().unwrap();
    let (status, _) = me
        .send(Method::DELETE, &format!("/api/v1/auth/keys/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, body) = with_key.get("/api/v1/spaces").await;
    assert_eq!(status, 401, "a revoked key stops working at once");
    assert_error(&body, "invalid_api_key");
    let (status, body) = As::new(&app, Cred::Key("kn_0000000000".into()))
        .get("/api/v1/spaces")
        .await;
    assert_eq!(status, 401);
    assert_error(&body, "invalid_api_key");

    // The audit log names who made a change. Entries are written by a background task, so
    // the log is read until the entry shows (for at most five seconds).
    let mut entry = None;
    for _ in 0..50 {
        let (status, log) = me.get("/api/v1/audit").await;
        assert_eq!(status, 200, "{log}");
        entry = log["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "POST /api/v1/auth/keys")
            .cloned();
        if entry.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let entry = entry.expect("key creation audited");
    assert_eq!(entry["actor"], admin["id"], "{entry}");

    // The account page lists the keys; the audit page shows the log to admins.
    let (status, page) = me.page("/account").await;
    assert_eq!(status, 200);
    assert!(
        page.contains("API keys") && page.contains("laptop"),
        "account page"
    );
    let (status, page) = me.page("/audit").await;
    assert_eq!(status, 200);
    assert!(page.contains("POST /api/v1/auth/keys"), "audit page");

    // Signing out ends the session on the server, not only in the browser.
    let (status, _) = me.send(Method::POST, "/api/v1/auth/logout", None).await;
    assert_eq!(status, 204);
    assert_eq!(me.get("/api/v1/spaces").await.0, 401);

    // The login page's form: a redirect to where the user was going, or back with the reason.
    let r = anonymous
        .post(app.url("/api/v1/auth/login"))
        .form(&[
            ("email", "admin@example.org"),
            ("password", PASSWORD),
            ("next", "/spaces"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/spaces");
    assert!(session_cookie(&r).is_some());
    let r = anonymous
        .post(app.url("/api/v1/auth/login"))
        .form(&[
            ("email", "admin@example.org"),
            ("password", "nope"),
            ("next", "//evil.example"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()[LOCATION].to_str().unwrap();
    assert!(
        to.starts_with("/login?error=Wrong") && to.ends_with("next=/"),
        "{to}"
    );
    assert!(session_cookie(&r).is_none());
}

async fn no_caller_can_reach_a_space_they_are_not_a_member_of(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let alice = account(&app, &admin, "alice@example.org").await;
    let bob = account(&app, &admin, "bob@example.org").await;

    // Alice's space, with a document, an answer in a conversation and a point.
    let (status, space) = alice
        .post("/api/v1/spaces", json!({ "name": "Alice private" }))
        .await;
    assert_eq!(status, 201, "{space}");
    let a = space["id"].as_str().unwrap().to_string();
    let secret = "The vault combination is 4711 and only finance knows it.";
    let (status, doc) = alice
        .upload(&a, "vault.md", &format!("# Vault\n\n{secret}\n"))
        .await;
    assert_eq!(status, 202, "{doc}");
    let d = doc["id"].as_str().unwrap().to_string();
    let job = doc["job_id"].as_str().unwrap().to_string();
    alice.wait_ready(&a, &d).await;
    let r = alice
        .req(Method::POST, &format!("/api/v1/spaces/{a}/chat"))
        .json(&json!({ "question": "What is the vault combination?" }))
        .send()
        .await
        .unwrap();
    let events = parse_sse(&r.text().await.unwrap());
    let done = events.iter().find(|e| e.event == "done").expect("answered");
    let c = done.data["conversation_id"].as_str().unwrap().to_string();
    let (status, body) = alice
        .send(
            Method::PUT,
            &format!("/api/v1/spaces/{a}/points"),
            Some(json!({ "points": [{ "id": 1, "vector": [0.1, 0.2, 0.3], "payload": { "secret": secret } }] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Bob's own space, so he is a real user with data of his own.
    let (status, _) = bob
        .post("/api/v1/spaces", json!({ "name": "Bob notes" }))
        .await;
    assert_eq!(status, 201);

    // Every route that names Alice's space is a 404 to Bob: nothing read, nothing changed.
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/spaces/{a}"), None),
        (
            Method::PATCH,
            format!("/api/v1/spaces/{a}"),
            Some(json!({ "name": "Taken" })),
        ),
        (Method::DELETE, format!("/api/v1/spaces/{a}"), None),
        (Method::GET, format!("/api/v1/spaces/{a}/documents"), None),
        (
            Method::GET,
            format!("/api/v1/spaces/{a}/documents/{d}"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/spaces/{a}/documents/{d}/chunks"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces/{a}/documents/{d}"),
            None,
        ),
        (Method::GET, format!("/api/v1/spaces/{a}/jobs/{job}"), None),
        (
            Method::POST,
            format!("/api/v1/spaces/{a}/search"),
            Some(json!({ "query": "vault combination" })),
        ),
        (
            Method::POST,
            format!("/api/v1/spaces/{a}/chat"),
            Some(json!({ "question": "What is the vault combination?" })),
        ),
        (
            Method::GET,
            format!("/api/v1/spaces/{a}/chat?question=vault"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/spaces/{a}/conversations"),
            None,
        ),
        (
            Method::GET,
            format!("/api/v1/spaces/{a}/conversations/{c}/messages"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/spaces/{a}/conversations/{c}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v1/spaces/{a}/points"),
            Some(json!({ "points": [{ "id": 2, "vector": [1.0, 0.0, 0.0] }] })),
        ),
        (Method::GET, format!("/api/v1/spaces/{a}/points"), None),
        (
            Method::POST,
            format!("/api/v1/spaces/{a}/points/search"),
            Some(json!({ "vector": [0.1, 0.2, 0.3] })),
        ),
        (Method::GET, format!("/api/v1/spaces/{a}/points/1"), None),
        (Method::DELETE, format!("/api/v1/spaces/{a}/points/1"), None),
        (Method::GET, format!("/api/v1/spaces/{a}/members"), None),
        (
            Method::PUT,
            format!("/api/v1/spaces/{a}/members"),
            Some(json!({ "email": "bob@example.org", "role": "owner" })),
        ),
    ];
    for (method, path, body) in &routes {
        let (status, answer) = bob.send(method.clone(), path, body.clone()).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_error(&answer, "space_not_found");
        assert!(
            !answer.to_string().contains("4711"),
            "{method} {path} leaked: {answer}"
        );
    }
    // Without credentials, the same routes ask for them.
    let (status, _) = As::new(&app, Cred::Key(String::new()))
        .get(&format!("/api/v1/spaces/{a}"))
        .await;
    assert_eq!(status, 401);

    // Listings show Bob only his own.
    let (_, spaces) = bob.get("/api/v1/spaces").await;
    let names: Vec<&str> = spaces["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["Bob notes"]);
    assert_eq!(spaces["total"], 1);

    // The OpenAI-compatible API: Alice's space is no model of Bob's.
    let (_, models) = bob.get("/v1/models").await;
    assert!(!models.to_string().contains("Alice private"), "{models}");
    let (status, body) = bob
        .post(
            "/v1/chat/completions",
            json!({ "model": "Alice private", "messages": [{ "role": "user", "content": "What is the vault combination?" }] }),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.to_string().contains("4711"));

    // The UI's server functions and pages refuse the same.
    for (path, form) in [
        (GetSpace::PATH, vec![("id", a.as_str())]),
        (
            ListDocuments::PATH,
            vec![("space_id", a.as_str()), ("offset", "0")],
        ),
        (
            SearchSpace::PATH,
            vec![
                ("space_id", a.as_str()),
                ("query", "vault"),
                ("mode", "hybrid"),
            ],
        ),
        (ListConversations::PATH, vec![("space_id", a.as_str())]),
    ] {
        let (status, text) = bob.server_fn(path, &form).await;
        assert!(status >= 400, "{path}: {status} {text}");
        assert!(
            !text.contains("4711") && !text.contains("vault.md"),
            "{path} leaked: {text}"
        );
    }
    let (_, page) = bob.page(&format!("/spaces/{a}")).await;
    assert!(
        !page.contains("Alice private") && !page.contains("vault.md"),
        "the page leaked"
    );
    let (_, page) = bob.page(&format!("/spaces/{a}/documents/{d}")).await;
    assert!(!page.contains("4711"), "the passage page leaked");

    // Accounts and the audit log are for admins.
    assert_eq!(bob.get("/api/v1/users").await.0, 403);
    assert_eq!(bob.get("/api/v1/audit").await.0, 403);
    let (_, page) = bob.page("/audit").await;
    assert!(
        page.contains("Only admins may do this."),
        "the audit page refuses"
    );
    assert!(!page.contains("POST /api/v1/spaces"), "and shows no entry");

    // Bob's refused attempts are in the audit log, with him as the actor.
    let (_, me) = bob.get("/api/v1/auth/session").await;
    let (_, log) = admin.get("/api/v1/audit?limit=200").await;
    let refused = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "DELETE /api/v1/spaces/{id}" && e["target_id"] == a.as_str())
        .cloned()
        .expect("the refused delete is audited");
    assert_eq!(refused["actor"], me["user"]["id"], "{refused}");
    assert_eq!(refused["details"]["status"], 404);

    // Alice's data came through untouched, and she still sees it all.
    let (status, doc) = alice
        .get(&format!("/api/v1/spaces/{a}/documents/{d}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(doc["status"], "ready");
    let (status, hits) = alice
        .post(
            &format!("/api/v1/spaces/{a}/search"),
            json!({ "query": "vault combination" }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(hits.to_string().contains("4711"), "{hits}");
    let (status, point) = alice.get(&format!("/api/v1/spaces/{a}/points/1")).await;
    assert_eq!(status, 200, "{point}");
    let (_, space) = alice.get(&format!("/api/v1/spaces/{a}")).await;
    assert_eq!(space["name"], "Alice private");
    let (status, messages) = alice
        .get(&format!("/api/v1/spaces/{a}/conversations/{c}/messages"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(messages["total"], 2);
    let (_, page) = alice.page(&format!("/spaces/{a}")).await;
    assert!(
        page.contains("vault.md"),
        "the owner sees her document on the page"
    );

    // The admin reaches every space.
    assert_eq!(admin.get(&format!("/api/v1/spaces/{a}")).await.0, 200);
}

async fn members_get_what_their_role_allows_and_no_more(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let owner = account(&app, &admin, "owner@example.org").await;
    let editor = account(&app, &admin, "editor@example.org").await;
    let viewer = account(&app, &admin, "viewer@example.org").await;

    let (_, space) = owner
        .post("/api/v1/spaces", json!({ "name": "Shared" }))
        .await;
    let s = space["id"].as_str().unwrap().to_string();
    for (email, role) in [
        ("editor@example.org", "editor"),
        ("viewer@example.org", "viewer"),
    ] {
        let (status, body) = owner
            .send(
                Method::PUT,
                &format!("/api/v1/spaces/{s}/members"),
                Some(json!({ "email": email, "role": role })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["role"], role);
    }
    let (status, body) = owner
        .send(
            Method::PUT,
            &format!("/api/v1/spaces/{s}/members"),
            Some(json!({ "email": "nobody@example.org", "role": "viewer" })),
        )
        .await;
    // The space exists: an unknown email is the body's fault, said as such.
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "unknown_user", "{body}");
    let (_, members) = owner.get(&format!("/api/v1/spaces/{s}/members")).await;
    let roles: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["role"].as_str())
        .collect();
    assert_eq!(roles, ["owner", "editor", "viewer"]);

    // The editor adds and removes documents, but cannot rename, delete or share the space.
    let (status, doc) = editor
        .upload(&s, "guide.md", "# Guide\n\nThe office opens at nine.\n")
        .await;
    assert_eq!(status, 202, "{doc}");
    let d = doc["id"].as_str().unwrap().to_string();
    editor.wait_ready(&s, &d).await;
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/api/v1/spaces/{s}"),
            Some(json!({ "name": "Mine now" })),
        ),
        (Method::DELETE, format!("/api/v1/spaces/{s}"), None),
        (
            Method::PUT,
            format!("/api/v1/spaces/{s}/members"),
            Some(json!({ "email": "editor@example.org", "role": "owner" })),
        ),
    ] {
        let (status, answer) = editor.send(method.clone(), &path, body).await;
        assert_eq!(status, 403, "editor {method} {path}: {answer}");
        assert_error(&answer, "forbidden");
    }

    // The viewer searches and asks, and may change nothing.
    let (status, hits) = viewer
        .post(
            &format!("/api/v1/spaces/{s}/search"),
            json!({ "query": "when does the office open" }),
        )
        .await;
    assert_eq!(status, 200);
    assert!(hits.to_string().contains("nine"), "{hits}");
    let r = viewer
        .req(Method::POST, &format!("/api/v1/spaces/{s}/chat"))
        .json(&json!({ "question": "When does the office open?" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (status, _) = viewer.upload(&s, "mine.md", "# Mine\n\ntext\n").await;
    assert_eq!(status, 403, "viewers cannot upload");
    for (method, path) in [
        (Method::DELETE, format!("/api/v1/spaces/{s}/documents/{d}")),
        (Method::PATCH, format!("/api/v1/spaces/{s}")),
        (Method::DELETE, format!("/api/v1/spaces/{s}")),
    ] {
        let (status, answer) = viewer
            .send(method.clone(), &path, Some(json!({ "name": "x" })))
            .await;
        assert_eq!(status, 403, "viewer {method} {path}: {answer}");
    }
    let (status, _) = viewer
        .server_fn(GetSpace::PATH, &[("id", s.as_str())])
        .await;
    assert_eq!(status, 200, "the viewer's server functions answer");

    // A space keeps an owner; removing a member ends their access.
    let owner_id = members[0]["user_id"].as_str().unwrap();
    let (status, body) = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/spaces/{s}/members/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let viewer_id = members[2]["user_id"].as_str().unwrap();
    let (status, _) = owner
        .send(
            Method::DELETE,
            &format!("/api/v1/spaces/{s}/members/{viewer_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = viewer
        .post(
            &format!("/api/v1/spaces/{s}/search"),
            json!({ "query": "office" }),
        )
        .await;
    assert_eq!(status, 404);

    // The editor deletes the document; its passages go with it.
    let (status, _) = editor
        .send(
            Method::DELETE,
            &format!("/api/v1/spaces/{s}/documents/{d}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
}

async fn rate_limits_count_per_account_and_per_space(backend: Backend) {
    let app = spawn_with_accounts_and(backend, |c| {
        c.limits.rate_limit_search = "2/min".parse().unwrap();
        c.limits.rate_limit_space = "3/min".parse().unwrap();
    })
    .await;
    let admin = set_up_admin(&app).await;
    let ann = account(&app, &admin, "ann@example.org").await;
    let ben = account(&app, &admin, "ben@example.org").await;
    let (_, space) = ann.post("/api/v1/spaces", json!({ "name": "Busy" })).await;
    let busy = space["id"].as_str().unwrap().to_string();
    let (_, space) = ann.post("/api/v1/spaces", json!({ "name": "Quiet" })).await;
    let quiet = space["id"].as_str().unwrap().to_string();
    let (status, _) = ann
        .send(
            Method::PUT,
            &format!("/api/v1/spaces/{busy}/members"),
            Some(json!({ "email": "ben@example.org", "role": "viewer" })),
        )
        .await;
    assert_eq!(status, 200);
    let search = |who: &As<'_>, space: &str| {
        let r = who
            .req(Method::POST, &format!("/api/v1/spaces/{space}/search"))
            .json(&json!({ "query": "anything" }))
            .send();
        async move { r.await.unwrap().status().as_u16() }
    };

    // Each account has its own allowance, though both come from the same address.
    assert_eq!(search(&ann, &busy).await, 200);
    assert_eq!(search(&ann, &busy).await, 200);
    assert_eq!(
        search(&ann, &quiet).await,
        429,
        "Ann's own allowance is spent"
    );
    assert_eq!(search(&ben, &busy).await, 200, "Ben's is not");
    // The busy space has served three searches from its callers together: its allowance is spent.
    assert_eq!(
        search(&ben, &busy).await,
        429,
        "the space's allowance is spent"
    );
    let r = ben
        .req(Method::POST, &format!("/api/v1/spaces/{busy}/search"))
        .json(&json!({ "query": "anything" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
}

async fn uploads_beyond_the_queue_cap_are_shed_and_nothing_is_kept(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            // No workers: queued jobs stay queued.
            workers: 0,
            serve: Box::new(|c| c.max_queued_jobs = 2),
            ..Options::default()
        },
    )
    .await;
    let space = app.create_space("Backlog").await;
    for n in 0..2 {
        let (status, body) = app
            .upload(
                &space,
                &format!("{n}.md"),
                format!("# Doc {n}\n\nText {n}.\n").into_bytes(),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let form = Form::new().part(
        "file",
        Part::bytes(b"# Third\n\nText.\n".to_vec()).file_name("third.md"),
    );
    let r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "5");
    let body: Value = r.json().await.unwrap();
    assert_error(&body, "overloaded");
    assert_eq!(app.stored_files().len(), 2, "the shed upload left no file");
    let (_, docs) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(docs["total"], 2, "and no document");
}

async fn an_expired_session_signs_nobody_in(backend: Backend) {
    use sha2::{Digest, Sha256};
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let (_, me) = admin.get("/api/v1/auth/session").await;
    let user = uuid::Uuid::parse_str(me["user"]["id"].as_str().unwrap()).unwrap();
    // Sessions are stored by the SHA-256 of their token: plant one that ended a second ago,
    // and one that is still good, for the same account.
    let store = kenning::store::connect(&app.store_config).await.unwrap();
    let now = chrono::Utc::now().timestamp_millis();
    let digest = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    store
        .create_session(&digest("expired-token"), user, now - 1_000)
        .await
        .unwrap();
    store
        .create_session(&digest("live-token"), user, now + 60_000)
        .await
        .unwrap();
    let expired = As::new(&app, Cred::Cookie("kenning_session=expired-token".into()));
    let (status, body) = expired.get("/api/v1/spaces").await;
    assert_eq!(status, 401, "{body}");
    assert_error(&body, "unauthenticated");
    let (status, page) = expired.page("/spaces").await;
    assert_eq!(status, 303, "{page}");
    let live = As::new(&app, Cred::Cookie("kenning_session=live-token".into()));
    assert_eq!(live.get("/api/v1/spaces").await.0, 200);
    // Expired sessions are swept at the next sign-in.
    assert_eq!(
        sign_in(&app, "admin@example.org", PASSWORD).await.status(),
        200
    );
    assert_eq!(
        store.delete_expired_sessions(now).await.unwrap(),
        0,
        "already swept"
    );
}

async fn password_guessing_is_cut_off_by_the_sign_in_limit(backend: Backend) {
    // The default sign-in limit: 10/min with a burst of 5, per client address.
    let app = spawn_app_with(
        backend,
        Options {
            serve: Box::new(|c| c.auth = AuthMode::Password),
            ..Options::default()
        },
    )
    .await;
    let admin = set_up_admin(&app).await;
    for _ in 0..4 {
        assert_eq!(
            sign_in(&app, "admin@example.org", "guess").await.status(),
            401
        );
    }
    let r = sign_in(&app, "admin@example.org", PASSWORD).await;
    assert_eq!(
        r.status(),
        429,
        "even the right password waits once the burst is spent"
    );
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=6).contains(&wait), "Retry-After {wait}");
    // Signed-in work is not held up by it.
    assert_eq!(admin.get("/api/v1/spaces").await.0, 200);
}

/// Memories are per caller: another account can neither read, find, replace nor delete them, and
/// the same id names two different memories for two callers.
async fn memories_belong_to_their_caller_alone(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let alice = account(&app, &admin, "alice@example.org").await;
    let bob = account(&app, &admin, "bob@example.org").await;
    let secret = "Alice's locker code is 4711.";
    let (status, body) = alice
        .send(
            Method::PUT,
            "/api/v1/memories",
            Some(json!({ "memories": [{ "id": 7, "text": secret }] })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = bob.get("/api/v1/memories/7").await;
    assert_eq!(status, 404, "{body}");
    let (status, found) = bob
        .post("/api/v1/memories/search", json!({ "query": "locker code" }))
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["memories"], json!([]), "{found}");
    let (status, body) = bob.send(Method::DELETE, "/api/v1/memories/7", None).await;
    assert_eq!(status, 404, "{body}");
    let (_, info) = bob.get("/api/v1/memories").await;
    assert_eq!(info["memories"], 0, "{info}");
    // Bob's memory 7 is his own; Alice's stays as it was.
    let (status, _) = bob
        .send(
            Method::PUT,
            "/api/v1/memories",
            Some(json!({ "memories": [{ "id": 7, "text": "Bob likes tea." }] })),
        )
        .await;
    assert_eq!(status, 200);
    let (status, mine) = alice.get("/api/v1/memories/7").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["text"], secret);
    let (_, admins) = admin
        .post("/api/v1/memories/search", json!({ "query": "locker code" }))
        .await;
    assert_eq!(
        admins["memories"],
        json!([]),
        "not even an admin reads them: {admins}"
    );

    let stranger = no_redirects()
        .get(app.url("/api/v1/memories/7"))
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 401);
}

on_both_backends!(conversations_belong_to_the_member_who_started_them);

/// Asks a question in a space as `who`; the id of the conversation the answer went into.
async fn asked(who: &As<'_>, space: &str, body: Value) -> String {
    let r = who
        .req(Method::POST, &format!("/api/v1/spaces/{space}/chat"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = parse_sse(&r.text().await.unwrap());
    let done = events.iter().find(|e| e.event == "done").expect("answered");
    done.data["conversation_id"]
        .as_str()
        .expect("the answer names its conversation")
        .to_string()
}

/// A conversation belongs to the member who started it — its title is their question. To every
/// other member (a viewer, an editor, even an admin) it does not exist: it is not listed, its
/// messages are not found, and it cannot be continued, renamed or deleted.
async fn conversations_belong_to_the_member_who_started_them(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let ann = account(&app, &admin, "ann@example.org").await;
    let ben = account(&app, &admin, "ben@example.org").await;
    let cat = account(&app, &admin, "cat@example.org").await;

    // Ann's space, shared with Ben as viewer and Cat as editor.
    let (status, space) = ann
        .post("/api/v1/spaces", json!({ "name": "Team handbook" }))
        .await;
    assert_eq!(status, 201, "{space}");
    let s = space["id"].as_str().unwrap().to_string();
    for (email, role) in [("ben@example.org", "viewer"), ("cat@example.org", "editor")] {
        let (status, body) = ann
            .send(
                Method::PUT,
                &format!("/api/v1/spaces/{s}/members"),
                Some(json!({ "email": email, "role": role })),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, doc) = ann
        .upload(
            &s,
            "pay.md",
            "# Pay\n\nSalary reviews happen every March.\n",
        )
        .await;
    assert_eq!(status, 202, "{doc}");
    ann.wait_ready(&s, doc["id"].as_str().unwrap()).await;

    // Ann asks a private question; it becomes her conversation's title.
    let private = "Will my salary review in March be affected by my sick leave?";
    let c = asked(&ann, &s, json!({ "question": private })).await;
    let conversations = format!("/api/v1/spaces/{s}/conversations");
    let one = format!("{conversations}/{c}");
    let messages = format!("{one}/messages");
    let chat = format!("/api/v1/spaces/{s}/chat");

    // To the viewer, the editor and the admin it is not there.
    let others = [(&ben, "viewer"), (&cat, "editor"), (&admin, "admin")];
    for (who, name) in others {
        let (status, list) = who.get(&conversations).await;
        assert_eq!(status, 200, "{name}: {list}");
        assert_eq!(list["total"], 0, "{name}: {list}");
        assert!(
            !list.to_string().contains(private) && !list.to_string().contains(&c),
            "the {name} sees Ann's conversation: {list}"
        );
        let (status, body) = who.get(&messages).await;
        assert_eq!(status, 404, "{name}: {body}");
        assert_error(&body, "conversation_not_found");
        assert!(!body.to_string().contains("salary"), "{name}: {body}");
    }

    // Continuing it is refused exactly as continuing a conversation that never existed.
    let (status, unknown) = ben
        .post(
            &chat,
            json!({ "question": "What else?", "conversation_id": "00000000-0000-7000-8000-000000000000" }),
        )
        .await;
    assert_eq!(status, 400, "{unknown}");
    assert_error(&unknown, "conversation_not_found");
    for (who, name) in others {
        let (status, body) = who
            .post(
                &chat,
                json!({ "question": "What else?", "conversation_id": c }),
            )
            .await;
        assert_eq!(
            (status, &body),
            (400, &unknown),
            "the {name} continued Ann's conversation"
        );
        let (status, body) = who
            .get(&format!(
                "{chat}?question=What%20else%3F&conversation_id={c}"
            ))
            .await;
        assert_eq!(
            (status, &body),
            (400, &unknown),
            "the {name} continued Ann's conversation by GET"
        );
    }

    // The editor may rename and delete conversations, but not Ann's: it is not found.
    let (status, body) = cat
        .send(Method::PATCH, &one, Some(json!({ "title": "Taken over" })))
        .await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "conversation_not_found");
    let (status, body) = cat.send(Method::DELETE, &one, None).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "conversation_not_found");

    // The UI's server functions show the viewer no more than the API does.
    let (status, text) = ben
        .server_fn(ListConversations::PATH, &[("space_id", s.as_str())])
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains(private) && !text.contains(&c),
        "listed: {text}"
    );
    let (status, text) = ben
        .server_fn(
            app::server_fns::ListMessages::PATH,
            &[("space_id", s.as_str()), ("conversation_id", c.as_str())],
        )
        .await;
    assert!(status >= 400, "{status} {text}");
    assert!(!text.contains(private), "read: {text}");

    // The viewer's own conversation is his alone, and Ann's list holds only hers.
    let mine = asked(&ben, &s, json!({ "question": "When are salary reviews?" })).await;
    let (_, list) = ben.get(&conversations).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], mine.as_str(), "{list}");
    let (_, list) = ann.get(&conversations).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["items"][0]["id"], c.as_str(), "{list}");
    assert_eq!(list["items"][0]["title"], private, "{list}");

    // Ann's conversation came through untouched: she reads, continues, renames and deletes it.
    let (status, turns) = ann.get(&messages).await;
    assert_eq!(status, 200, "{turns}");
    assert_eq!(turns["items"][0]["role"], "user", "{turns}");
    assert_eq!(turns["items"][0]["content"], private, "{turns}");
    let (status, text) = ann
        .server_fn(ListConversations::PATH, &[("space_id", s.as_str())])
        .await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&c),
        "Ann's sidebar lists her conversation: {text}"
    );
    let again = asked(
        &ann,
        &s,
        json!({ "question": "And if I was away in March?", "conversation_id": c }),
    )
    .await;
    assert_eq!(again, c, "the follow-up went into the same conversation");
    let (status, renamed) = ann
        .send(
            Method::PATCH,
            &one,
            Some(json!({ "title": "Pay questions" })),
        )
        .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(renamed["title"], "Pay questions");
    let (status, body) = ann.send(Method::DELETE, &one, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = ann.get(&messages).await;
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "conversation_not_found");
    // Deleting hers left Ben's alone.
    let (_, list) = ben.get(&conversations).await;
    assert_eq!(list["total"], 1, "{list}");
}

/// An admin disables an account: its session and key stop working at once and it cannot sign
/// in, until it is enabled again. Deleting an account takes its sessions, keys, memberships
/// and conversations with it. Nobody else may do either, and an admin never to themselves.
async fn disabled_and_deleted_accounts_lose_every_way_in(backend: Backend) {
    let app = spawn_with_accounts(backend).await;
    let admin = set_up_admin(&app).await;
    let member = account(&app, &admin, "member@example.org").await;
    let r = sign_in(&app, "member@example.org", PASSWORD).await;
    let session = As::new(&app, Cred::Cookie(session_cookie(&r).unwrap()));
    let bystander = account(&app, &admin, "bystander@example.org").await;
    let (_, me) = member.get("/api/v1/auth/session").await;
    let id = me["user"]["id"]
        .as_str()
        .expect("an account id")
        .to_string();
    let (_, admin_me) = admin.get("/api/v1/auth/session").await;
    let admin_id = admin_me["user"]["id"].as_str().unwrap().to_string();

    let (status, space) = admin
        .post("/api/v1/spaces", json!({ "name": "Shared" }))
        .await;
    assert_eq!(status, 201, "{space}");
    let space = space["id"].as_str().unwrap().to_string();
    let (status, body) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/spaces/{space}/members"),
            Some(json!({ "email": "member@example.org", "role": "editor" })),
        )
        .await;
    assert!(status < 300, "{status} {body}");
    assert_eq!(member.get(&format!("/api/v1/spaces/{space}")).await.0, 200);

    // Only admins, and never on their own account.
    let disable = json!({ "disabled": true });
    for other in [&member, &bystander] {
        let (status, body) = other
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{admin_id}"),
                Some(disable.clone()),
            )
            .await;
        assert_eq!(status, 403, "{body}");
    }
    let (status, body) = admin
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{admin_id}"),
            Some(disable.clone()),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_error(&body, "own_account");
    let (status, _) = admin
        .send(Method::DELETE, &format!("/api/v1/users/{admin_id}"), None)
        .await;
    assert_eq!(status, 400);
    for bad in ["not-an-id", "00000000-0000-0000-0000-000000000000"] {
        let (status, body) = admin
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{bad}"),
                Some(disable.clone()),
            )
            .await;
        assert_eq!(status, 404, "{body}");
    }
    let (status, body) = admin
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({ "disabled": "yes" })),
        )
        .await;
    assert!((400..500).contains(&status), "{status} {body}");

    // Disabled: its key, its session and its password all stop working at once.
    let (status, user) = admin
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(disable.clone()),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["disabled"], true);
    assert_eq!(member.get("/api/v1/spaces").await.0, 401);
    assert_eq!(session.get("/api/v1/spaces").await.0, 401);
    assert_eq!(
        sign_in(&app, "member@example.org", PASSWORD).await.status(),
        401
    );
    let (_, users) = admin.get("/api/v1/users").await;
    assert!(
        users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id.as_str() && u["disabled"] == true),
        "{users}"
    );

    // Enabled again: the key works, the ended session stays ended, sign-in works.
    let (status, user) = admin
        .send(
            Method::PATCH,
            &format!("/api/v1/users/{id}"),
            Some(json!({ "disabled": false })),
        )
        .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["disabled"], false);
    assert_eq!(member.get("/api/v1/spaces").await.0, 200);
    assert_eq!(session.get("/api/v1/spaces").await.0, 401);
    assert_eq!(
        sign_in(&app, "member@example.org", PASSWORD).await.status(),
        200
    );

    // Deleted: nothing of it works, it is not listed, its membership is gone; the space stays.
    let (status, _) = admin
        .send(Method::DELETE, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(member.get("/api/v1/spaces").await.0, 401);
    assert_eq!(
        sign_in(&app, "member@example.org", PASSWORD).await.status(),
        401
    );
    let (_, users) = admin.get("/api/v1/users").await;
    assert!(
        !users["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == id.as_str()),
        "{users}"
    );
    let (_, members) = admin.get(&format!("/api/v1/spaces/{space}/members")).await;
    assert!(
        !members
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["user_id"] == id.as_str()),
        "{members}"
    );
    assert_eq!(admin.get(&format!("/api/v1/spaces/{space}")).await.0, 200);
    let (status, _) = admin
        .send(Method::DELETE, &format!("/api/v1/users/{id}"), None)
        .await;
    assert_eq!(status, 404, "deleting twice");
    // The email is free for a new account.
    let (status, body) = admin
        .post(
            "/api/v1/users",
            json!({ "email": "member@example.org", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// Points of one new vector length in a fresh space of `who`'s: the status and body.
async fn first_points(who: &As<'_>, space: &str, dims: usize) -> (u16, Value) {
    who.send(
        Method::PUT,
        &format!("/api/v1/spaces/{space}/points"),
        Some(json!({ "points": [{ "id": 1, "vector": vec![0.5_f32; dims] }] })),
    )
    .await
}

async fn new_space(who: &As<'_>, name: &str) -> String {
    let (status, space) = who.post("/api/v1/spaces", json!({ "name": name })).await;
    assert_eq!(status, 201, "{space}");
    space["id"].as_str().unwrap().to_string()
}

async fn one_account_cannot_use_up_the_vector_lengths(backend: Backend) {
    let app = spawn_with_accounts_and(backend, |c| c.max_point_lengths_per_account = 2).await;
    let admin = set_up_admin(&app).await;
    let member = account(&app, &admin, "member@example.org").await;

    let a = new_space(&member, "a").await;
    let b = new_space(&member, "b").await;
    let c = new_space(&member, "c").await;
    assert_eq!(first_points(&member, &a, 3).await.0, 200);
    assert_eq!(first_points(&member, &b, 4).await.0, 200);
    // A third length is refused, and nothing of it is kept; a length already used is not new.
    let (status, body) = first_points(&member, &c, 5).await;
    assert_eq!(status, 403, "{body}");
    assert_error(&body, "point_length_quota");
    let (_, info) = member.get(&format!("/api/v1/spaces/{c}/points")).await;
    assert_eq!(info["points"], 0, "{info}");
    assert_eq!(first_points(&member, &c, 3).await.0, 200);
    // Points of a length the space already has are no new length either.
    assert_eq!(first_points(&member, &b, 4).await.0, 200);

    // Deleting a space frees its length for the account.
    let r = member
        .req(Method::DELETE, &format!("/api/v1/spaces/{b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let d = new_space(&member, "d").await;
    assert_eq!(first_points(&member, &d, 5).await.0, 200);

    // Spaces the account may only read do not count against it.
    let shared = new_space(&admin, "shared").await;
    assert_eq!(first_points(&admin, &shared, 6).await.0, 200);
    let (status, body) = admin
        .send(
            Method::PUT,
            &format!("/api/v1/spaces/{shared}/members"),
            Some(json!({ "email": "member@example.org", "role": "viewer" })),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let e = new_space(&member, "e").await;
    assert_eq!(first_points(&member, &e, 3).await.0, 200);

    // First writes racing into many new spaces cannot slip past the cap together.
    let racer = account(&app, &admin, "racer@example.org").await;
    let mut spaces = Vec::new();
    for i in 0..6 {
        spaces.push(new_space(&racer, &format!("race {i}")).await);
    }
    let writes = spaces
        .iter()
        .enumerate()
        .map(|(i, s)| first_points(&racer, s, 10 + i));
    let statuses: Vec<u16> = futures::future::join_all(writes)
        .await
        .into_iter()
        .map(|(status, _)| status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        4,
        "{statuses:?}"
    );

    // Admins are not bound by it.
    for dims in 20..24 {
        let s = new_space(&admin, &format!("admin {dims}")).await;
        assert_eq!(first_points(&admin, &s, dims).await.0, 200);
    }
}
