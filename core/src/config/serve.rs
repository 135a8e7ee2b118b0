//! Settings of `kenning serve`: the listener, accounts, request bounds and rate limits.

use super::*;

/// Settings of `kenning serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,

    #[command(flatten)]
    pub generate: GenerateConfig,

    #[command(flatten)]
    pub limits: LimitsConfig,

    /// Address to listen on. Use port 0 to let the OS pick one.
    #[arg(long, env = "KENNING_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Directory holding the built web assets (the `pkg/` folder with WASM, JS and CSS).
    #[arg(long, env = "KENNING_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Largest document upload accepted, in bytes (default 64 MiB).
    #[arg(long, env = "KENNING_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Largest JSON request body accepted, in bytes.
    #[arg(long, env = "KENNING_MAX_JSON_BYTES", default_value_t = 1024 * 1024)]
    pub max_json_bytes: usize,

    /// Largest points upsert body accepted, in bytes (1,000 points of 1,024 dimensions as JSON
    /// take about 12 MB).
    #[arg(long, env = "KENNING_MAX_POINTS_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_points_bytes: usize,

    /// Vector lengths the points of one account's spaces may have between them (admins and
    /// single-user mode are exempt), so no single account can use up the embedded engine's 16
    /// lengths per server; 0: no cap.
    #[arg(long, env = "KENNING_MAX_POINT_LENGTHS_PER_ACCOUNT", default_value_t = 4, value_parser = clap::value_parser!(u64).range(0..=16))]
    pub max_point_lengths_per_account: u64,

    /// Time limit for ordinary requests, in seconds.
    #[arg(long, env = "KENNING_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Time limit for an upload, in seconds (large files on slow links need longer).
    #[arg(long, env = "KENNING_UPLOAD_TIMEOUT_SECS", default_value_t = 600)]
    pub upload_timeout_secs: u64,

    /// Requests slower than this (to their response head) are logged with their duration, in ms.
    #[arg(long, env = "KENNING_SLOW_REQUEST_MS", default_value_t = 1_000)]
    pub slow_request_ms: u64,

    /// Longest time a client may take to send a request head, or stay idle between requests on
    /// a kept-alive connection, in seconds; slower connections are closed (slowloris).
    #[arg(long, env = "KENNING_HEADER_READ_TIMEOUT_SECS", default_value_t = 15)]
    pub header_read_timeout_secs: u64,

    /// Largest request head (request line and headers) accepted, in bytes; larger get 431.
    #[arg(long, env = "KENNING_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,

    /// Connections served at once; more wait in the listen backlog until one closes.
    #[arg(long, env = "KENNING_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// Connections served at once from one client address (an IPv6 /64 counts as one address),
    /// so a single host cannot take every slot; more from it are closed at once. Behind a
    /// reverse proxy every connection comes from the proxy: raise it, or set 0 for no cap.
    #[arg(long, env = "KENNING_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// On SIGTERM or Ctrl-C, how long in-flight requests get to finish, in seconds.
    #[arg(long, env = "KENNING_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// On SIGTERM or Ctrl-C, seconds during which readiness answers 503 while requests are still
    /// served, so a load balancer stops sending new ones before the listener closes.
    #[arg(long, env = "KENNING_DRAIN_SECS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=300))]
    pub drain_secs: u64,

    /// Search results the result cache holds at most (one entry is a result list, up to 50
    /// passages with their text; typically 5–15 KB).
    #[arg(long, env = "KENNING_SEARCH_CACHE_CAPACITY", default_value_t = 10_000)]
    pub search_cache_capacity: u64,

    /// Query embeddings the embedding cache holds at most (1.5 KB each for a 384-d model).
    #[arg(long, env = "KENNING_QUERY_CACHE_CAPACITY", default_value_t = 10_000)]
    pub query_cache_capacity: u64,

    /// Other sites (`https://front.example`, comma-separated) whose pages may change things
    /// through a visitor's browser. Browsers' requests from any other site are refused with
    /// 403, so a page elsewhere cannot post forms, uploads or deletes to Kenning.
    #[arg(long, env = "KENNING_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Folders (comma-separated) that folder sources may read: a source names one of them or a
    /// folder below. None (the default) turns folder sources off.
    #[arg(long, env = "KENNING_SOURCE_ROOTS", value_delimiter = ',')]
    pub source_roots: Vec<PathBuf>,

    /// Lets web sources fetch loopback addresses (127.0.0.0/8, ::1). Only for tests against a
    /// server on this machine; private, link-local and metadata addresses stay refused.
    #[arg(long, env = "KENNING_SOURCE_ALLOW_LOOPBACK", default_value_t = false)]
    pub source_allow_loopback: bool,

    /// Sign-in: `password` (accounts, sessions, API keys, roles per space), `none` (single
    /// user, no sign-in; only on a loopback address), or `auto`: `none` on loopback,
    /// `password` on any other address. The first account created becomes the admin.
    #[arg(long, env = "KENNING_AUTH", value_enum, default_value_t = AuthMode::Auto)]
    pub auth: AuthMode,

    /// Documents that may wait in the ingestion queue; beyond it, uploads get 503 with
    /// Retry-After until workers catch up (the queue never grows without bound).
    #[arg(long, env = "KENNING_MAX_QUEUED_JOBS", default_value_t = 10_000)]
    pub max_queued_jobs: u64,

    /// Hours a sign-in session lasts.
    #[arg(long, env = "KENNING_SESSION_TTL_HOURS", default_value_t = 168)]
    pub session_ttl_hours: u64,

    /// The one-time token that creates the first (admin) account from another machine, with
    /// `--auth password`. Unset: Kenning makes one at start and prints it in its log. From this
    /// machine (a loopback peer, no proxy) no token is needed.
    #[arg(long, env = "KENNING_SETUP_TOKEN", hide_env_values = true)]
    pub setup_token: Option<secrecy::SecretString>,

    /// Days the audit log keeps an entry; older ones are deleted hourly (0 keeps them all).
    #[arg(long, env = "KENNING_AUDIT_RETENTION_DAYS", default_value_t = 90)]
    pub audit_retention_days: u64,
}

