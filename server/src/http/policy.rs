//! Who may call a route, which rate limit it counts against and whether it is audited: declared
//! once, where the route is added ([`Routes`]), and looked up once per request ([`decide`]) by
//! the access guard, the rate limits and the audit log alike. Nothing else reads the URL to
//! decide access; a route added without a policy does not compile.

use super::AppState;
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{on, MethodFilter};
use axum::Router;
use kenning_api::Role;
use std::collections::HashMap;
use std::sync::Arc;

/// Which limit a request counts against: answers cost far more than reads, so each class has its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Chat,
    Search,
    Upload,
    Other,
    /// Sign-in and first-account attempts, limited by default against password guessing.
    SignIn,
}

impl RouteClass {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Search => "search",
            Self::Upload => "upload",
            Self::Other => "other",
            Self::SignIn => "sign_in",
        }
    }

    /// Its slot in per-class tables.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What a route needs of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Anyone: health, metrics, the OpenAPI description, sign-in, static files, server
    /// functions (which check the space they name themselves, through the same `authorize`).
    Public,
    /// A UI page: strangers are sent to the sign-in page.
    Page,
    /// Any signed-in caller.
    Signed,
    /// Admins only.
    Admin,
    /// At least this role in the space the route's `{id}` names.
    Space(Role),
}

/// A route's whole rule: access, rate-limit class (`None`: never limited) and whether a change
/// through it is written to the audit log (reads never are).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub need: Need,
    pub class: Option<RouteClass>,
    pub audited: bool,
}

impl Policy {
    const fn of(need: Need) -> Self {
        Self {
            need,
            class: Some(RouteClass::Other),
            audited: true,
        }
    }

    /// Open to anyone.
    pub const fn public() -> Self {
        Self::of(Need::Public)
    }

    /// Any signed-in caller.
    pub const fn signed() -> Self {
        Self::of(Need::Signed)
    }

    /// Admins only.
    pub const fn admin() -> Self {
        Self::of(Need::Admin)
    }

    /// At least `role` in the space the path names.
    pub const fn space(role: Role) -> Self {
        Self::of(Need::Space(role))
    }

    /// Counts against `class` instead of the ordinary limit.
    pub const fn class(self, class: RouteClass) -> Self {
        Self {
            class: Some(class),
            ..self
        }
    }

    /// Never rate-limited (probes and scrapes).
    pub const fn unlimited(self) -> Self {
        Self {
            class: None,
            ..self
        }
    }

    /// A POST that only reads (a search, a question): nothing to audit.
    pub const fn reads(self) -> Self {
        Self {
            audited: false,
            ..self
        }
    }
}

/// One declared route.
#[derive(Clone, Debug)]
struct Rule {
    path: String,
    /// `None`: every method (a service mounted whole, such as MCP).
    method: Option<Method>,
    policy: Policy,
}

/// An axum router whose every route carries its policy; merged and nested like a router, then
/// split into the router and the [`Table`] the middleware reads.
pub struct Routes {
    router: Router<AppState>,
    rules: Vec<Rule>,
}

impl Default for Routes {
    fn default() -> Self {
        Self::new()
    }
}

