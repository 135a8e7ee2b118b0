//! The MCP server at `/mcp`, spoken to as an agent client does (JSON-RPC over Streamable HTTP):
//! it needs an API key, lists the caller's spaces, searches and asks them, remembers and
//! recalls, and never lets a caller reach a space or a memory that is not theirs.

use crate::helpers::{
    admin_cookie, new_key, no_redirects, session_cookie, spawn_app_with, Backend, Options, TestApp,
    PASSWORD,
};
use kenning::auth::AuthMode;
use serde_json::{json, Value};

on_both_backends!(an_agent_uses_its_own_spaces_and_memories_through_mcp_and_nothing_else);

/// An MCP client holding one API key (or none).
struct Agent<'a> {
    app: &'a TestApp,
    key: Option<String>,
}

impl Agent<'_> {
    /// Sends one JSON-RPC request; the HTTP status and the parsed body.
    async fn rpc(&self, method: &str, params: Value) -> (u16, Value) {
        let mut r = self
            .app
            .client
            .post(self.app.url("/mcp"))
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-06-18")
            .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params }));
        if let Some(key) = &self.key {
            r = r.bearer_auth(key);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Calls a tool; its result (`isError`, `structuredContent`, `content`).
    async fn call(&self, tool: &str, arguments: Value) -> Value {
        let (status, body) = self
            .rpc(
                "tools/call",
                json!({ "name": tool, "arguments": arguments }),
            )
            .await;
        assert_eq!(status, 200, "{tool}: {body}");
        body["result"].clone()
    }
}

/// A signed-in account's new API key.
async fn key_of(app: &TestApp, cookie: &str) -> String {
    let (created, _) = new_key(app, cookie).await;
    created["key"].as_str().unwrap().to_string()
}

