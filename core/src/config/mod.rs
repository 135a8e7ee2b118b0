//! Every setting, by flag or environment variable, with its default; `kenning <command> --help`
//! is the reference. Nothing is baked in at build time.

mod values;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
pub use values::{AuthMode, Rate, RateLimit};

/// Kenning: a self-hosted knowledge assistant. Put documents into spaces, ask questions,
/// get answers with citations.
#[derive(Debug, Parser)]
#[command(name = "kenning", version, about, long_about = None)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,

    /// OTLP/HTTP collector to send traces to (e.g. http://127.0.0.1:4318); spans go to
    /// `<endpoint>/v1/traces` as protobuf. Unset: no traces leave the process.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true)]
    pub otlp_endpoint: Option<String>,

    /// The `service.name` traces carry, to tell instances or deployments apart.
    #[arg(
        long,
        env = "OTEL_SERVICE_NAME",
        default_value = "kenning",
        global = true
    )]
    pub otlp_service_name: String,

    #[command(subcommand)]
    pub command: Command,
}

/// The things the binary can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web UI and the HTTP API (applies pending migrations first).
    Serve(Box<ServeConfig>),
    /// Apply pending database migrations and exit.
    Migrate(StoreConfig),
    /// Run ingestion workers only (no HTTP), for scaling ingestion out to more processes.
    Worker(WorkerConfig),
    /// Ingest a file or every file in a folder into a space (created if missing), with progress.
    Ingest(IngestCommand),
    /// Sync a space's sources (folders, web pages, sites) on a running Kenning now, with progress.
    Sync(SyncCommand),
    /// Measure a running Kenning on this machine: seed a space, drive load, report percentiles.
    ///
    /// The load generator runs on one thread, so it takes at most one core from the server.
    Bench(BenchCommand),
    /// Manage accounts (for `--auth password`), e.g. create the first admin from a script.
    #[command(subcommand)]
    User(UserCommand),
}

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from KENNING_USER_PASSWORD, or from the first
    /// line of standard input, so it never shows in the process list or shell history.
    Create(CreateUserCommand),
}

/// Settings of `kenning user create`.
#[derive(Debug, Args)]
pub struct CreateUserCommand {
    /// The account's email address; it signs in with it.
    #[arg(long)]
    pub email: String,

    /// Make the account an admin (manages accounts, reads the audit log, reaches every space).
    #[arg(long)]
    pub admin: bool,

    /// A name to show instead of the email.
    #[arg(long, default_value = "")]
    pub display_name: String,

    #[command(flatten)]
    pub store: StoreConfig,
}

/// Settings of `kenning bench`.
#[derive(Clone, Debug, Args)]
pub struct BenchCommand {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: BenchScenario,

    /// The Kenning to measure; loopback addresses only.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,

    /// Offer requests at this many per second (paced, open loop) instead of as fast as the
    /// concurrency allows; for loading a rate limit at a known multiple of its rate.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Stop after this many requests...
    #[arg(long, default_value_t = 200)]
    pub requests: u64,

    /// ...or after this many seconds, whichever comes first.
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,

    /// Documents generated and ingested first (the whole measurement for `ingest`).
    #[arg(long, default_value_t = 20)]
    pub documents: usize,

    /// Size of each generated Markdown document, in bytes.
    #[arg(long, default_value_t = 20_000)]
    pub document_bytes: usize,

    /// Points stored before `points` measures (its published table uses 100,000).
    #[arg(long, default_value_t = 100_000)]
    pub points: u64,

    /// Dimensions of the `points` scenario's vectors.
    #[arg(long, default_value_t = 1024)]
    pub dimensions: usize,

    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,

    /// API key to measure a server that requires sign-in (`--auth password`) with.
    #[arg(long, env = "KENNING_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub api_key: Option<SecretString>,
}

/// Scenarios of `kenning bench`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BenchScenario {
    /// Hybrid searches over an ingested corpus.
    Search,
    /// Questions answered end to end: time to first token and total.
    Ask,
    /// Ingestion throughput: passages indexed per second.
    Ingest,
    /// Searches, questions and dashboard polls together, for watching the dashboard.
    Mixed,
    /// The points API: `--points` random vectors stored, then upserts (one point each),
    /// searches (limit 10), gets and deletes, `--requests` of each.
    Points,
}

