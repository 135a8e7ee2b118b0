//! The one place that decides who may reach which route: it resolves the caller, puts it into
//! the request for handlers and server functions, and refuses by route class — public, signed
//! in, admin, or a role in the space the path names. Server functions name their space in the
//! body, so they check it themselves (`app::server_fns::in_space`).

use super::policy::Need;
use crate::auth::{single_user_refusal, Auth, Caller};
use crate::error::ServiceError;
use crate::http::ApiError;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kenning_api::Role;
use std::net::SocketAddr;
use std::sync::Arc;

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
    let decided = super::policy::of(&req);
    let access = decided.policy.need;
    let caller = match auth.resolve(req.headers()).await {
        Ok(caller) => caller,
        // A public route needs no credentials, so stale ones do not stop it (a probe, sign-in).
        Err(_) if access == Need::Public => None,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let refusal = match (access, &caller) {
        (Need::Public, _) => None,
        (Need::Page, None) => return to_sign_in(&req),
        (Need::Page, Some(_)) => None,
        (_, None) => Some(ServiceError::Unauthenticated(
            "unauthenticated",
            "Sign in first, or send an API key as `Authorization: Bearer <key>`.".into(),
        )),
        (Need::Signed, Some(_)) => None,
        (Need::Admin, Some(c)) if c.is_admin => None,
        (Need::Admin, Some(_)) => Some(ServiceError::Forbidden("Only admins may do this.".into())),
        (Need::Space(role), Some(c)) => {
            check_space(&auth, c, decided.space.as_deref().unwrap_or(""), role).await
        }
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
    let Some(space) = crate::domain::SpaceId::parse(id) else {
        // Not an id: the handler answers 404 for the admin; strangers learn nothing more.
        return (!caller.is_admin).then_some(ServiceError::NotFound("space"));
    };
    auth.authorize(caller, space.uuid(), role).await.err()
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

    #[test]
    fn next_paths_are_encoded() {
        assert_eq!(encode("/spaces?x=1&y=a b"), "/spaces%3Fx%3D1%26y%3Da%20b");
    }
}
