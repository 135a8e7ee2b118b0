//! Building and running the server: one path shared by `kenning serve` and the tests.

use crate::chat::{Chat, ChatSettings, Price};
use crate::config::{
    EmbedderKind, GenerateConfig, GeneratorKind, IngestConfig, LimitsConfig, ServeConfig,
    StoreConfig, VectorBackend,
};
use crate::embed::onnx::OnnxFiles;
use crate::embed::{Embedder, LaneSettings, OpenAiEmbedSettings, OpenAiEmbedder};
use crate::generate::{
    Chain, ChainSettings, Extractive, Generator, LlmSettings, LocalGenerator, OpenAiGenerator,
    OpenAiSettings,
};
use crate::http::limits::{self, Limits};
use crate::http::{timeout, AppState};
use crate::ingest::chunk::Chunker;
use crate::ingest::Indexing;
use crate::ingest::{Worker, WorkerSettings};
use crate::points::{
    EdgePointStore, EmbeddedVectorStore, PgPointStore, PointStore, QdrantPointStore,
    SqlitePointStore,
};
use crate::redis_link::RedisLink;
use crate::retrieve::Retriever;
use crate::service::Service;
use crate::store;
use crate::store::MetadataStore;
use crate::store::Pool;
use crate::vector::{
    EdgeVectorStore, PgVectorStore, QdrantSettings, QdrantVectorStore, VectorStore,
};
use anyhow::Context;
use app::backend::SharedBackend;
use axum::http::{HeaderName, Request};
use axum::Router;
use leptos::prelude::{provide_context, Env, LeptosOptions};
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use secrecy::ExposeSecret;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    shutdown_grace: Duration,
    drain: Duration,
    health: Arc<crate::health::HealthCache>,
    connection_limits: crate::serve::ConnectionLimits,
    workers: Vec<JoinHandle<()>>,
    stop_workers: CancellationToken,
}

impl Application {
    /// Opens the store, applies migrations, binds the address and assembles the routes.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        let data_dir = config.store.data_dir.clone();
        tokio::fs::create_dir_all(&data_dir)
            .await
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        // Leftovers of uploads cut off by a crash: never referenced by a row, safe to drop.
        let _ = tokio::fs::remove_dir_all(data_dir.join("tmp")).await;

        let engine = Engine::open(&config.store, &config.ingest).await?;
        let store = engine.store.clone();