/// Settings of `kenning ingest`.
#[derive(Clone, Debug, Args)]
pub struct IngestCommand {
    /// A file, or a folder whose files (recursively) are ingested.
    pub path: PathBuf,

    /// Name of the space to ingest into; created if it does not exist.
    #[arg(long)]
    pub space: String,

    /// Largest file accepted, in bytes; larger files are skipped and reported.
    #[arg(long, env = "KENNING_MAX_UPLOAD_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Send the files through the Kenning running at this address (its API; its workers index
    /// them) instead of opening the data directory here: for a data directory a running server
    /// holds, as Qdrant Edge serves one process.
    #[arg(long, env = "KENNING_URL")]
    pub url: Option<String>,

    /// API key for --url, when that server requires sign-in (`--auth password`).
    #[arg(long, env = "KENNING_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub api_key: Option<SecretString>,

    /// Make the space mirror the folder: a changed file replaces its document (as it always
    /// does, keyed by its path below the folder), and documents whose file is gone are deleted.
    /// Documents a server-side source brought are left to that source.
    #[arg(long)]
    pub sync: bool,

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,
}

/// Settings of `kenning sync`.
#[derive(Debug, Args)]
pub struct SyncCommand {
    /// The space, by name or id.
    #[arg(long)]
    pub space: String,

    /// Only this source (its id); every source of the space by default.
    #[arg(long)]
    pub source: Option<String>,

    /// The running Kenning whose sources to sync.
    #[arg(long, env = "KENNING_URL", default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// API key, when that server requires sign-in (`--auth password`).
    #[arg(long, env = "KENNING_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub api_key: Option<SecretString>,
}

/// Log formats: readable for people, JSON for log pipelines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Where metadata and files live.
#[derive(Clone, Debug, Args)]
pub struct StoreConfig {
    /// Directory for the embedded database and uploaded files; created if missing.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// PostgreSQL URL (postgres://user:pass@host/db). When set, metadata lives there instead of
    /// the embedded SQLite database in DATA_DIR.
    #[arg(long, env = "DATABASE_URL", value_parser = parse_secret, hide_env_values = true)]
    pub database_url: Option<SecretString>,

    /// Most connections the metadata store pool opens.
    #[arg(long, env = "KENNING_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,

    /// How long a request waits for a database connection before failing with 503, in milliseconds.
    #[arg(long, env = "KENNING_DB_ACQUIRE_TIMEOUT_MS", default_value_t = 3_000)]
    pub db_acquire_timeout_ms: u64,
}

/// How documents are ingested.
#[derive(Clone, Debug, Args)]
pub struct IngestConfig {
    /// Directory holding the local models (fetched by scripts/fetch-models.sh).
    #[arg(long, env = "KENNING_MODELS_DIR", default_value = "models")]
    pub models_dir: PathBuf,

    /// Ingestion workers in this process; 0 leaves ingestion to `kenning worker` processes. The
    /// default of 1 keeps a core free for serving on small machines.
    #[arg(long, env = "KENNING_INGEST_WORKERS", default_value_t = 1)]
    pub ingest_workers: usize,

    /// Seconds a worker holds a job without renewing before another worker may take it over.
    #[arg(long, env = "KENNING_JOB_LEASE_SECS", default_value_t = 60)]
    pub job_lease_secs: u64,

    /// Attempts before a job that keeps failing for passing reasons is marked failed.
    #[arg(long, env = "KENNING_JOB_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub job_max_attempts: i32,

    /// Milliseconds between looks for new jobs queued by other processes.
    #[arg(long, env = "KENNING_JOB_POLL_MS", default_value_t = 1_000)]
    pub job_poll_ms: u64,

