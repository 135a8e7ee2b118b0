use crate::helpers::{spawn_app, Backend};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

on_both_backends!(changes_are_audited_with_outcome_and_origin_newest_first);

/// Reads the log until it holds `n` entries (the writer is a background task).
async fn audit_log(app: &crate::helpers::TestApp, n: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, page) = app.get_json("/api/v1/audit?limit=50").await;
        assert_eq!(status, 200, "{page}");
        if page["total"].as_i64().unwrap() >= n {
            return page;
        }
        assert!(Instant::now() < deadline, "only {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn changes_are_audited_with_outcome_and_origin_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let space = app.create_space("Audited").await;
    let (status, doc) = app.upload(&space, "a.md", b"# A\n\ntext".to_vec()).await;
    assert_eq!(status, 202, "{doc}");
    let (status, _) = app
        .patch_json(
            &format!("/api/v1/spaces/{space}"),
            &json!({ "name": "Renamed" }),
        )
        .await;
    assert_eq!(status, 200);
    // Reads are not changes: none of these is recorded.
    app.get_json(&format!("/api/v1/spaces/{space}")).await;
    app.post_json(
        &format!("/api/v1/spaces/{space}/search"),
        &json!({ "query": "text" }),
    )
    .await;
    // A refused attempt is recorded with its status.
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/spaces/{space}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let page = audit_log(&app, 4).await;
    assert_eq!(page["total"], 4, "{page}");
    let entries = page["items"].as_array().unwrap();
    let actions: Vec<&str> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "DELETE /api/v1/spaces/{id}",
            "PATCH /api/v1/spaces/{id}",
            "POST /api/v1/spaces/{id}/documents",
            "POST /api/v1/spaces",
        ],
        "newest first"
    );
    let refused = &entries[0];
    assert_eq!(refused["details"]["status"], 403);
    assert_eq!(refused["target_type"], "space");
    assert_eq!(refused["target_id"], space.as_str());
    assert_eq!(refused["ip"], "127.0.0.1");
    assert!(refused["details"]["request_id"]
        .as_str()
        .is_some_and(|id| !id.is_empty()));
    assert_eq!(entries[2]["details"]["status"], 202);
    assert_eq!(entries[3]["details"]["status"], 201);

    let (_, second) = app.get_json("/api/v1/audit?limit=2&offset=2").await;
    assert_eq!(
        second["items"][0]["action"],
        "POST /api/v1/spaces/{id}/documents"
    );
    assert_eq!(second["items"].as_array().unwrap().len(), 2);
}
