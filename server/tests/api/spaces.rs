use crate::helpers::{assert_error, spawn_app, Backend};
use serde_json::json;

on_both_backends!(
    creating_a_space_returns_201_and_lists_it,
    names_are_unique_regardless_of_case,
    empty_or_overlong_names_are_rejected_and_nothing_is_written,
    malformed_or_mistyped_json_gets_a_json_error,
    the_api_serves_its_openapi_description,
    unknown_space_ids_are_404,
    renaming_a_space_changes_its_name_but_not_to_a_taken_one,
    deleting_a_space_removes_it_with_its_documents_and_files,
    spaces_are_listed_newest_first_one_page_at_a_time,
    out_of_range_pagination_is_rejected,
);

async fn creating_a_space_returns_201_and_lists_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, space) = app
        .post_json(
            "/api/v1/spaces",
            &json!({ "name": "  Handbook ", "description": "How we work" }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(space["name"], "Handbook");
    assert_eq!(space["description"], "How we work");
    assert_eq!(space["document_count"], 0);

    let (status, page) = app.get_json("/api/v1/spaces").await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["id"], space["id"]);

    let (status, read) = app
        .get_json(&format!("/api/v1/spaces/{}", space["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(read, space);
}

async fn names_are_unique_regardless_of_case(backend: Backend) {
    let app = spawn_app(backend).await;
    app.create_space("Research").await;
    let (status, body) = app
        .post_json("/api/v1/spaces", &json!({ "name": "research" }))
        .await;
    assert_eq!(status, 409);
    assert_error(&body, "conflict");
    let (_, page) = app.get_json("/api/v1/spaces").await;
    assert_eq!(page["total"], 1);
}

async fn empty_or_overlong_names_are_rejected_and_nothing_is_written(backend: Backend) {
    let app = spawn_app(backend).await;
    for name in ["", "   ", &"x".repeat(101)] {
        let (status, body) = app
            .post_json("/api/v1/spaces", &json!({ "name": name }))
            .await;
        assert_eq!(status, 400, "name {name:?}");
        assert_error(&body, "invalid_name");
    }
    let (status, body) = app
        .post_json(
            "/api/v1/spaces",
            &json!({ "name": "ok", "description": "d".repeat(501) }),
        )
        .await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_description");
    let (_, page) = app.get_json("/api/v1/spaces").await;
    assert_eq!(page["total"], 0);
}

async fn malformed_or_mistyped_json_gets_a_json_error(backend: Backend) {
    let app = spawn_app(backend).await;
    let r = app
        .client
        .post(app.url("/api/v1/spaces"))
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_error(&r.json().await.unwrap(), "invalid_json");

    let (status, body) = app
        .post_json("/api/v1/spaces", &json!({ "name": 42 }))
        .await;
    assert_eq!(status, 422);
    assert_error(&body, "invalid_fields");

    // serde reads a struct from an array of its fields too; the API takes only objects, so an
    // array can neither create a space nor pass as an empty update.
    let (status, body) = app.post_json("/api/v1/spaces", &json!(["arrayed"])).await;
    assert_eq!(status, 422);
    assert_error(&body, "invalid_fields");
    let (_, space) = app
        .post_json("/api/v1/spaces", &json!({ "name": "kept" }))
        .await;
    let id = space["id"].as_str().unwrap();
    let (status, body) = app
        .patch_json(&format!("/api/v1/spaces/{id}"), &json!([null, null]))
        .await;
    assert_eq!(status, 422);
    assert_error(&body, "invalid_fields");
    let (_, page) = app.get_json("/api/v1/spaces").await;
    assert_eq!(page["total"], 1);

    let r = app
        .client
        .post(app.url("/api/v1/spaces"))
        .body("name=x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    assert_error(&r.json().await.unwrap(), "expected_json");

    let (status, body) = app.get_json("/api/v1/no-such-thing").await;
    assert_eq!(status, 404);
    assert_error(&body, "route_not_found");
}

async fn unknown_space_ids_are_404(backend: Backend) {
    let app = spawn_app(backend).await;
    for id in ["0190f5a2-7c1e-7000-8000-000000000000", "not-a-uuid"] {
        let (status, body) = app.get_json(&format!("/api/v1/spaces/{id}")).await;
        assert_eq!(status, 404, "{id}");
        assert_error(&body, "space_not_found");
        let (status, _) = app
            .patch_json(&format!("/api/v1/spaces/{id}"), &json!({ "name": "x" }))
            .await;
        assert_eq!(status, 404);
        assert_eq!(
            app.delete(&format!("/api/v1/spaces/{id}")).await.status(),
            404
        );
        let (status, body) = app
            .get_json(&format!("/api/v1/spaces/{id}/documents"))
            .await;
        assert_eq!(status, 404);
        assert_error(&body, "space_not_found");
    }
}

async fn renaming_a_space_changes_its_name_but_not_to_a_taken_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_space("Alpha").await;
    app.create_space("Beta").await;
    let (status, body) = app
        .patch_json(&format!("/api/v1/spaces/{id}"), &json!({ "name": "Gamma" }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Gamma");

    let (status, body) = app
        .patch_json(&format!("/api/v1/spaces/{id}"), &json!({ "name": "BETA" }))
        .await;
    assert_eq!(status, 409);
    assert_error(&body, "conflict");

    let (status, body) = app
        .patch_json(&format!("/api/v1/spaces/{id}"), &json!({ "name": "" }))
        .await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_name");

    let (_, read) = app.get_json(&format!("/api/v1/spaces/{id}")).await;
    assert_eq!(read["name"], "Gamma");
}

async fn deleting_a_space_removes_it_with_its_documents_and_files(backend: Backend) {
    let app = spawn_app(backend).await;
    let id = app.create_space("Doomed").await;
    let keep = app.create_space("Kept").await;
    let (status, _) = app.upload(&id, "a.md", b"# A\n".to_vec()).await;
    assert_eq!(status, 202);
    let (status, _) = app.upload(&keep, "b.md", b"# B\n".to_vec()).await;
    assert_eq!(status, 202);
    assert_eq!(app.stored_files().len(), 2);

    assert_eq!(
        app.delete(&format!("/api/v1/spaces/{id}")).await.status(),
        204
    );
    let (status, _) = app.get_json(&format!("/api/v1/spaces/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(
        app.stored_files().len(),
        1,
        "only the other space's file remains"
    );
    let (_, docs) = app
        .get_json(&format!("/api/v1/spaces/{keep}/documents"))
        .await;
    assert_eq!(docs["total"], 1);
}

async fn spaces_are_listed_newest_first_one_page_at_a_time(backend: Backend) {
    let app = spawn_app(backend).await;
    for i in 0..5 {
        app.create_space(&format!("Space {i}")).await;
    }
    let (_, first) = app.get_json("/api/v1/spaces?limit=2").await;
    assert_eq!(first["total"], 5);
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["name"], "Space 4");
    let (_, last) = app.get_json("/api/v1/spaces?limit=2&offset=4").await;
    assert_eq!(last["items"].as_array().unwrap().len(), 1);
    assert_eq!(last["items"][0]["name"], "Space 0");
}

async fn out_of_range_pagination_is_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in ["limit=0", "limit=1000", "offset=-1"] {
        let (status, body) = app.get_json(&format!("/api/v1/spaces?{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(body["error"]["code"]
            .as_str()
            .unwrap()
            .starts_with("invalid_"));
    }
    let (status, body) = app.get_json("/api/v1/spaces?limit=abc").await;
    assert_eq!(status, 400);
    assert_error(&body, "invalid_query");
}

async fn the_api_serves_its_openapi_description(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, spec) = app.get_json("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    let paths = spec["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/spaces", "post"),
        ("/api/v1/spaces/{id}/documents", "post"),
        ("/api/v1/spaces/{id}/search", "post"),
        ("/api/v1/spaces/{id}/chat", "post"),
        ("/api/v1/spaces/{id}/points", "put"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/keys", "post"),
        ("/api/v1/spaces/{id}/members", "put"),
        ("/health", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} is described"
        );
    }
    // A documented route really answers (not the JSON 404 for unknown routes).
    let (status, _) = app.get_json("/api/v1/spaces").await;
    assert_eq!(status, 200);
    let search = &spec["components"]["schemas"]["SearchRequest"]["properties"]["limit"];
    assert_eq!(search["maximum"], 50);
}
