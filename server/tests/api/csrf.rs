use crate::helpers::{assert_error, spawn_app, Backend};
use app::server_fns::CreateSpace;
use leptos::server_fn::ServerFn;
use reqwest::multipart::{Form, Part};
use serde_json::json;

on_both_backends!(browsers_cannot_change_anything_from_another_site);

const EVIL: &str = "https://evil.example";

async fn browsers_cannot_change_anything_from_another_site(backend: Backend) {
    let app = spawn_app(backend).await;
    let own = app.url("");
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 403);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_error(&body, "cross_site_request");
    };

    // The JSON API.
    let post_space = |origin: &str, name: &str| {
        app.client
            .post(app.url("/api/v1/spaces"))
            .header("origin", origin)
            .json(&json!({ "name": name }))
            .send()
    };
    refused(post_space(EVIL, "Forged").await.unwrap()).await;
    let r = post_space(&own, "Mine").await.unwrap();
    assert_eq!(r.status(), 201, "the server's own pages may");
    let space: serde_json::Value = r.json().await.unwrap();
    let space = space["id"].as_str().unwrap().to_string();

    // A multipart upload is a "simple" request: no preflight would stop it.
    let form = Form::new().part(
        "file",
        Part::bytes(b"# Forged\n\ntext".to_vec()).file_name("f.md"),
    );
    let r = app
        .client
        .post(app.url(&format!("/api/v1/spaces/{space}/documents")))
        .header("origin", EVIL)
        .multipart(form)
        .send()
        .await
        .unwrap();
    refused(r).await;

    // A server function called with a plain form post, by Origin or by fetch metadata alone.
    let server_fn = |pairs: &[(&str, &str)]| {
        let mut req = app
            .client
            .post(app.url(CreateSpace::PATH))
            .form(&[("name", "Forged by form"), ("description", "")]);
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.send()
    };
    refused(server_fn(&[("origin", EVIL)]).await.unwrap()).await;
    refused(
        server_fn(&[("sec-fetch-site", "cross-site")])
            .await
            .unwrap(),
    )
    .await;
    let r = server_fn(&[("origin", &own), ("sec-fetch-site", "same-origin")])
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Deletes too; reads are not changes and pass.
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/spaces/{space}")))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    refused(r).await;
    let r = app
        .client
        .get(app.url("/api/v1/spaces"))
        .header("origin", EVIL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: serde_json::Value = r.json().await.unwrap();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        page["total"], 2,
        "only the two same-site creations: {names:?}"
    );
    assert!(names.contains(&"Mine") && names.contains(&"Forged by form"));
    let (_, docs) = app
        .get_json(&format!("/api/v1/spaces/{space}/documents"))
        .await;
    assert_eq!(docs["total"], 0, "the forged upload stored nothing");
}