    /// Where passage and point vectors live: `auto` is pgvector with DATABASE_URL, else `edge`,
    /// Qdrant's engine in this process (DATA_DIR/edge, BM25 sparse vectors for the keyword side;
    /// one process per data directory); `embedded` is Kenning's own index in the embedded
    /// database (exact scan while a space is small, HNSW from --points-graph-min points);
    /// `qdrant` is a Qdrant server at --qdrant-url; `none` indexes for keyword search only.
    #[arg(long, env = "KENNING_VECTOR_STORE", value_enum, default_value_t = VectorBackend::Auto)]
    pub vector_store: VectorBackend,

    /// gRPC address of the Qdrant server for `--vector-store qdrant` (its gRPC port, 6334 by
    /// default, not the REST one).
    #[arg(long, env = "QDRANT_URL")]
    pub qdrant_url: Option<String>,

    /// API key of the Qdrant server, if it asks for one.
    #[arg(long, env = "QDRANT_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub qdrant_api_key: Option<SecretString>,

    /// Start of the Qdrant collection names; each embedding model and length gets its own
    /// collection, so several Kenning installations can share a server under different prefixes.
    #[arg(
        long,
        env = "KENNING_QDRANT_COLLECTION_PREFIX",
        default_value = "kenning"
    )]
    pub qdrant_collection_prefix: String,

    /// Keeps int8 copies of the vectors in Qdrant (a quarter of the memory) and rescores the
    /// best candidates with the full vectors. Takes effect when a collection is created.
    #[arg(long, env = "KENNING_QDRANT_INT8", default_value_t = false)]
    pub qdrant_int8: bool,

    /// Time limit for one call to Qdrant, in seconds.
    #[arg(long, env = "KENNING_QDRANT_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub qdrant_timeout_secs: u64,

    /// pgvector HNSW search breadth (`hnsw.ef_search`): higher finds more, slower.
    #[arg(long, env = "KENNING_PGVECTOR_EF_SEARCH", default_value_t = 100)]
    pub pgvector_ef_search: u32,

    /// Search breadth of the embedded points graph (HNSW `ef`): higher finds more, slower.
    #[arg(long, env = "KENNING_POINTS_EF_SEARCH", default_value_t = 128)]
    pub points_ef_search: usize,

    /// Points a space needs before it gets a search graph (embedded engine, Qdrant Edge and
    /// Qdrant server); smaller spaces are scanned exactly.
    #[arg(long, env = "KENNING_POINTS_GRAPH_MIN", default_value_t = 20_000)]
    pub points_graph_min: usize,

    /// What embeds passages and questions: `onnx` (all-MiniLM-L6-v2 with int8 weights on ONNX
    /// Runtime, on this machine, the default), `candle` (the same model in f32 on candle, about
    /// half as fast; `local` is another name for it) or `openai` (any OpenAI-compatible
    /// /v1/embeddings, see the --embed-* settings). Spaces indexed with another model are
    /// re-embedded in the background at start, never mixed.
    #[arg(long, env = "KENNING_EMBEDDER", value_enum, default_value_t = EmbedderKind::Onnx)]
    pub embedder: EmbedderKind,

    /// ONNX Runtime's shared library for `--embedder onnx` (default: the one
    /// scripts/fetch-models.sh puts in the models directory).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub onnxruntime_lib: Option<PathBuf>,

    /// Base URL of the embeddings provider, including /v1 (e.g. https://api.openai.com/v1).
    #[arg(long, env = "KENNING_EMBED_BASE_URL")]
    pub embed_base_url: Option<String>,

    /// API key for the embeddings provider, sent as a bearer token.
    #[arg(long, env = "KENNING_EMBED_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub embed_api_key: Option<SecretString>,

    /// Embeddings model name at the provider.
    #[arg(
        long,
        env = "KENNING_EMBED_MODEL",
        default_value = "text-embedding-3-small"
    )]
    pub embed_model: String,

    /// Vector length to ask the provider for (models that can shorten theirs); unset, the
    /// provider's own length is learned at start.
    #[arg(long, env = "KENNING_EMBED_DIMENSIONS")]
    pub embed_dimensions: Option<usize>,

    /// Time limit for one embeddings request, in seconds.
    #[arg(long, env = "KENNING_EMBED_TIMEOUT_SECS", default_value_t = 30)]
    pub embed_timeout_secs: u64,

    /// Passages per forward pass of the local embedder (and per request to a provider) during
    /// ingestion. 8 is the fastest on CPU: at 16 a 256-token batch's attention scores pass 32 MB,
    /// which the C allocator maps and unmaps afresh on every batch.
    #[arg(long, env = "KENNING_EMBED_BATCH", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub embed_batch: u16,

    /// Memory (address space, MiB) the child process that reads one document may use: a
    /// decompression bomb fails its job instead of exhausting the server.
    #[arg(long, env = "KENNING_PARSE_MEMORY_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(256..=65_536))]
    pub parse_memory_mb: u64,

    /// Seconds (wall clock, and as much processor time) one document's parser may run.
    #[arg(long, env = "KENNING_PARSE_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub parse_timeout_secs: u64,

    /// Largest text (MiB) one document may yield; a file that expands past it fails.
    #[arg(long, env = "KENNING_MAX_DOCUMENT_TEXT_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_024))]
    pub max_document_text_mb: u64,

    /// The program run as the parser's child: this binary, set at start-up. Unset (library
    /// use), documents are parsed in the process with only the text cap.
    #[arg(skip)]
    pub parse_program: Option<PathBuf>,

    /// Cores the local embedder may use for ingestion. The default of 1 leaves the others to
    /// queries and serving (search stays fast while folders are ingested); raise it on a machine
    /// dedicated to ingestion.
    #[arg(long, env = "KENNING_EMBED_INGEST_THREADS", default_value_t = 1)]
    pub embed_ingest_threads: usize,
}

