//! Every setting, by flag or environment variable, with its default; `kenning <command> --help`
//! is the reference. Nothing is baked in at build time.

mod engine;
mod serve;
mod values;

pub use engine::*;
pub use serve::*;

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
    /// Write brotli and gzip copies beside the UI's built files (`.br`, `.gz`), so they are
    /// served compressed at the highest level without compressing per request. Run after a build.
    Precompress(PrecompressCommand),
}

/// What `kenning precompress` compresses.
#[derive(Debug, Args)]
pub struct PrecompressCommand {
    /// The built site: its `.wasm`, `.js`, `.css`, `.svg` and `.json` files of 1 KiB or more.
    #[arg(default_value = "target/site")]
    pub dir: PathBuf,
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
