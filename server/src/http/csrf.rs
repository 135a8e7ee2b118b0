//! Cross-site request forgery guard. A page on another site can make the user's browser send
//! a form post, a multipart upload or a server-function call to Kenning (these need no CORS
//! preflight), so every state-changing request that a browser marks as coming from another
//! origin is refused. Requests without those browser headers (curl, SDKs, other services) pass:
//! they carry no ambient browser credentials to abuse.

use crate::http::ApiError;
use axum::extract::{Request, State};
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Which origins besides the server's own may change things.
#[derive(Debug, Clone, Default)]
pub struct Csrf {
    /// `scheme://host[:port]`, lowercase, without a trailing slash.
    allowed: Vec<String>,
}

impl Csrf {
    /// A guard that also trusts these origins (for example a separately hosted front end).
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: allowed.iter().map(|o| normalise(o)).collect(),
        }
    }

    /// `Ok` when the request may change state; `Err` with the reason otherwise.
    pub fn check(
        &self,
        method: &Method,
        path: &str,
        uri_authority: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), String> {
        let safe = matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if safe && !asks_a_question(path) {
            return Ok(());
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(origin) = header(ORIGIN.as_str()) {
            let origin = normalise(origin);
            if self.allowed.contains(&origin) {
                return Ok(());
            }
            // HTTP/1.1 names the server in Host; HTTP/2 in the URI's authority.
            let host = header(HOST.as_str())
                .or(uri_authority)
                .map(str::to_ascii_lowercase);
            let authority = origin.split_once("://").map(|(_, a)| a);
            return match (authority, host) {
                (Some(a), Some(h)) if a == h => Ok(()),
                _ => Err(format!(
                    "This request came from another site ({origin}); Kenning only accepts changes \
                     from its own pages. An operator can allow that site with KENNING_ALLOWED_ORIGINS."
                )),
            };
        }
        match header("sec-fetch-site") {
            Some("same-origin") | Some("none") | None => Ok(()),
            Some(site) => Err(format!(
                "This request came from another site (Sec-Fetch-Site: {site}); Kenning only \
                 accepts changes from its own pages."
            )),
        }
    }
}

/// A question by GET (for `EventSource`) is not safe despite its method: it starts a
/// conversation and spends model time, so another site must not be able to send one.
fn asks_a_question(path: &str) -> bool {
    path.starts_with("/api/v1/spaces/") && path.trim_end_matches('/').ends_with("/chat")
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The middleware: refuses cross-site state changes with 403 `cross_site_request`.
pub async fn guard(State(csrf): State<Arc<Csrf>>, req: Request, next: Next) -> Response {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_ascii_lowercase());
    if let Err(reason) = csrf.check(
        req.method(),
        req.uri().path(),
        authority.as_deref(),
        req.headers(),
    ) {
        tracing::warn!(method = %req.method(), path = %req.uri().path(), "cross-site request refused");
        return ApiError::new(StatusCode::FORBIDDEN, "cross_site_request", reason).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_cross_site_browser_writes_are_refused() {
        let csrf = Csrf::new(&["https://Front.example/".to_string()]);
        let post = Method::POST;
        let own = [
            ("host", "kenning.local:3000"),
            ("origin", "http://kenning.local:3000"),
        ];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&own))
            .is_ok());
        let evil = [
            ("host", "kenning.local:3000"),
            ("origin", "https://evil.example"),
        ];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&evil))
            .is_err());
        assert!(
            csrf.check(&Method::GET, "/api/v1/spaces", None, &headers(&evil))
                .is_ok(),
            "reads pass"
        );
        // A sandboxed frame or a redirect chain sends `Origin: null`.
        let null = [("host", "kenning.local:3000"), ("origin", "null")];
        assert!(csrf
            .check(&Method::DELETE, "/api/v1/spaces", None, &headers(&null))
            .is_err());
        let allowed = [
            ("host", "kenning.local:3000"),
            ("origin", "https://front.example"),
        ];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&allowed))
            .is_ok());
        // Another port is another origin.
        let port = [
            ("host", "kenning.local:3000"),
            ("origin", "http://kenning.local:4000"),
        ];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&port))
            .is_err());
        // HTTP/2: no Host header, the authority is in the URI.
        let h2 = [("origin", "https://kenning.local")];
        assert!(csrf
            .check(
                &post,
                "/api/v1/spaces",
                Some("kenning.local"),
                &headers(&h2)
            )
            .is_ok());
        // Without Origin, the fetch metadata decides; without either it is not a browser.
        let cross = [("sec-fetch-site", "cross-site")];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&cross))
            .is_err());
        let sibling = [("sec-fetch-site", "same-site")];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&sibling))
            .is_err());
        let same = [("sec-fetch-site", "same-origin")];
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &headers(&same))
            .is_ok());
        assert!(csrf
            .check(&post, "/api/v1/spaces", None, &HeaderMap::new())
            .is_ok());
        // A question by GET is a change too.
        let chat = "/api/v1/spaces/0191c1f0-0000-7000-8000-000000000000/chat";
        assert!(csrf
            .check(&Method::GET, chat, None, &headers(&evil))
            .is_err());
        assert!(csrf
            .check(&Method::GET, chat, None, &headers(&cross))
            .is_err());
        assert!(csrf
            .check(&Method::GET, chat, None, &headers(&same))
            .is_ok());
        assert!(csrf.check(&Method::GET, chat, None, &headers(&own)).is_ok());
    }
}
