//! Every setting, by flag or environment variable, with its default; `kenning <command> --help`
//! is the reference. Nothing is baked in at build time.

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Kenning: a self-hosted knowledge assistant. Put documents into spaces, ask questions,
/// get answers with citations.
#[derive(Debug, Parser)]
#[command(name = "kenning", version, about, long_about = None)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// The things the binary can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web UI and the HTTP API (applies pending migrations first).
    Serve(ServeConfig),
    /// Apply pending database migrations and exit.
    Migrate(StoreConfig),
    /// Run ingestion workers only (no HTTP), for scaling ingestion out to more processes.
    Worker(WorkerConfig),
    /// Ingest a file or every file in a folder into a space (created if missing), with progress.
    Ingest(IngestCommand),
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

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,
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

    /// Where passage vectors live: `auto` is pgvector with DATABASE_URL, else exact search in the
    /// embedded database; `none` indexes for keyword search only.
    #[arg(long, env = "KENNING_VECTOR_STORE", value_enum, default_value_t = VectorBackend::Auto)]
    pub vector_store: VectorBackend,

    /// pgvector HNSW search breadth (`hnsw.ef_search`): higher finds more, slower.
    #[arg(long, env = "KENNING_PGVECTOR_EF_SEARCH", default_value_t = 100)]
    pub pgvector_ef_search: u32,

    /// Passages per embedding batch during ingestion.
    #[arg(long, env = "KENNING_EMBED_BATCH", default_value_t = 16)]
    pub embed_batch: usize,

    /// Cores the local embedder may use for ingestion. The default of 1 leaves the others to
    /// queries and serving (search stays fast while folders are ingested); raise it on a machine
    /// dedicated to ingestion.
    #[arg(long, env = "KENNING_EMBED_INGEST_THREADS", default_value_t = 1)]
    pub embed_ingest_threads: usize,
}

/// Vector store choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VectorBackend {
    Auto,
    Exact,
    Pgvector,
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

/// Settings of `kenning serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub ingest: IngestConfig,

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

    /// Time limit for ordinary requests, in seconds.
    #[arg(long, env = "KENNING_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Time limit for an upload, in seconds (large files on slow links need longer).
    #[arg(long, env = "KENNING_UPLOAD_TIMEOUT_SECS", default_value_t = 600)]
    pub upload_timeout_secs: u64,

    /// On SIGTERM or Ctrl-C, how long in-flight requests get to finish, in seconds.
    #[arg(long, env = "KENNING_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
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
                c
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
    fn an_empty_database_url_is_rejected() {
        let r = Cli::try_parse_from(["kenning", "migrate", "--database-url", " "]);
        assert!(r.is_err());
    }
}
