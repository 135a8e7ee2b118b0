//! The audit log: every change asked of the API or the UI (creates, renames, uploads, deletes,
//! points writes), refused ones included, with when, from where and how it ended. Entries are
//! written by one background task from a bounded queue, so a slow database never holds up the
//! request that caused them; if the queue is full the entry is counted as dropped and logged.
//! Strangers cannot fill it: refusals of requests without an account are sampled, targets are
//! ids parsed from the path (never raw segments), and entries past the retention are deleted.

use crate::http::limits::Limits;
use crate::store::{MetadataStore, NewAudit};
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Entries waiting to be written at most.
const QUEUE: usize = 1_024;
/// Refusals of requests without an account recorded per minute at most, all such callers
/// together; the rest are only counted.
const ANONYMOUS_REFUSALS_PER_MINUTE: u32 = 60;
/// How often entries past the retention are deleted.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Where the middleware hands entries to the writer.
pub struct Audit {
    tx: mpsc::Sender<NewAudit>,
    limits: Arc<Limits>,
    anonymous: DefaultDirectRateLimiter,
}

impl Audit {
    /// Starts the writer task on the current runtime; it ends when the sender is dropped. Every
    /// hour it deletes entries older than `retention` (`None` keeps them all).
    pub fn start(
        store: Arc<dyn MetadataStore>,
        limits: Arc<Limits>,
        retention: Option<Duration>,
    ) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<NewAudit>(QUEUE);
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(SWEEP_EVERY);
            loop {
                tokio::select! {
                    entry = rx.recv() => {
                        let Some(entry) = entry else { break };
                        if let Err(e) = store.record_audit(&entry).await {
                            crate::metrics::global().record_audit_dropped();
                            tracing::warn!(error = %e, action = %entry.action, "audit entry not written");
                        }
                    }
                    _ = sweep.tick() => {
                        let Some(keep) = retention.and_then(|r| chrono::Duration::from_std(r).ok()) else {
                            continue;
                        };
                        match store.delete_audit_before(chrono::Utc::now() - keep).await {
                            Ok(0) => {}
                            Ok(n) => tracing::info!(entries = n, "audit entries past the retention deleted"),
                            Err(e) => tracing::warn!(error = %e, "deleting old audit entries failed"),
                        }
                    }
                }
            }
        });
        let quota = Quota::per_minute(
            NonZeroU32::new(ANONYMOUS_REFUSALS_PER_MINUTE).unwrap_or(NonZeroU32::MIN),
        );
        Arc::new(Self {
            tx,
            limits,
            anonymous: RateLimiter::direct(quota),
        })
    }
}

impl Audit {
    /// Records a change made through a tool call (MCP), which one route carries for many
    /// operations, so the middleware cannot tell changes from reads.
    pub fn note(
        &self,
        request: &axum::http::request::Parts,
        caller: &crate::auth::Caller,
        action: &str,
        target_type: &'static str,
        target_id: Option<String>,
        status: u16,
    ) {
        let (ip, request_id) = self.origin(&request.extensions, &request.headers);
        self.send(NewAudit {
            actor: caller.user_id.clone(),
            action: action.to_string(),
            target_type: Some(target_type),
            target_id: target_id.as_deref().and_then(target_id_of),
            ip: Some(ip),
            details: json!({ "status": status, "request_id": request_id }),
        });
    }

    /// Where a request came from, as entries record it: the client's address (through trusted
    /// proxies) and the request id.
    fn origin(
        &self,
        extensions: &axum::http::Extensions,
        headers: &axum::http::HeaderMap,
    ) -> (String, Option<String>) {
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (
            self.limits.client_address(peer, headers).to_string(),
            request_id,
        )
    }

    /// Queues an entry for the writer; a full queue drops it, counted and logged.
    fn send(&self, entry: NewAudit) {
        if self.tx.try_send(entry).is_err() {
            crate::metrics::global().record_audit_dropped();
            tracing::warn!("audit queue full; an entry was dropped");
        }
    }
}

/// A target id as the route names it, kept only when it is an id (a UUID, or a point id of up
/// to 64 letters, digits, `-` and `_`); anything else is not worth a row.
fn target_id_of(segment: &str) -> Option<String> {
    if let Ok(id) = uuid::Uuid::parse_str(segment) {
        return Some(id.to_string());
    }
    let plain = !segment.is_empty()
        && segment.len() <= 64
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| segment.to_string())
}

