//! Settings of the engine every command opens: the metadata store, ingestion and its models, the generators.

use super::*;

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
    /// half as fast; `local` is another name for it; only in builds with the `candle` feature)
    /// or `openai` (any OpenAI-compatible
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
