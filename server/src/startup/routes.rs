//! The router: every declared route, the UI, and the middleware stack around them.

use super::*;

/// The UI's routes, generated once per process: generating them suppresses resource loads
/// process-wide for a moment (a global flag in leptos_server), so a page whose data started
/// loading in that window on another server of the same process never finished rendering.
pub fn ui_route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

pub(super) fn router(
    state: AppState,
    config: &ServeConfig,
    limits: Arc<Limits>,
    audit: Arc<crate::http::audit::Audit>,
    auth: Arc<crate::auth::Auth>,
) -> Router {
    let backend: SharedBackend = state.service.clone();
    let leptos_routes = ui_route_list();
    let shell_options = state.leptos_options.clone();
    let request_timeout = Duration::from_secs(config.request_timeout_secs);

    let ui = Router::new()
        .leptos_routes_with_context(
            &state,
            leptos_routes,
            move || provide_context(backend.clone()),
            move || app::shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
            app::shell,
        ))
        .layer(timeout(request_timeout));

    // The outer cap on any body; the upload limit itself is enforced byte by byte in the service.
    let body_cap = usize::try_from(config.max_upload_bytes)
        .unwrap_or(usize::MAX)
        .saturating_add(1024 * 1024);
    let middleware = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(CompressionLayer::new())
        .layer(RequestBodyLimitLayer::new(body_cap));

    let bounds = crate::http::Bounds {
        request_timeout,
        upload_timeout: Duration::from_secs(config.upload_timeout_secs),
        answer_timeout: Duration::from_secs(config.generate.answer_timeout_secs.max(1)),
        max_json_bytes: config.max_json_bytes,
        max_points_bytes: config.max_points_bytes,
    };
    let mcp = crate::http::mcp_router(state.clone(), audit.clone(), &bounds);
    let (declared, policies) = crate::http::declared(&bounds, mcp).into_parts();
    declared
        .merge(ui)
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::http::csrf::Csrf::new(&config.allowed_origins)),
            crate::http::csrf::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limits,
            limits::enforce,
        ))
        // Outside the limits, so they count per account.
        .layer(axum::middleware::from_fn_with_state(
            auth,
            crate::http::guard::guard,
        ))
        // Outside the sign-in, role, rate and cross-site checks, so refused attempts are
        // recorded too (with their actor, which the sign-in layer leaves on the response).
        .layer(axum::middleware::from_fn_with_state(
            audit,
            crate::http::audit::record,
        ))
        // Outermost of the four: decides each request's policy once, for all of them.
        .layer(axum::middleware::from_fn_with_state(
            policies,
            crate::http::policy::decide,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Duration::from_millis(config.slow_request_ms),
            track_http,
        ))
        .layer(axum::middleware::from_fn(
            crate::http::openai::with_error_types,
        ))
        .layer(axum::middleware::from_fn(crate::http::security_headers))
        .layer(middleware)
}

/// Counts and times every request by its route template (bounded labels, never raw paths),
/// and logs the ones slower than `slow` (time to the response head; streams are timed apart).
async fn track_http(
    axum::extract::State(slow): axum::extract::State<Duration>,
    req: Request<axum::body::Body>,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    };
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    let took = started.elapsed();
    if took >= slow {
        tracing::warn!(
            method,
            route = %route,
            status = response.status().as_u16(),
            took_ms = took.as_millis() as u64,
            "slow request"
        );
    }
    crate::metrics::global().record_http(method, &route, response.status().as_u16(), took);
    response
}

/// The rate limits and answer cap from the configuration, shared through Redis when it is set.
pub(super) fn build_limits(l: &LimitsConfig, redis: Option<Arc<RedisLink>>) -> Limits {
    let limits = Limits::new(
        l.rate_limit_chat,
        l.rate_limit_search,
        l.rate_limit_upload,
        l.rate_limit_other,
        l.max_concurrent_chats,
    )
    .with_answer_caps(
        l.max_concurrent_chats,
        l.max_concurrent_chats_per_caller,
        Duration::from_secs(l.answer_stall_secs.max(1)),
    )
    .with_trusted_proxies(l.trusted_proxies.clone())
    .with_space_limit(l.rate_limit_space)
    .with_sign_in_limit(l.rate_limit_sign_in);
    match redis {
        None => limits,
        Some(link) => limits.with_redis(link),
    }
}