async fn an_agent_uses_its_own_spaces_and_memories_through_mcp_and_nothing_else(backend: Backend) {
    let app = spawn_app_with(
        backend,
        Options {
            serve: Box::new(|c| c.auth = AuthMode::Password),
            ..Options::default()
        },
    )
    .await;
    let admin_cookie = admin_cookie(&app).await;
    let admin = Agent {
        app: &app,
        key: Some(key_of(&app, &admin_cookie).await),
    };
    let r = no_redirects()
        .post(app.url("/api/v1/users"))
        .header("Cookie", &admin_cookie)
        .json(&json!({ "email": "bob@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = no_redirects()
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({ "email": "bob@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let bob = Agent {
        app: &app,
        key: Some(key_of(&app, &session_cookie(&r).unwrap()).await),
    };

    // The admin's space, with a document.
    let space = {
        let r = app
            .client
            .post(app.url("/api/v1/spaces"))
            .bearer_auth(admin.key.as_deref().unwrap())
            .json(&json!({ "name": "Handbook" }))
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        body["id"].as_str().unwrap().to_string()
    };
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(
            b"# Leave\n\nEvery employee receives twenty-five days of paid vacation each year.\n"
                .to_vec(),
        )
        .file_name("leave.md"),
    );
    let r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
        .bearer_auth(admin.key.as_deref().unwrap())
        .multipart(form)
        .send()
        .await
        .unwrap();
    let doc: Value = r.json().await.unwrap();
    let document = doc["id"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let r = app
            .client
            .get(app.url(&format!("/api/v1/spaces/{space}/documents/{document}")))
            .bearer_auth(admin.key.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        let d: Value = r.json().await.unwrap();
        if d["status"] == "ready" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Without a key there is no way in.
    let stranger = Agent {
        app: &app,
        key: None,
    };
    let initialize = json!({
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": { "name": "tests", "version": "1" },
    });
    let (status, body) = stranger.rpc("initialize", initialize.clone()).await;
    assert_eq!(status, 401, "{body}");
    // The refusal tells the MCP host which credentials to send.
    let r = app
        .client
        .post(app.url("/mcp"))
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers().get(reqwest::header::WWW_AUTHENTICATE);
    assert!(
        challenge
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ")),
        "{challenge:?}"
    );
    let (status, _) = Agent {
        app: &app,
        key: Some("kn_not_a_real_key".into()),
    }
    .rpc("tools/list", json!({}))
    .await;
    assert_eq!(status, 401);

    // With one: the handshake, the tools, and each tool doing its job.
    let (status, body) = admin.rpc("initialize", initialize).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["serverInfo"]["name"], "kenning", "{body}");
    let (_, body) = admin.rpc("tools/list", json!({})).await;
    let mut tools: Vec<&str> = body["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    tools.sort_unstable();
    assert_eq!(
        tools,
        ["ask", "list_spaces", "recall", "remember", "search"]
    );

    let listed = admin.call("list_spaces", json!({})).await;
    assert_eq!(listed["isError"], false, "{listed}");
    assert_eq!(listed["structuredContent"]["spaces"][0]["name"], "Handbook");

    let found = admin
        .call(
            "search",
            json!({ "space": "Handbook", "query": "paid vacation" }),
        )
        .await;
    assert_eq!(found["isError"], false, "{found}");
    assert_eq!(
        found["structuredContent"]["passages"][0]["document"],
        "leave.md"
    );

    let answer = admin
        .call(
            "ask",
            json!({ "space": space, "question": "How many days of paid vacation?" }),
        )
        .await;
    assert_eq!(answer["isError"], false, "{answer}");
    let text = answer["content"][0]["text"].as_str().unwrap_or("");
    assert!(text.contains("twenty-five days"), "{text}");
    assert!(text.contains("Sources:\n[1] leave.md"), "{text}");
    // An agent's question leaves no conversation behind.
    let r = app
        .client
        .get(app.url(&format!("/api/v1/spaces/{space}/conversations")))
        .bearer_auth(admin.key.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    let conversations: Value = r.json().await.unwrap();
    assert_eq!(conversations["total"], 0, "{conversations}");

    let remembered = admin
        .call(
            "remember",
            json!({ "text": "The admin prefers short answers." }),
        )
        .await;
    assert_eq!(remembered["isError"], false, "{remembered}");
    let recalled = admin
        .call("recall", json!({ "query": "how long should answers be" }))
        .await;
    assert_eq!(
        recalled["structuredContent"]["memories"][0]["text"],
        "The admin prefers short answers."
    );

    // Another account sees none of it, by name or by id.
    let listed = bob.call("list_spaces", json!({})).await;
    assert_eq!(listed["structuredContent"]["spaces"], json!([]), "{listed}");
    for space_ref in ["Handbook", space.as_str()] {
        for (tool, args) in [
            ("search", json!({ "space": space_ref, "query": "vacation" })),
            (
                "ask",
                json!({ "space": space_ref, "question": "How many vacation days?" }),
            ),
        ] {
            let refused = bob.call(tool, args).await;
            assert_eq!(refused["isError"], true, "{tool}: {refused}");
            assert_eq!(
                refused["structuredContent"]["error"]["code"], "space_not_found",
                "{refused}"
            );
            assert!(!refused.to_string().contains("twenty-five"), "{refused}");
        }
    }
    let recalled = bob
        .call("recall", json!({ "query": "how long should answers be" }))
        .await;
    assert_eq!(
        recalled["structuredContent"]["memories"],
        json!([]),
        "{recalled}"
    );

    // Bad arguments are refused to the model, not to the protocol.
    let bad = admin.call("search", json!({ "space": "Handbook" })).await;
    assert_eq!(bad["isError"], true, "{bad}");
    let bad = admin.call("remember", json!({ "text": " " })).await;
    assert_eq!(bad["isError"], true, "{bad}");

    // The memory written through MCP is in the audit log (newest first), with who wrote it.
    // Entries are written by a queue behind the response, so give them a moment to land.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (audit, statuses) = loop {
        let r = app
            .client
            .get(app.url("/api/v1/audit?limit=50"))
            .bearer_auth(admin.key.as_deref().unwrap())
            .send()
            .await
            .unwrap();
        let audit: Value = r.json().await.unwrap();
        let statuses: Vec<Value> = audit["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "MCP remember")
            .map(|e| e["details"]["status"].clone())
            .collect();
        if statuses.len() >= 2 || std::time::Instant::now() > deadline {
            break (audit, statuses);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        statuses,
        [400, 200],
        "the refused attempt is there too: {audit}"
    );
    let entry = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "MCP remember")
        .nth(1)
        .unwrap();
    assert_eq!(entry["target_type"], "memory", "{audit}");
    assert_eq!(
        entry["target_id"], remembered["structuredContent"]["ids"][0],
        "{entry}"
    );
    assert!(entry["actor"].is_string(), "{entry}");
}