/// Embedder choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EmbedderKind {
    Onnx,
    #[value(alias = "local")]
    Candle,
    Openai,
}

/// Vector store choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VectorBackend {
    /// Qdrant Edge with the embedded database, pgvector with PostgreSQL.
    Auto,
    /// In the embedded database, searched in memory: exactly, then by HNSW as a space grows.
    #[value(alias = "exact")]
    Embedded,
    Pgvector,
    /// A Qdrant server or cluster (--qdrant-url), with the embedded database or PostgreSQL.
    Qdrant,
    /// Qdrant Edge: Qdrant's engine inside this process, a shard in DATA_DIR/edge.
    Edge,
    None,
}

impl IngestConfig {
    /// The tokenizer the chunker sizes passages with (the local embedder's).
    pub fn tokenizer_path(&self) -> PathBuf {
        self.models_dir
            .join("all-MiniLM-L6-v2")
            .join("tokenizer.json")
    }
}

/// Settings of `kenning worker`.
#[derive(Clone, Debug, Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,
}

/// How answers are generated.
#[derive(Clone, Debug, Args)]
pub struct GenerateConfig {
    /// Generators to try in order, comma-separated, from `local`, `openai` and `extractive`.
    /// Default: `extractive`, or `openai,extractive` when OPENAI_BASE_URL is set. The local
    /// model (SmolLM2-135M) is opt-in: on the evaluation set it answered correctly far less
    /// often than the extractive composer and almost never cited right (docs/BENCHMARKS.md).
    #[arg(long, env = "KENNING_GENERATORS", value_delimiter = ',')]
    pub generators: Vec<GeneratorKind>,

    /// The local model (GGUF); fetched by scripts/fetch-models.sh. Default: the SmolLM2 file in
    /// the models directory.
    #[arg(long, env = "KENNING_LLM_MODEL")]
    pub llm_model: Option<PathBuf>,

    /// CPU threads of the local model (default: every core but one, so searches and ingestion
    /// keep a core; the model slows sharply when any of its threads loses its core).
    #[arg(long, env = "KENNING_LLM_THREADS")]
    pub llm_threads: Option<usize>,

    /// CPU threads the local model reads prompts on while nothing else needs the cores
    /// (default: every core); while anything else runs it reads on `--llm-threads`.
    #[arg(long, env = "KENNING_LLM_PREFILL_THREADS")]
    pub llm_prefill_threads: Option<usize>,

    /// When the local model's first token should come, in milliseconds: each prompt gets the
    /// sentences of its sources that match the question best, as many as the measured prefill
    /// speed reads in this time. 0 sends every source whole.
    #[arg(long, env = "KENNING_ANSWER_FIRST_TOKEN_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub answer_first_token_ms: u64,

