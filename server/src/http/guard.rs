//! The one place that decides who may reach which route: it resolves the caller, puts it into
//! the request for handlers and server functions, and refuses by route class — public, signed
//! in, admin, or a role in the space the path names. Server functions name their space in the
//! body, so they check it themselves (`app::server_fns::in_space`).

use crate::auth::{single_user_refusal, Auth, Caller};
use crate::error::ServiceError;
use crate::http::ApiError;
use app::api::Role;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use uuid::Uuid;

/// What a route needs of its caller.
#[derive(Debug, PartialEq, Eq)]
enum Access<'a> {
    /// Anyone: health, metrics, the OpenAPI description, sign-in, static files, server
    /// functions (which check for themselves).
    Public,
    /// A UI page: strangers are sent to the sign-in page.
    Page,
    /// Any signed-in caller.
    Signed,
    /// Admins only.
    Admin,
    /// At least this role in the space with this id.
    Space(&'a str, Role),
}

fn access<'a>(method: &Method, path: &'a str) -> Access<'a> {
    let read = matches!(*method, Method::GET | Method::HEAD);
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return match rest {
            "auth/login" | "auth/setup" | "auth/logout" | "auth/session" => Access::Public,
            _ if rest == "users" || rest.starts_with("users/") => Access::Admin,
            _ if rest == "audit" || rest.starts_with("audit/") => Access::Admin,
            _ => match rest.strip_prefix("spaces/") {
                Some(scoped) => {
                    let (id, tail) = scoped.split_once('/').unwrap_or((scoped, ""));
                    Access::Space(id, space_role(method, tail))
                }
                None => Access::Signed,
            },
        };
    }
    if path.starts_with("/v1/") || path == "/v1" || path == "/mcp" || path.starts_with("/mcp/") {
        return Access::Signed;
    }
    let file = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    if path.starts_with("/api/")
        || path.starts_with("/health")
        || path == "/metrics"
        || path.starts_with("/pkg/")
        || path == "/login"
        || file
    {
        return Access::Public;
    }
    if read {
        Access::Page
    } else {
        Access::Signed
    }
}

/// The role a route under `/api/v1/spaces/{id}/` needs: reading, searching, asking and keeping
/// one's own conversations are for viewers; changing documents and points for editors;
/// renaming, deleting and sharing the space for owners.
fn space_role(method: &Method, tail: &str) -> Role {
    let read = matches!(*method, Method::GET | Method::HEAD);
    let tail = tail.trim_end_matches('/');
    if tail.is_empty() || tail == "members" || tail.starts_with("members/") {
        return if read { Role::Viewer } else { Role::Owner };
    }
    // Conversations belong to whoever started them (the service checks that), so any member
    // may rename or delete their own.
    if read
        || matches!(tail, "search" | "chat" | "points/search")
        || tail.starts_with("conversations/")
    {
        Role::Viewer
    } else {
        Role::Editor
    }
}

/// The middleware: resolve, check, pass the caller on. In single-user mode every request must
/// come from this machine and name it (see `local`), or nothing is served at all.
pub async fn guard(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    if !auth.required() {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        if let Some(reason) = single_user_refusal(peer, req.headers(), req.uri(), auth.port()) {
            tracing::warn!(path = %req.uri().path(), ?peer, "single-user request from elsewhere refused");
            return ApiError::new(StatusCode::FORBIDDEN, "not_this_machine", reason)
                .into_response();
        }
    }
    let path = req.uri().path().to_string();
    let access = access(req.method(), &path);
    let caller = match auth.resolve(req.headers()).await {
        Ok(caller) => caller,
        // A public route needs no credentials, so stale ones do not stop it (a probe, sign-in).
        Err(_) if access == Access::Public => None,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let refusal = match (access, &caller) {
        (Access::Public, _) => None,
        (Access::Page, None) => return to_sign_in(&req),
        (Access::Page, Some(_)) => None,
        (_, None) => Some(ServiceError::Unauthenticated(
            "unauthenticated",
            "Sign in first, or send an API key as `Authorization: Bearer <key>`.".into(),
        )),
        (Access::Signed, Some(_)) => None,
        (Access::Admin, Some(c)) if c.is_admin => None,
        (Access::Admin, Some(_)) => {
            Some(ServiceError::Forbidden("Only admins may do this.".into()))
        }
        (Access::Space(id, role), Some(c)) => check_space(&auth, c, id, role).await,
    };
    let mut response = match refusal {
        Some(e) => ApiError::from(e).into_response(),
        None => {
            if let Some(caller) = &caller {
                req.extensions_mut().insert(caller.clone());
            }
            next.run(req).await
        }
    };
    // The audit log, outside this layer so it also records refusals, reads the actor here.
    if let Some(caller) = caller {
        response.extensions_mut().insert(caller);
    }
    response
}

async fn check_space(auth: &Auth, caller: &Caller, id: &str, role: Role) -> Option<ServiceError> {
    let Ok(space) = Uuid::parse_str(id) else {
        // Not an id: the handler answers 404 for the admin; strangers learn nothing more.
        return (!caller.is_admin).then_some(ServiceError::NotFound("space"));
    };
    auth.authorize(caller, space, role).await.err()
}

/// A page asked for without a session: off to the sign-in page, coming back afterwards.
fn to_sign_in(req: &Request) -> Response {
    let back = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let location = format!("/login?next={}", encode(&back));
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location)],
        "Sign in to continue.",
    )
        .into_response()
}