impl Routes {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            rules: Vec::new(),
        }
    }

    /// Adds `handler` for `method` on `path` under `policy`.
    pub fn route<H, T>(mut self, method: Method, path: &str, policy: Policy, handler: H) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            Method::GET => MethodFilter::GET,
            Method::POST => MethodFilter::POST,
            Method::PUT => MethodFilter::PUT,
            Method::PATCH => MethodFilter::PATCH,
            Method::DELETE => MethodFilter::DELETE,
            _ => unreachable!("routes are declared with GET, POST, PUT, PATCH or DELETE"),
        };
        self.router = self.router.route(path, on(filter, handler));
        self.rules.push(Rule {
            path: path.to_string(),
            method: Some(method),
            policy,
        });
        self
    }

    pub fn get<H: Handler<T, AppState>, T: 'static>(self, p: &str, r: Policy, h: H) -> Self {
        self.route(Method::GET, p, r, h)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(self, p: &str, r: Policy, h: H) -> Self {
        self.route(Method::POST, p, r, h)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(self, p: &str, r: Policy, h: H) -> Self {
        self.route(Method::PUT, p, r, h)
    }

    pub fn patch<H: Handler<T, AppState>, T: 'static>(self, p: &str, r: Policy, h: H) -> Self {
        self.route(Method::PATCH, p, r, h)
    }

    pub fn delete<H: Handler<T, AppState>, T: 'static>(self, p: &str, r: Policy, h: H) -> Self {
        self.route(Method::DELETE, p, r, h)
    }

    /// Mounts a whole service on `path` (every method) under `policy`.
    pub fn service<S>(mut self, path: &str, policy: Policy, service: S) -> Self
    where
        S: tower::Service<Request, Error = std::convert::Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.router = self.router.route_service(path, service);
        self.rules.push(Rule {
            path: path.to_string(),
            method: None,
            policy,
        });
        self
    }

    /// Both sets of routes.
    pub fn merge(mut self, other: Routes) -> Self {
        self.router = self.router.merge(other.router);
        self.rules.extend(other.rules);
        self
    }

    /// `other`'s routes under `prefix`.
    pub fn nest(mut self, prefix: &str, other: Routes) -> Self {
        self.router = self.router.nest(prefix, other.router);
        self.rules.extend(other.rules.into_iter().map(|rule| Rule {
            path: format!("{prefix}{}", rule.path),
            ..rule
        }));
        self
    }

    /// Changes the router (layers, fallbacks); the policies stay as declared.
    pub fn map(mut self, f: impl FnOnce(Router<AppState>) -> Router<AppState>) -> Self {
        self.router = f(self.router);
        self
    }

    /// The router, and the table of its policies.
    pub fn into_parts(self) -> (Router<AppState>, Arc<Table>) {
        let mut paths: HashMap<String, Vec<(Option<Method>, Policy)>> = HashMap::new();
        for rule in self.rules {
            paths
                .entry(rule.path)
                .or_default()
                .push((rule.method, rule.policy));
        }
        let mut table = matchit::Router::new();
        for (path, methods) in paths {
            if let Err(e) = table.insert(path.clone(), methods) {
                panic!("route {path} cannot be declared: {e}");
            }
        }
        (self.router, Arc::new(Table(table)))
    }
}

/// Every declared route's policies, by path template.
pub struct Table(matchit::Router<Vec<(Option<Method>, Policy)>>);

/// What the middleware decided for one request, put into its extensions for the layers inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub policy: Policy,
    /// The space the path names (its `{id}`), exactly as written.
    pub space: Option<String>,
}

impl Table {
    /// The policy for a request. Routes nobody declared (pages, files, server functions, unknown
    /// API paths) get the rules below, which never open more than a declared route does.
    pub fn decide(&self, method: &Method, path: &str) -> Decided {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        if let Ok(found) = self.0.at(path) {
            let declared = found
                .value
                .iter()
                .find(|(m, _)| m.as_ref().is_none_or(|m| m == method));
            // A method the path does not have is answered 405 by the router; until then it is
            // held to the loosest rule the path declares, which tells no one more than that does.
            let loosest = || {
                found
                    .value
                    .iter()
                    .map(|(_, p)| p.need)
                    .min_by_key(|need| strictness(*need))
                    .map(|need| Policy {
                        need,
                        class: Some(RouteClass::Other),
                        audited: false,
                    })
            };
            if let Some(policy) = declared.map(|(_, p)| *p).or_else(loosest) {
                let space = matches!(policy.need, Need::Space(_))
                    .then(|| found.params.get("id").map(str::to_string))
                    .flatten();
                return Decided { policy, space };
            }
        }
        Decided {
            policy: undeclared(method, path),
            space: None,
        }
    }
}