/// What a request changes, if anything worth auditing: `(action, target type, target id)`.
fn classify(
    method: &Method,
    audited: bool,
    route: &str,
    path: &str,
) -> Option<(String, Option<&'static str>, Option<String>)> {
    if !audited
        || matches!(
            *method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        )
    {
        return None;
    }
    let action = format!("{method} {route}");
    if route.starts_with("/api/v1/") {
        let Some((kind, param)) = [
            ("point", "{pid}"),
            ("conversation", "{conversation_id}"),
            ("document", "{document_id}"),
            ("space", "{id}"),
            ("user", "{user_id}"),
        ]
        .into_iter()
        .find(|(_, param)| route.contains(param)) else {
            return Some((action, None, None));
        };
        let position = route.split('/').position(|segment| segment == param)?;
        let id = path.split('/').nth(position).and_then(target_id_of);
        return Some((action, Some(kind), id));
    }
    // Server functions the UI calls (their policy says which change anything).
    route.starts_with("/api/").then_some((action, None, None))
}

/// The middleware: records each change after it is answered, with its status.
pub async fn record(State(audit): State<Arc<Audit>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let target = route.as_deref().and_then(|route| {
        let audited = super::policy::of(&req).policy.audited;
        classify(req.method(), audited, route, req.uri().path())
    });
    let Some((action, target_type, target_id)) = target else {
        return next.run(req).await;
    };
    let (ip, request_id) = audit.origin(req.extensions(), req.headers());
    let response = next.run(req).await;
    // Known once the sign-in layer inside has run; it leaves the caller on the response.
    let caller = response.extensions().get::<crate::auth::Caller>();
    let actor = caller.and_then(|c| c.user_id.clone());
    // A stranger's refused attempt: worth a sample, not a row each (nothing else bounds them).
    if caller.is_none() && response.status().is_client_error() && audit.anonymous.check().is_err() {
        crate::metrics::global().record_audit_dropped();
        return response;
    }
    let entry = NewAudit {
        actor,
        action,
        target_type,
        target_id,
        ip: Some(ip),
        details: json!({ "status": response.status().as_u16(), "request_id": request_id }),
    };
    audit.send(entry);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_classified_and_reads_are_not() {
        let policies = crate::http::test_policies();
        let c = |m: Method, route: &str, path: &str| {
            classify(&m, policies.decide(&m, path).policy.audited, route, path)
        };
        let space = "0190f5a2-7c1e-7000-8000-000000000000";
        assert_eq!(
            c(
                Method::DELETE,
                "/api/v1/spaces/{id}",
                &format!("/api/v1/spaces/{space}")
            ),
            Some((
                "DELETE /api/v1/spaces/{id}".into(),
                Some("space"),
                Some(space.into())
            ))
        );
        assert_eq!(
            c(
                Method::DELETE,
                "/api/v1/spaces/{id}/documents/{document_id}",
                &format!("/api/v1/spaces/{space}/documents/d1")
            ),
            Some((
                "DELETE /api/v1/spaces/{id}/documents/{document_id}".into(),
                Some("document"),
                Some("d1".into())
            ))
        );
        // A huge or odd segment is no id: the entry keeps its action, not the text.
        let long = "x".repeat(60_000);
        assert_eq!(
            c(
                Method::DELETE,
                "/api/v1/spaces/{id}/documents/{document_id}",
                &format!("/api/v1/spaces/{space}/documents/{long}")
            )
            .and_then(|(_, _, id)| id),
            None
        );
        assert_eq!(
            target_id_of("{0190F5A2-7C1E-7000-8000-000000000000}").as_deref(),
            Some(space)
        );
        assert_eq!(target_id_of("a b"), None);
        assert_eq!(
            c(Method::POST, "/api/v1/spaces", "/api/v1/spaces"),
            Some(("POST /api/v1/spaces".into(), None, None))
        );
        assert!(c(Method::GET, "/api/v1/spaces/{id}", "/api/v1/spaces/x").is_none());
        assert!(c(
            Method::POST,
            "/api/v1/spaces/{id}/search",
            "/api/v1/spaces/x/search"
        )
        .is_none());
        assert!(c(
            Method::POST,
            "/api/v1/spaces/{id}/chat",
            "/api/v1/spaces/x/chat"
        )
        .is_none());
        assert!(c(Method::POST, "/v1/chat/completions", "/v1/chat/completions").is_none());
        assert!(c(Method::POST, "/api/delete_space123", "/api/delete_space123").is_some());
        assert!(c(Method::POST, "/api/list_spaces123", "/api/list_spaces123").is_none());
    }
}