/// Percent-encodes everything but unreserved characters and `/`.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = "0191c1f0-0000-7000-8000-000000000000";

    fn of(method: Method, path: &str) -> Access<'_> {
        access(&method, path)
    }

    #[test]
    fn reading_searching_and_asking_need_a_viewer() {
        for (m, tail) in [
            (Method::GET, ""),
            (Method::GET, "/documents"),
            (Method::GET, "/documents/x/chunks"),
            (Method::POST, "/search"),
            (Method::POST, "/chat"),
            (Method::GET, "/chat"),
            (Method::POST, "/points/search"),
            (Method::GET, "/members"),
            (Method::DELETE, "/conversations/c"),
            (Method::PATCH, "/conversations/c"),
        ] {
            let path = format!("/api/v1/spaces/{SPACE}{tail}");
            assert_eq!(
                of(m.clone(), &path),
                Access::Space(SPACE, Role::Viewer),
                "{m} {path}"
            );
        }
    }

    #[test]
    fn changing_content_needs_an_editor_and_the_space_itself_an_owner() {
        for (m, tail, role) in [
            (Method::POST, "/documents", Role::Editor),
            (Method::DELETE, "/documents/x", Role::Editor),
            (Method::PUT, "/points", Role::Editor),
            (Method::DELETE, "/points/7", Role::Editor),
            (Method::PATCH, "", Role::Owner),
            (Method::DELETE, "", Role::Owner),
            (Method::PUT, "/members", Role::Owner),
            (Method::DELETE, "/members/u", Role::Owner),
        ] {
            let path = format!("/api/v1/spaces/{SPACE}{tail}");
            assert_eq!(
                of(m.clone(), &path),
                Access::Space(SPACE, role),
                "{m} {path}"
            );
        }
    }

    #[test]
    fn sign_in_health_and_files_are_public_and_pages_send_strangers_to_sign_in() {
        for path in [
            "/api/v1/auth/login",
            "/api/v1/auth/setup",
            "/health",
            "/health/readiness",
            "/metrics",
            "/login",
            "/pkg/kenning.wasm",
            "/favicon.svg",
            "/api/session_info123",
        ] {
            assert_eq!(of(Method::GET, path), Access::Public, "{path}");
        }
        assert_eq!(of(Method::GET, "/spaces"), Access::Page);
        assert_eq!(of(Method::GET, "/"), Access::Page);
        assert_eq!(of(Method::GET, "/api/v1/spaces"), Access::Signed);
        assert_eq!(of(Method::POST, "/v1/chat/completions"), Access::Signed);
        assert_eq!(of(Method::POST, "/mcp"), Access::Signed);
        assert_eq!(of(Method::GET, "/mcp"), Access::Signed);
        assert_eq!(of(Method::GET, "/api/v1/audit"), Access::Admin);
        assert_eq!(of(Method::POST, "/api/v1/users"), Access::Admin);
    }

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(encode("/spaces?x=1&y=a b"), "/spaces%3Fx%3D1%26y%3Da%20b");
    }
}