        let wake = Arc::new(Notify::new());
        let redis = match &config.limits.redis_url {
            None => None,
            Some(url) => {
                let link = RedisLink::open(
                    url.expose_secret(),
                    Duration::from_millis(config.limits.redis_timeout_ms.max(1)),
                )
                .map_err(anyhow::Error::msg)?;
                link.spawn_connect();
                Some(link)
            }
        };
        let mut retriever = Retriever::new(
            store.clone(),
            engine.vectors.clone(),
            engine.embedder.clone(),
            crate::retrieve::CacheSizes {
                results: config.search_cache_capacity,
                query_vectors: config.query_cache_capacity,
            },
        );
        if let Some(link) = &redis {
            retriever = retriever.with_redis(link.clone());
        }
        let retriever = Arc::new(retriever);
        let chain = Arc::new(build_chain(&config.generate, &config.ingest.models_dir).await?);
        tracing::info!(generators = ?chain.names(), "answer chain ready");
        let mut chat = Chat::new(
            store.clone(),
            retriever.clone(),
            chain.clone(),
            chat_settings(&config.generate, config.ingest.embedder),
        );
        if let Some(link) = &redis {
            chat = chat.with_redis(link.clone());
        }
        let chat = Arc::new(chat);
        let limits = Arc::new(build_limits(&config.limits, redis.clone()));
        limits.spawn_sweeper(Duration::from_secs(60));
        let mut service = Service::new(
            store,
            engine.vectors.clone(),
            retriever,
            data_dir.clone(),
            config.max_upload_bytes,
            config.ingest.job_max_attempts,
            wake.clone(),
        )
        .with_chain(chain)
        .with_points(engine.points.clone())
        .with_sources(crate::sources::SourceSettings {
            roots: config.source_roots.clone(),
            allow_loopback: config.source_allow_loopback,
        });
        if let Some(link) = redis {
            service = service.with_redis(link);
        }
        // Bound before the sign-in layer is built: single-user mode answers only on this port.
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        let addr = listener.local_addr()?;
        let required = config.auth.requires_sign_in(config.addr)?;
        let setup_token = setup_token(&config, engine.store.as_ref(), required, addr).await?;
        let auth = Arc::new(crate::auth::Auth::new(
            engine.store.clone(),
            required,
            Duration::from_secs(config.session_ttl_hours.max(1) * 3600),
            addr.port(),
            setup_token.as_deref(),
        )?);
        if auth.required() {
            tracing::info!("sign-in required: accounts, sessions and API keys");
        } else {
            tracing::warn!("single-user mode: no sign-in (this machine only)");
        }
        let service = Arc::new(
            service
                .with_auth(auth.clone())
                .with_queue_cap(config.max_queued_jobs),
        );
        let stop_workers = CancellationToken::new();
        spawn_source_scheduler(service.clone(), stop_workers.clone());
        let workers = spawn_workers(
            &engine,
            data_dir,
            &config.ingest,
            config.ingest.ingest_workers,
            wake,
            stop_workers.clone(),
        )?;

        let leptos_options = LeptosOptions::builder()
            .output_name("kenning")
            .site_root(config.site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .env(Env::PROD)
            .build();
        let health: Arc<crate::health::HealthCache> = Arc::default();
        let state = AppState {
            service: service.clone(),
            chat,
            embedder: engine.embedder.clone(),
            points: engine.points.clone(),
            auth: auth.clone(),
            health: health.clone(),
            point_lengths: Arc::new(crate::http::LengthQuota::new(
                usize::try_from(config.max_point_lengths_per_account).unwrap_or(usize::MAX),
            )),
            leptos_options: leptos_options.clone(),
        };
        let retention = (config.audit_retention_days > 0)
            .then(|| Duration::from_secs(config.audit_retention_days.saturating_mul(86_400)));
        let audit =
            crate::http::audit::Audit::start(engine.store.clone(), limits.clone(), retention);
        let router = routes(state, &config, limits, audit, auth);

        Ok(Self {
            listener,
            router,
            addr,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            drain: Duration::from_secs(config.drain_secs),
            health,
            connection_limits: crate::serve::ConnectionLimits {
                header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
                max_header_bytes: config.max_header_bytes,
                max_connections: config.max_connections,
                max_connections_per_ip: config.max_connections_per_ip,
            },
            workers,
            stop_workers,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish within the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        let serve = crate::serve::serve(
            self.listener,
            self.router,
            self.connection_limits,
            async move { stopped.notified().await },
        );
        let mut server: tokio::task::JoinHandle<()> = tokio::spawn(serve);
        tokio::select! {
            result = &mut server => {
                result.context("server task")?;
                anyhow::bail!("the server stopped accepting connections");
            }
            () = shutdown => {}
        }
        // Not ready from now on; requests are still served while load balancers notice.
        self.health.start_draining();
        if !self.drain.is_zero() {
            tracing::info!(drain = ?self.drain, "shutting down; readiness answers 503 while requests drain");
            tokio::select! {
                () = tokio::time::sleep(self.drain) => {}
                result = &mut server => {
                    result.context("server task")?;
                    anyhow::bail!("the server stopped accepting connections");
                }
            }
        }
        tracing::info!(grace = ?self.shutdown_grace, "shutting down; finishing in-flight requests and jobs");
        stop.notify_one();
        self.stop_workers.cancel();
        let workers = futures::future::join_all(self.workers);
        let drained = async {
            let (served, _) = tokio::join!(server, workers);
            served
        };
        match tokio::time::timeout(self.shutdown_grace, drained).await {
            Ok(result) => result.context("server task"),
            Err(_) => {
                // A job cut off here is not lost: its lease expires and another worker retries it.
                tracing::warn!("grace period over with work still running; exiting");
                Ok(())
            }
        }
    }
}

/// The token that creates the first account from another machine: the configured one, or, on a
/// networked server with no account yet, a fresh one printed in the log for the operator.
async fn setup_token(
    config: &ServeConfig,
    store: &dyn MetadataStore,
    required: bool,
    addr: SocketAddr,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = &config.setup_token {
        return Ok(Some(token.expose_secret().to_string()));
    }
    if !required || store.count_users().await.context("counting accounts")? > 0 {
        return Ok(None);
    }
    let token = crate::auth::Auth::new_setup_token()?;
    tracing::warn!(
        setup_token = %token,
        "no account exists yet: open http://{addr}/login to create the admin account; from another \
         machine enter this setup token there (it works until the first account exists)"
    );
    Ok(Some(token))
}

/// The UI's routes, generated once per process: generating them suppresses resource loads
/// process-wide for a moment (a global flag in leptos_server), so a page whose data started
/// loading in that window on another server of the same process never finished rendering.
pub fn ui_route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(app::App)).clone()
}