/// Rate limits per client address and route class, and the answer concurrency cap. A rate is
/// `N/s`, `N/min` or `N/h`, optionally `,burst=B` (default burst N); `off` disables it.
#[derive(Clone, Debug, Args)]
pub struct LimitsConfig {
    /// Questions (chat and /v1/chat/completions) per client.
    #[arg(
        long,
        env = "KENNING_RATE_LIMIT_CHAT",
        default_value = "120/min,burst=20"
    )]
    pub rate_limit_chat: RateLimit,

    /// Searches (passages and points) per client.
    #[arg(long, env = "KENNING_RATE_LIMIT_SEARCH", default_value = "off")]
    pub rate_limit_search: RateLimit,

    /// Uploads and points upserts per client.
    #[arg(long, env = "KENNING_RATE_LIMIT_UPLOAD", default_value = "off")]
    pub rate_limit_upload: RateLimit,

    /// Every other API request per client.
    #[arg(long, env = "KENNING_RATE_LIMIT_OTHER", default_value = "off")]
    pub rate_limit_other: RateLimit,

    /// Sign-in attempts (and first-account set-ups) per client address, against password
    /// guessing; each attempt also costs an argon2 hash.
    #[arg(
        long,
        env = "KENNING_RATE_LIMIT_SIGN_IN",
        default_value = "10/min,burst=5"
    )]
    pub rate_limit_sign_in: RateLimit,

    /// Questions, searches and uploads per space (tenant), from all its callers together, on
    /// top of each caller's own limits: one busy space cannot take the whole server.
    #[arg(long, env = "KENNING_RATE_LIMIT_SPACE", default_value = "off")]
    pub rate_limit_space: RateLimit,

    /// Answers streaming at once; beyond this a question gets 503 with Retry-After at once
    /// instead of waiting in a queue.
    #[arg(long, env = "KENNING_MAX_CONCURRENT_CHATS", default_value_t = 32)]
    pub max_concurrent_chats: usize,

    /// Answers one account (or, without one, one client address) may stream at once; more get
    /// 429 at once. 0: no cap per caller.
    #[arg(
        long,
        env = "KENNING_MAX_CONCURRENT_CHATS_PER_CALLER",
        default_value_t = 8
    )]
    pub max_concurrent_chats_per_caller: usize,

    /// Seconds an answer waits for a client that has stopped reading it before it is abandoned,
    /// so its slot and the model go to someone else.
    #[arg(long, env = "KENNING_ANSWER_STALL_SECS", default_value_t = 30)]
    pub answer_stall_secs: u64,

    /// Redis URL (redis://host:6379/0). When set, rate limits and caches (search results, query
    /// embeddings, answers) are shared by every instance using it; while Redis is unreachable
    /// each instance limits and caches on its own and /health says degraded.
    #[arg(long, env = "REDIS_URL", value_parser = parse_secret, hide_env_values = true)]
    pub redis_url: Option<SecretString>,

    /// Load balancers or reverse proxies (addresses or CIDR ranges, comma-separated) whose
    /// `X-Forwarded-For` names the client for rate limits; from anyone else it is ignored.
    #[arg(long, env = "KENNING_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// How long a rate-limit check or cache lookup waits for Redis before going on without it, in ms.
    #[arg(long, env = "KENNING_REDIS_TIMEOUT_MS", default_value_t = 100)]
    pub redis_timeout_ms: u64,
}

impl ServeConfig {
    /// Defaults for tests and embedding: port 0, the given data directory, everything else default.
    pub fn for_data_dir(data_dir: PathBuf) -> Self {
        let cli = Cli::parse_from(["kenning", "serve", "--addr", "127.0.0.1:0"]);
        match cli.command {
            Command::Serve(mut c) => {
                c.store.data_dir = data_dir;
                c.store.database_url = None;
                *c
            }
            _ => unreachable!("parsed a serve command"),
        }
    }
}
