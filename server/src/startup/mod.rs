//! Building and running the server: one path shared by `kenning serve` and the tests.

use crate::chat::{Chat, ChatSettings, Price};
use crate::config::{
    EmbedderKind, GenerateConfig, GeneratorKind, IngestConfig, LimitsConfig, ServeConfig,
    StoreConfig, VectorBackend,
};
use crate::embed::onnx::OnnxFiles;
use crate::embed::{Embedder, LaneSettings, OpenAiEmbedSettings, OpenAiEmbedder};
use crate::generate::{
    Chain, ChainSettings, Extractive, Generator, OpenAiGenerator, OpenAiSettings,
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

mod engine;
mod routes;

use engine::chat_settings;
pub use engine::{build_chain, spawn_workers, Engine};
pub use routes::ui_route_list;
use routes::{build_limits, router};

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

        let hashes = bundle_hashes(&config.site_root);
        let leptos_options = LeptosOptions::builder()
            .output_name("kenning")
            .site_root(config.site_root.to_string_lossy().into_owned())
            .site_pkg_dir("pkg")
            .site_addr(addr)
            .env(Env::PROD)
            .hash_files(hashes.is_some())
            .hash_file(hashes.unwrap_or_else(|| Arc::from("hash.txt")))
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
        let router = router(state, &config, limits, audit, auth);

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

/// The bundle's list of content hashes, when the site was built with hashed file names: its
/// pages must then name `kenning.<hash>.wasm` and the rest. Leptos joins this path to the
/// executable's directory, so it is made absolute: the binary and the site live apart.
fn bundle_hashes(site_root: &Path) -> Option<Arc<str>> {
    let file = std::path::absolute(site_root.join("hash.txt")).ok()?;
    file.is_file()
        .then(|| Arc::from(file.to_string_lossy().into_owned()))
}