/// How much a need asks of a caller, for picking the loosest of a path's rules.
fn strictness(need: Need) -> u8 {
    match need {
        Need::Public => 0,
        Need::Page | Need::Signed => 1,
        Need::Space(Role::Viewer) => 2,
        Need::Space(Role::Editor) => 3,
        Need::Space(Role::Owner) => 4,
        Need::Admin => 5,
    }
}

/// The rule for a path no route declares: an unknown API path needs a signed-in caller (and
/// answers 404), a server function checks its own space, a file or the sign-in page is public,
/// and any other page needs a session.
fn undeclared(method: &Method, path: &str) -> Policy {
    if path.starts_with("/api/v1/")
        || path == "/v1"
        || path.starts_with("/v1/")
        || path.starts_with("/mcp/")
    {
        return Policy::signed().reads();
    }
    if let Some(name) = path.strip_prefix("/api/") {
        // The search page's server function runs the same retrieval as the REST search.
        let class = if name.starts_with("search_space") {
            RouteClass::Search
        } else {
            RouteClass::Other
        };
        let changes = ["create", "update", "delete", "rename", "upload", "remove"];
        let audited = changes.iter().any(|verb| name.starts_with(verb));
        return Policy {
            need: Need::Public,
            class: Some(class),
            audited,
        };
    }
    let file = path
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains('.'));
    let need = if path.starts_with("/pkg/")
        || path.starts_with("/health")
        || path == "/metrics"
        || path == "/login"
        || file
    {
        Need::Public
    } else if method == Method::GET {
        Need::Page
    } else {
        Need::Signed
    };
    Policy {
        need,
        class: None,
        audited: false,
    }
}

/// The middleware that decides once; the guard, limits and audit inside read the result.
pub async fn decide(State(table): State<Arc<Table>>, mut req: Request, next: Next) -> Response {
    let decided = table.decide(req.method(), req.uri().path());
    req.extensions_mut().insert(decided);
    next.run(req).await
}

