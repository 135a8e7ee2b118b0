//! The REST API described as OpenAPI 3.1 and served at `/api/openapi.json`, so clients can be
//! generated from it and the API can be fuzzed against what it promises.

use axum::response::IntoResponse;
use std::sync::OnceLock;
use utoipa::OpenApi;

/// Where the spec is served.
pub const PATH: &str = "/api/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Kenning",
        description = "Knowledge spaces of documents, searched and asked in plain language, \
                       answered with citations. Every error is `{\"error\": {\"code\", \"message\"}}`. \
                       The OpenAI-compatible API at `/v1` follows OpenAI's own specification and is \
                       not repeated here."
    ),
    paths(
        super::spaces::list,
        super::spaces::create,
        super::spaces::read,
        super::spaces::update,
        super::spaces::remove,
        super::documents::list,
        super::documents::upload,
        super::documents::read,
        super::documents::remove,
        super::documents::chunks,
        super::documents::job,
        super::documents::search,
        super::sources::list,
        super::sources::create,
        super::sources::read,
        super::sources::remove,
        super::sources::sync,
        super::chat::ask_post,
        super::chat::ask_get,
        super::chat::conversations,
        super::chat::messages,
        super::chat::delete_conversation,
        super::chat::rename_conversation,
        super::points::upsert,
        super::points::info,
        super::points::search,
        super::points::read,
        super::points::remove,
        super::memories::upsert,
        super::memories::info,
        super::memories::search,
        super::memories::read,
        super::memories::remove,
        super::ops::snapshot,
        super::ops::audit,
        super::ops::report,
        super::ops::liveness,
        super::ops::readiness,
        super::auth::login,
        super::auth::setup,
        super::auth::logout,
        super::auth::logout_everywhere,
        super::auth::change_password,
        super::auth::session,
        super::auth::list_keys,
        super::auth::create_key,
        super::auth::revoke_key,
        super::auth::list_users,
        super::auth::create_user,
        super::auth::update_user,
        super::auth::delete_user,
        super::auth::members,
        super::auth::set_member,
        super::auth::remove_member,
    ),
    tags(
        (name = "spaces", description = "Knowledge spaces"),
        (name = "documents", description = "Uploads, ingestion progress, passages and search"),
        (name = "sources", description = "Folders and web pages a space keeps in sync"),
        (name = "chat", description = "Answers streamed as Server-Sent Events, and conversations"),
        (name = "points", description = "Client-supplied vectors with payloads"),
        (name = "memories", description = "Texts each caller asks Kenning to remember, found by meaning"),
        (name = "operations", description = "Health and metrics"),
        (name = "auth", description = "Sign-in, API keys and accounts (with `--auth password`)"),
    )
)]
struct ApiDoc;

/// The spec as JSON text, built once.
pub fn json() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    })
}

/// `GET /api/openapi.json`.
pub async fn serve() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        json(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_operation_documents_its_errors_and_the_spec_is_valid_json() {
        let spec: serde_json::Value = serde_json::from_str(json()).expect("spec is JSON");
        let paths = spec["paths"].as_object().expect("paths");
        assert!(paths.contains_key("/api/v1/spaces/{id}/documents"));
        let mut operations = 0;
        for (path, item) in paths {
            for (method, op) in item.as_object().expect("path item") {
                operations += 1;
                if !path.starts_with("/api/v1/") {
                    continue;
                }
                let responses = op["responses"].as_object().expect("responses");
                assert!(
                    responses.contains_key("400") && responses.contains_key("429"),
                    "{method} {path} does not document the common errors"
                );
            }
        }
        assert_eq!(operations, 54, "every routed operation is in the spec");
    }

    #[test]
    fn point_ids_may_be_any_unsigned_64_bit_integer() {
        let spec: serde_json::Value = serde_json::from_str(json()).expect("spec is JSON");
        let number = &spec["components"]["schemas"]["PointIdJson"]["oneOf"][0];
        assert_eq!(number["type"], "integer", "{number}");
        // int64 would tell clients (and fuzzers) that ids stop at 2^63 - 1; Qdrant's go to 2^64 - 1.
        assert_eq!(number["format"], "uint64", "{number}");
        assert_eq!(number["minimum"], 0, "{number}");
    }
}