    /// Context window of the local model, in tokens.
    #[arg(long, env = "KENNING_LLM_CONTEXT", default_value_t = 2048)]
    pub llm_context: u32,

    /// Sampling temperature of the local model; 0 decodes greedily (the most faithful to the sources).
    #[arg(long, env = "KENNING_LLM_TEMPERATURE", default_value_t = 0.0)]
    pub llm_temperature: f32,

    /// Answers that may wait for the local model while it is busy; more fall through the chain.
    #[arg(long, env = "KENNING_LLM_QUEUE", default_value_t = 8)]
    pub llm_queue: usize,

    /// Base URL of an OpenAI-compatible API, including `/v1` (OpenAI, Ollama, vLLM, llama.cpp).
    #[arg(long, env = "OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,

    /// API key for the OpenAI-compatible provider.
    #[arg(long, env = "OPENAI_API_KEY", value_parser = parse_secret, hide_env_values = true)]
    pub openai_api_key: Option<SecretString>,

    /// Model name sent to the OpenAI-compatible provider.
    #[arg(long, env = "OPENAI_MODEL", default_value = "gpt-4o-mini")]
    pub openai_model: String,

    /// Sampling temperature sent to the provider; unset, none is sent and the provider's
    /// default applies (reasoning models refuse any other).
    #[arg(long, env = "KENNING_OPENAI_TEMPERATURE", value_parser = parse_temperature)]
    pub openai_temperature: Option<f32>,

    /// Seconds to wait for the provider's connection, and for each piece of its stream.
    #[arg(long, env = "KENNING_OPENAI_TIMEOUT_SECS", default_value_t = 30)]
    pub openai_timeout_secs: u64,

    /// Price of the provider's prompt tokens in US dollars per million, for the cost metric.
    #[arg(long, env = "KENNING_OPENAI_PRICE_PROMPT", default_value_t = 0.0)]
    pub openai_price_prompt: f64,

    /// Price of the provider's completion tokens in US dollars per million.
    #[arg(long, env = "KENNING_OPENAI_PRICE_COMPLETION", default_value_t = 0.0)]
    pub openai_price_completion: f64,

    /// Passages retrieved and numbered as sources for an answer. With the local model, 3 keeps
    /// its prompt short enough for a first token in a few seconds on two cores.
    #[arg(long, env = "KENNING_CHAT_SOURCES", default_value_t = 5)]
    pub chat_sources: usize,

    /// Least cosine similarity between a question and its closest passage for an answer to be
    /// attempted; below it the answer is "I don't know" without asking any generator, with the
    /// reason. Default: 0.35 with the built-in embedder (all-MiniLM-L6-v2: on the evaluation set
    /// every answerable question scored 0.41 or more, 15 of 20 unanswerable ones less), none
    /// with `--embedder openai`, whose scale differs; 0 turns it off.
    #[arg(long, env = "KENNING_ANSWER_MIN_SIMILARITY", value_parser = parse_similarity)]
    pub answer_min_similarity: Option<f64>,

    /// Characters of each source put into the prompt.
    #[arg(long, env = "KENNING_CHAT_SOURCE_CHARS", default_value_t = 600)]
    pub chat_source_chars: usize,

    /// Longest answer, in tokens.
    #[arg(long, env = "KENNING_MAX_ANSWER_TOKENS", default_value_t = 256)]
    pub max_answer_tokens: usize,

    /// Milliseconds a generator gets to produce its first token before the chain moves on.
    #[arg(long, env = "KENNING_FIRST_TOKEN_TIMEOUT_MS", default_value_t = 15_000)]
    pub first_token_timeout_ms: u64,

    /// Seconds an answer may take in all.
    #[arg(long, env = "KENNING_ANSWER_TIMEOUT_SECS", default_value_t = 120)]
    pub answer_timeout_secs: u64,

    /// Retries of a failing generator before the chain moves on (before its first token only).
    #[arg(long, env = "KENNING_GENERATOR_RETRIES", default_value_t = 1)]
    pub generator_retries: u32,