/// The decision for a request; one that skipped the middleware (a test calling a layer alone)
/// gets the strictest answer the table would give an unknown route.
pub fn of(req: &Request) -> Decided {
    req.extensions()
        .get::<Decided>()
        .cloned()
        .unwrap_or(Decided {
            policy: Policy::signed().reads(),
            space: None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACE: &str = "0191c1f0-0000-7000-8000-000000000000";

    fn of(method: Method, path: &str) -> Decided {
        crate::http::test_policies().decide(&method, path)
    }

    fn need(method: Method, path: &str) -> Need {
        of(method, path).policy.need
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
            let decided = of(m.clone(), &path);
            assert_eq!(decided.policy.need, Need::Space(Role::Viewer), "{m} {path}");
            assert_eq!(decided.space.as_deref(), Some(SPACE), "{m} {path}");
        }
    }

    #[test]
    fn changing_content_needs_an_editor_and_the_space_itself_an_owner() {
        for (m, tail, role) in [
            (Method::POST, "/documents", Role::Editor),
            (Method::DELETE, "/documents/x", Role::Editor),
            (Method::PUT, "/points", Role::Editor),
            (Method::DELETE, "/points/7", Role::Editor),
            (Method::POST, "/sources", Role::Editor),
            (Method::POST, "/sources/s/sync", Role::Editor),
            (Method::PATCH, "", Role::Owner),
            (Method::DELETE, "", Role::Owner),
            (Method::PUT, "/members", Role::Owner),
            (Method::DELETE, "/members/u", Role::Owner),
        ] {
            let path = format!("/api/v1/spaces/{SPACE}{tail}");
            assert_eq!(need(m.clone(), &path), Need::Space(role), "{m} {path}");
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
            "/api/openapi.json",
        ] {
            assert_eq!(need(Method::GET, path), Need::Public, "{path}");
        }
        assert_eq!(need(Method::POST, "/api/v1/auth/login"), Need::Public);
        assert_eq!(need(Method::GET, "/spaces"), Need::Page);
        assert_eq!(need(Method::GET, "/"), Need::Page);
        assert_eq!(need(Method::HEAD, "/spaces"), Need::Page);
        assert_eq!(need(Method::GET, "/api/v1/spaces"), Need::Signed);
        assert_eq!(need(Method::POST, "/v1/chat/completions"), Need::Signed);
        assert_eq!(need(Method::POST, "/mcp"), Need::Signed);
        assert_eq!(need(Method::GET, "/mcp"), Need::Signed);
        assert_eq!(need(Method::GET, "/api/v1/audit"), Need::Admin);
        assert_eq!(need(Method::POST, "/api/v1/users"), Need::Admin);
        assert_eq!(need(Method::DELETE, "/api/v1/users/u"), Need::Admin);
    }

    #[test]
    fn what_no_route_declares_is_never_more_open_than_a_declared_route() {
        // Unknown API paths, and known ones with a method they do not have, need a caller.
        for (m, path) in [
            (Method::GET, "/api/v1/nothing"),
            (Method::PUT, "/api/v1/spaces"),
            (Method::GET, &format!("/api/v1/spaces/{SPACE}/nothing")),
            (Method::GET, "/v1/nothing"),
            (Method::POST, "/mcp/x"),
            (Method::GET, "/mcp/x"),
            (Method::POST, "/spaces"),
        ] {
            assert_eq!(need(m.clone(), path), Need::Signed, "{m} {path}");
        }
        // A method a declared path lacks (405) is held to the loosest rule of that path.
        assert_eq!(need(Method::GET, "/api/v1/auth/login"), Need::Public);
        assert_eq!(
            need(Method::PUT, &format!("/api/v1/spaces/{SPACE}")),
            Need::Space(Role::Viewer)
        );
    }

    #[test]
    fn requests_are_classified_by_what_they_cost() {
        use RouteClass::*;
        let cases = [
            (Method::POST, "/api/v1/spaces/a/chat", Some(Chat)),
            (Method::GET, "/api/v1/spaces/a/chat", Some(Chat)),
            (Method::POST, "/v1/chat/completions", Some(Chat)),
            (Method::POST, "/mcp", Some(Chat)),
            (Method::POST, "/api/v1/spaces/a/search", Some(Search)),
            (Method::POST, "/api/v1/spaces/a/points/search", Some(Search)),
            (Method::POST, "/api/v1/memories/search", Some(Search)),
            (Method::POST, "/api/v1/spaces/a/documents", Some(Upload)),
            (Method::PUT, "/api/v1/spaces/a/points", Some(Upload)),
            (Method::GET, "/api/v1/spaces/a/documents", Some(Other)),
            (Method::PUT, "/api/v1/memories", Some(Other)),
            (Method::GET, "/v1/models", Some(Other)),
            (Method::POST, "/api/v1/auth/login", Some(SignIn)),
            (Method::POST, "/api/v1/auth/setup", Some(SignIn)),
            (Method::POST, "/api/v1/auth/logout", Some(Other)),
            (Method::GET, "/health", None),
            (Method::GET, "/metrics", None),
            (Method::GET, "/chat", None),
            (Method::GET, "/pkg/kenning.wasm", None),
            (Method::POST, "/v1/embeddings", Some(Search)),
            (Method::POST, "/api/search_space12345", Some(Search)),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                of(method.clone(), path).policy.class,
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn searches_questions_and_reads_are_not_audited_changes_are() {
        let audited = |m: Method, path: &str| of(m, path).policy.audited;
        assert!(audited(Method::DELETE, &format!("/api/v1/spaces/{SPACE}")));
        assert!(audited(Method::POST, "/api/v1/auth/login"));
        assert!(audited(Method::PUT, "/api/v1/memories"));
        assert!(!audited(Method::POST, "/api/v1/spaces/x/search"));
        assert!(!audited(Method::POST, "/api/v1/spaces/x/chat"));
        assert!(!audited(Method::POST, "/api/v1/memories/search"));
        assert!(!audited(Method::POST, "/v1/chat/completions"));
        assert!(audited(Method::POST, "/api/delete_space123"));
        assert!(!audited(Method::POST, "/api/list_spaces123"));
    }
}