fn routes(
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

/// The embedder the configuration asks for: the local model, or a provider checked at start.
async fn open_embedder(ingest: &IngestConfig) -> anyhow::Result<Arc<dyn Embedder>> {
    let settings = LaneSettings {
        ingest_threads: ingest.embed_ingest_threads.max(1),
        batch_size: usize::from(ingest.embed_batch.max(1)),
        ..LaneSettings::default()
    };
    match ingest.embedder {
        EmbedderKind::Onnx => {
            let mut files = OnnxFiles::in_models_dir(&ingest.models_dir);
            if let Some(lib) = &ingest.onnxruntime_lib {
                files.runtime = lib.clone();
            }
            let embedder = tokio::task::spawn_blocking(move || {
                crate::embed::onnx::load(&files, settings).context(
                    "loading the int8 embedding model on ONNX Runtime (run scripts/fetch-models.sh, \
                     or start with --embedder candle)",
                )
            })
            .await??;
            Ok(Arc::new(embedder))
        }
        EmbedderKind::Candle => {
            let model_dir = ingest.models_dir.join("all-MiniLM-L6-v2");
            let embedder = tokio::task::spawn_blocking(move || {
                crate::embed::local::load(&model_dir, settings).with_context(|| {
                    format!(
                        "loading the embedding model from {} (run scripts/fetch-models.sh)",
                        model_dir.display()
                    )
                })
            })
            .await??;
            Ok(Arc::new(embedder))
        }
        EmbedderKind::Openai => {
            let base_url = ingest.embed_base_url.clone().context(
                "--embedder openai needs --embed-base-url (KENNING_EMBED_BASE_URL), e.g. https://api.openai.com/v1",
            )?;
            let embedder = OpenAiEmbedder::connect(OpenAiEmbedSettings {
                base_url,
                api_key: ingest.embed_api_key.clone(),
                model: ingest.embed_model.clone(),
                dimensions: ingest.embed_dimensions,
                timeout: Duration::from_secs(ingest.embed_timeout_secs.max(1)),
                batch: usize::from(ingest.embed_batch.max(1)),
            })
            .await?;
            tracing::info!(
                model = embedder.model_id(),
                dimensions = embedder.dimensions(),
                "embeddings provider ready"
            );
            Ok(Arc::new(embedder))
        }
    }
}

/// Points the embedded engine held before Qdrant Edge became the store are copied into Edge
/// once, space by space, so no client's vectors are lost in the move; a marker in the points
/// directory records that it was done. The rows stay in the database.
async fn move_points_to_edge(
    pool: &sqlx::SqlitePool,
    edge: &EdgePointStore,
    root: &Path,
) -> anyhow::Result<()> {
    let marker = root.join("kenning.moved");
    if marker.exists() {
        return Ok(());
    }
    let mut moved = 0;
    for space in SqlitePointStore::spaces_with_points(pool)
        .await
        .context("listing the embedded engine's points")?
    {
        let points = SqlitePointStore::points_of(pool, space)
            .await
            .with_context(|| format!("reading the points of space {space}"))?;
        for batch in points.chunks(crate::points::MAX_BATCH) {
            edge.upsert(space, batch.to_vec())
                .await
                .with_context(|| format!("copying the points of space {space} to Qdrant Edge"))?;
            moved += batch.len();
        }
    }
    if moved > 0 {
        tracing::info!(
            points = moved,
            "copied the embedded engine's points into Qdrant Edge"
        );
    }
    std::fs::create_dir_all(root).context("making the points directory")?;
    std::fs::write(&marker, b"the embedded engine's points were copied here\n")
        .context("recording the points move")?;
    Ok(())
}

/// Vectors of two models must never meet in one index: each space another model embedded loses
/// its vectors and has its documents queued to be indexed again by this one (every space, when
/// the vector store says its index must be rebuilt). The vectors go
/// first, so a crash between the two steps leaves the space to be found again at the next start.
async fn reembed_stale_spaces(
    store: &dyn MetadataStore,
    vectors: Option<&dyn VectorStore>,
    model: &str,
    ingest: &IngestConfig,
) -> anyhow::Result<()> {
    // A store that must rebuild its index takes every indexed space: no model is named "".
    let rebuild = vectors.is_some_and(|v| v.needs_reindex());
    let stale = store
        .spaces_embedded_by_other_models(if rebuild { "" } else { model })
        .await
        .context("reading the spaces' embedding models")?;
    for space in stale {
        if let Some(vectors) = vectors {
            vectors
                .delete_space(space.id)
                .await
                .with_context(|| format!("removing the old vectors of space '{}'", space.name))?;
        }
        let documents = store
            .requeue_space_for_new_model(space.id, &space.embedding_model, ingest.job_max_attempts)
            .await
            .with_context(|| format!("queueing space '{}' for re-embedding", space.name))?;
        if rebuild {
            tracing::warn!(
                space = %space.name,
                documents,
                "the vector store does not hold this space's passages yet; indexing them in the background"
            );
        } else {
            tracing::warn!(
                space = %space.name,
                previous = %space.embedding_model,
                model,
                documents,
                "space was embedded by another model; re-embedding it in the background"
            );
        }
    }
    if rebuild {
        if let Some(v) = vectors {
            v.reindex_queued()
                .await
                .context("recording that the vector store's spaces are queued")?;
        }
    }
    Ok(())
}

/// The rate limits and answer cap from the configuration, shared through Redis when it is set.
fn build_limits(l: &LimitsConfig, redis: Option<Arc<RedisLink>>) -> Limits {
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

/// The stores and models one process works with, opened once and shared.
#[derive(Clone)]
pub struct Engine {
    pub store: Arc<dyn MetadataStore>,
    pub vectors: Option<Arc<dyn VectorStore>>,
    pub embedder: Arc<dyn Embedder>,
    /// Client-supplied vectors (the points API), beside the metadata like the passage vectors.
    pub points: Arc<dyn PointStore>,
}

impl Engine {
    /// Opens the metadata store (applying migrations), loads the embedding model and opens the
    /// vector store the configuration asks for.
    pub async fn open(store_config: &StoreConfig, ingest: &IngestConfig) -> anyhow::Result<Self> {
        let (store, pool) = store::connect_with_pool(store_config)
            .await
            .context("opening the metadata store")?;
        store.migrate().await.context("applying migrations")?;
        tracing::info!(backend = store.backend_name(), "metadata store ready");

        let embedder = open_embedder(ingest).await?;
        let dims = embedder.dimensions();

        let qdrant = match ingest.vector_store {
            VectorBackend::Qdrant => Some(QdrantSettings {
                url: ingest.qdrant_url.clone().context(
                    "--vector-store qdrant needs --qdrant-url (QDRANT_URL), e.g. http://localhost:6334",
                )?,
                api_key: ingest.qdrant_api_key.clone(),
                collection_prefix: ingest.qdrant_collection_prefix.clone(),
                int8: ingest.qdrant_int8,
                timeout: std::time::Duration::from_secs(ingest.qdrant_timeout_secs),
            }),
            _ => None,
        };
        // `auto` is Qdrant Edge beside the embedded database and pgvector beside PostgreSQL.
        let backend = match (ingest.vector_store, &pool) {
            (VectorBackend::Auto, Pool::Sqlite(_)) => VectorBackend::Edge,
            (VectorBackend::Auto, Pool::Postgres(_)) => VectorBackend::Pgvector,
            (chosen, _) => chosen,
        };
        // The points API lives where the passage vectors do: in Qdrant Edge shards, a Qdrant
        // server, or the metadata database (on SQLite the same engine then serves passages).
        let (points, embedded_points): (Arc<dyn PointStore>, Option<Arc<SqlitePointStore>>) =
            match (&pool, &qdrant) {
                // On PostgreSQL points stay in pgvector, where they were before Edge existed.
                (Pool::Sqlite(pool), None) if backend == VectorBackend::Edge => {
                    let root = store_config.data_dir.join("edge").join("points");
                    let edge = EdgePointStore::open(&root, ingest.points_graph_min)
                        .await
                        .context("opening the points API's Qdrant Edge shards")?;
                    move_points_to_edge(pool, &edge, &root).await?;
                    (Arc::new(edge), None)
                }
                (_, Some(settings)) => (
                    Arc::new(
                        QdrantPointStore::open(settings, ingest.points_graph_min)
                            .await
                            .context("opening the points API's Qdrant collections")?,
                    ),
                    None,
                ),
                (Pool::Sqlite(pool), None) => {
                    let engine = Arc::new(
                        SqlitePointStore::open(
                            pool.clone(),
                            ingest.points_ef_search,
                            ingest.points_graph_min,
                        )
                        .await
                        .context("opening the points tables")?,
                    );
                    (engine.clone(), Some(engine))
                }
                (Pool::Postgres(pool), None) => (
                    Arc::new(
                        PgPointStore::open(pool.clone(), ingest.pgvector_ef_search)
                            .await
                            .context(
                                "opening the points tables (is the pgvector extension installed?)",
                            )?,
                    ),
                    None,
                ),
            };
        let vectors: Option<Arc<dyn VectorStore>> = match (backend, pool) {
            (VectorBackend::None, _) => None,
            (VectorBackend::Pgvector | VectorBackend::Auto, Pool::Postgres(pool)) => {
                Some(Arc::new(
                    PgVectorStore::open(pool, dims, ingest.pgvector_ef_search)
                        .await
                        .context("opening pgvector (is the extension installed?)")?,
                ))
            }
            (VectorBackend::Pgvector, Pool::Sqlite(_)) => {
                anyhow::bail!("--vector-store pgvector needs DATABASE_URL to point at PostgreSQL")
            }
            (VectorBackend::Embedded, Pool::Sqlite(pool)) => {
                let engine = embedded_points
                    .clone()
                    .context("the embedded points engine is not open")?;
                Some(Arc::new(
                    EmbeddedVectorStore::open(engine, pool, dims)
                        .await
                        .context("opening the embedded vector index")?,
                ))
            }
            (VectorBackend::Edge | VectorBackend::Auto, _) => Some(Arc::new(
                EdgeVectorStore::open(
                    &store_config.data_dir.join("edge"),
                    embedder.model_id(),
                    dims,
                )
                .await
                .context("opening the Qdrant Edge shard")?,
            )),
            (VectorBackend::Qdrant, _) => {
                let settings = qdrant.context("Qdrant settings are read above")?;
                Some(Arc::new(
                    QdrantVectorStore::open(settings, embedder.model_id(), dims)
                        .await
                        .context("opening the Qdrant collection")?,
                ))
            }
            (VectorBackend::Embedded, Pool::Postgres(_)) => {
                anyhow::bail!(
                    "--vector-store embedded needs the embedded database; with PostgreSQL use pgvector"
                )
            }
        };
        if let Some(v) = &vectors {
            tracing::info!(
                backend = v.backend_name(),
                model = embedder.model_id(),
                "vector store ready"
            );
        }
        reembed_stale_spaces(
            store.as_ref(),
            vectors.as_deref(),
            embedder.model_id(),
            ingest,
        )
        .await?;
        Ok(Self {
            store,
            vectors,
            embedder,
            points,
        })
    }
}

/// Builds the generator chain the configuration asks for, loading the local model if it is in it.
pub async fn build_chain(config: &GenerateConfig, models_dir: &Path) -> anyhow::Result<Chain> {
    let mut generators: Vec<Arc<dyn Generator>> = Vec::new();
    for kind in config.chain() {
        match kind {
            GeneratorKind::Extractive => generators.push(Arc::new(Extractive)),
            GeneratorKind::Openai => {
                let base_url = config.openai_base_url.clone().context(
                    "the openai generator needs OPENAI_BASE_URL (e.g. https://api.openai.com/v1)",
                )?;
                let timeout = Duration::from_secs(config.openai_timeout_secs.max(1));
                generators.push(Arc::new(OpenAiGenerator::new(OpenAiSettings {
                    base_url,
                    api_key: config.openai_api_key.clone(),
                    model: config.openai_model.clone(),
                    connect_timeout: timeout,
                    read_timeout: timeout,
                    temperature: config.openai_temperature,
                })?));
            }
            GeneratorKind::Local => {
                let path = config.llm_model.clone().unwrap_or_else(|| {
                    models_dir
                        .join("SmolLM2-135M-Instruct")
                        .join("SmolLM2-135M-Instruct.Q4_1.gguf")
                });
                let mut settings = LlmSettings {
                    context_tokens: config.llm_context,
                    temperature: config.llm_temperature,
                    queue: config.llm_queue,
                    first_token_target: (config.answer_first_token_ms > 0)
                        .then(|| Duration::from_millis(config.answer_first_token_ms)),
                    ..LlmSettings::default()
                };
                if let Some(t) = config.llm_threads {
                    settings.threads = t.max(1);
                }
                if let Some(t) = config.llm_prefill_threads {
                    settings.prefill_threads = t.max(1);
                }
                let local = tokio::task::spawn_blocking(move || {
                    LocalGenerator::load(&path, settings).with_context(|| {
                        format!(
                            "loading the local language model from {} (run scripts/fetch-models.sh, \
                             or leave `local` out of KENNING_GENERATORS)",
                            path.display()
                        )
                    })
                })
                .await??;
                generators.push(Arc::new(local));
            }
        }
    }
    Ok(Chain::new(
        generators,
        ChainSettings {
            retries: config.generator_retries,
            backoff_base: Duration::from_millis(config.retry_backoff_ms),
            first_token_timeout: Duration::from_millis(config.first_token_timeout_ms.max(1)),
            breaker_threshold: config.breaker_failures,
            breaker_reset: Duration::from_secs(config.breaker_reset_secs),
        },
    ))
}

fn chat_settings(config: &GenerateConfig, embedder: crate::config::EmbedderKind) -> ChatSettings {
    // The default floor is measured on the built-in embedder; another model's scale differs.
    let min_similarity = match (config.answer_min_similarity, embedder) {
        (Some(s), _) => Some(s),
        (None, crate::config::EmbedderKind::Openai) => None,
        (None, _) => Some(crate::chat::DEFAULT_MIN_SIMILARITY),
    }
    .filter(|s| *s > 0.0);
    ChatSettings {
        min_similarity,
        max_sources: config
            .chat_sources
            .clamp(1, crate::chat::MAX_SOURCES as usize),
        max_source_chars: config.chat_source_chars.max(100),
        max_tokens: config.max_answer_tokens.max(1),
        answer_timeout: Duration::from_secs(config.answer_timeout_secs.max(1)),
        answer_cache_ttl: Duration::from_secs(config.answer_cache_ttl_secs.max(1)),
        answer_cache_capacity: config.answer_cache_capacity,
        prices: [(
            "openai",
            Price {
                prompt_per_mtok: config.openai_price_prompt.max(0.0),
                completion_per_mtok: config.openai_price_completion.max(0.0),
            },
        )]
        .into_iter()
        .collect(),
    }
}

/// Starts `count` ingestion workers sharing one tokenizer; they stop when `stop` is cancelled.
pub fn spawn_workers(
    engine: &Engine,
    data_dir: PathBuf,
    config: &IngestConfig,
    count: usize,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let tokenizer = config.tokenizer_path();
    let chunker = Chunker::from_file(&tokenizer).with_context(|| {
        format!(
            "loading the tokenizer at {} (run scripts/fetch-models.sh)",
            tokenizer.display()
        )
    })?;
    let settings = WorkerSettings {
        lease: Duration::from_secs(config.job_lease_secs.max(1)),
        poll_interval: Duration::from_millis(config.job_poll_ms.max(10)),
        embed_batch: usize::from(config.embed_batch.max(1)),
        parse: crate::ingest::isolate::ParseLimits::from_config(config),
    };
    let indexing = Indexing {
        embedder: engine.embedder.clone(),
        vectors: engine.vectors.clone(),
    };
    Ok((0..count)
        .map(|_| {
            let worker = Worker::new(
                engine.store.clone(),
                data_dir.clone(),
                chunker.clone(),
                indexing.clone(),
                settings.clone(),
                wake.clone(),
            );
            tokio::spawn(worker.run(stop.clone()))
        })
        .collect())
}

/// Resolves on Ctrl-C or SIGTERM, whichever comes first.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Syncs sources on their schedules, and watched folders once they have been quiet for a
/// moment after a change, until `stop`.
fn spawn_source_scheduler(service: Arc<Service>, stop: CancellationToken) {
    use crate::sources::{watch, SCHEDULER_TICK};
    use std::collections::HashMap;
    use std::time::Instant;
    tokio::spawn(async move {
        let mut watches = watch::Watches::default();
        // Watched sources that changed, with when they last did.
        let mut changed: HashMap<uuid::Uuid, (uuid::Uuid, Instant)> = HashMap::new();
        let mut last_look: Option<Instant> = None;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                Some((space, id)) = watches.changed() => {
                    changed.insert(id, (space, Instant::now()));
                    continue;
                }
                () = service.sources_changed().notified() => last_look = None,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if last_look.is_none_or(|t| t.elapsed() >= SCHEDULER_TICK) {
                last_look = Some(Instant::now());
                watches.set(service.watched_folders().await);
                service.sync_due_sources().await;
            }
            let quiet: Vec<_> = changed
                .iter()
                .filter(|(_, (_, at))| at.elapsed() >= watch::QUIET)
                .map(|(id, (space, _))| (*space, *id))
                .collect();
            for (space, id) in quiet {
                // A sync already running may have missed the change: keep it for the next round.
                if service.sync_if_idle(space, id).await {
                    changed.remove(&id);
                }
            }
        }
    });
}