    /// Base delay of the retry backoff, in milliseconds (doubled each retry, with jitter).
    #[arg(long, env = "KENNING_RETRY_BACKOFF_MS", default_value_t = 200)]
    pub retry_backoff_ms: u64,

    /// Consecutive failures that open a generator's circuit breaker.
    #[arg(long, env = "KENNING_BREAKER_FAILURES", default_value_t = 3)]
    pub breaker_failures: u32,

    /// Seconds an open breaker waits before letting a trial request through.
    #[arg(long, env = "KENNING_BREAKER_RESET_SECS", default_value_t = 30)]
    pub breaker_reset_secs: u64,

    /// Seconds a finished answer is served from the answer cache.
    #[arg(long, env = "KENNING_ANSWER_CACHE_TTL_SECS", default_value_t = 600)]
    pub answer_cache_ttl_secs: u64,

    /// Answers the answer cache holds at most.
    #[arg(long, env = "KENNING_ANSWER_CACHE_CAPACITY", default_value_t = 1_000)]
    pub answer_cache_capacity: u64,
}

/// The generators a chain can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GeneratorKind {
    Local,
    Openai,
    Extractive,
}

impl GenerateConfig {
    /// The chain's order: as configured, else the default for whether a provider is set.
    pub fn chain(&self) -> Vec<GeneratorKind> {
        if !self.generators.is_empty() {
            return self.generators.clone();
        }
        let mut chain = Vec::new();
        if self.openai_base_url.is_some() {
            chain.push(GeneratorKind::Openai);
        }
        chain.push(GeneratorKind::Extractive);
        chain
    }
}

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

/// An address (`10.0.0.7`) or a CIDR range (`10.0.0.0/8`).
fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("'{s}' is neither an IP address nor a CIDR range"))
}

/// A sampling temperature: a finite number from 0 to 2, as OpenAI accepts.
fn parse_temperature(raw: &str) -> Result<f32, String> {
    match raw.trim().parse::<f32>() {
        Ok(t) if (0.0..=2.0).contains(&t) => Ok(t),
        _ => Err(format!(
            "a temperature is a number from 0 to 2, not {raw:?}"
        )),
    }
}

fn parse_similarity(raw: &str) -> Result<f64, String> {
    match raw.trim().parse::<f64>() {
        Ok(s) if (0.0..=1.0).contains(&s) => Ok(s),
        _ => Err(format!("a similarity is a number from 0 to 1, not {raw:?}")),
    }
}

fn parse_secret(s: &str) -> Result<SecretString, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(SecretString::from(s.to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::parse_from([
            "kenning",
            "serve",
            "--addr",
            "0.0.0.0:8080",
            "--max-upload-bytes",
            "10",
            "--data-dir",
            "/tmp/k",
        ]);
        let Command::Serve(c) = cli.command else {
            panic!("expected serve")
        };
        assert_eq!(c.addr.port(), 8080);
        assert_eq!(c.max_upload_bytes, 10);
        assert_eq!(c.store.data_dir, PathBuf::from("/tmp/k"));
    }

    #[test]
    fn the_chain_defaults_to_extractive_and_prefers_a_configured_provider() {
        let parse = |args: &[&str]| {
            let mut all = vec!["kenning", "serve"];
            all.extend_from_slice(args);
            match Cli::parse_from(all).command {
                Command::Serve(c) => c.generate.chain(),
                _ => unreachable!(),
            }
        };
        use GeneratorKind::*;
        assert_eq!(parse(&[]), vec![Extractive]);
        assert_eq!(
            parse(&["--openai-base-url", "http://127.0.0.1:9/v1"]),
            vec![Openai, Extractive]
        );
        assert_eq!(
            parse(&["--generators", "local,extractive"]),
            vec![Local, Extractive]
        );
        assert_eq!(parse(&["--generators", "extractive"]), vec![Extractive]);
    }

    #[test]
    fn an_empty_database_url_is_rejected() {
        let r = Cli::try_parse_from(["kenning", "migrate", "--database-url", " "]);
        assert!(r.is_err());
    }
}
