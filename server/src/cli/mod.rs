//! Command dispatch for the `kenning` binary.

pub mod ingest;
pub mod precompress;
pub mod sync;

use crate::config::{Cli, Command};
use crate::startup::{shutdown_signal, Application};
use crate::store;
use clap::Parser;
use std::process::ExitCode;

/// Parses arguments, runs the chosen command and turns failures into a message and exit code 1.
pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    let telemetry = crate::telemetry::init(
        cli.log_format,
        cli.otlp_endpoint
            .as_deref()
            .map(|endpoint| crate::telemetry::Otlp {
                endpoint,
                service_name: &cli.otlp_service_name,
            }),
    );
    let result = match cli.command {
        Command::Serve(mut config) => {
            config.ingest.parse_program = std::env::current_exe().ok();
            serve(*config).await
        }
        Command::Migrate(config) => migrate(config).await,
        Command::Worker(mut config) => {
            config.ingest.parse_program = std::env::current_exe().ok();
            worker(config).await
        }
        Command::Ingest(cmd) => ingest(cmd).await,
        Command::Sync(cmd) => sync::run(&cmd, true).await.map(|_| ()),
        Command::Bench(cmd) => crate::bench::run_on_one_thread(cmd).await,
        Command::User(crate::config::UserCommand::Create(cmd)) => create_user(cmd).await,
        Command::Precompress(cmd) => precompress::run(&cmd.dir).await,
    };
    // Send the traces still buffered before the process ends.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: crate::config::ServeConfig) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let url = format!("http://{}", app.local_addr());
    tracing::info!(%url, "Kenning is ready");
    println!("Kenning is running at {url}");
    app.run_until_stopped(shutdown_signal()).await
}

async fn migrate(config: crate::config::StoreConfig) -> anyhow::Result<()> {
    let store = store::connect(&config).await?;
    store.migrate().await?;
    println!("migrations applied ({} store)", store.backend_name());
    Ok(())
}

async fn worker(config: crate::config::WorkerConfig) -> anyhow::Result<()> {
    let engine = crate::startup::Engine::open(&config.store, &config.ingest).await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let workers = crate::startup::spawn_workers(
        &engine,
        config.store.data_dir.clone(),
        &config.ingest,
        config.ingest.ingest_workers.max(1),
        std::sync::Arc::new(tokio::sync::Notify::new()),
        stop.clone(),
    )?;
    println!(
        "Kenning worker running ({} workers); Ctrl-C or SIGTERM to stop",
        workers.len()
    );
    shutdown_signal().await;
    stop.cancel();
    for w in workers {
        let _ = w.await;
    }
    Ok(())
}

async fn ingest(cmd: crate::config::IngestCommand) -> anyhow::Result<()> {
    let summary = ingest::run(&cmd, true).await?;
    print!("{summary}");
    if summary.failed.is_empty() && summary.skipped.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} file(s) were not ingested",
            summary.failed.len() + summary.skipped.len()
        )
    }
}

async fn create_user(cmd: crate::config::CreateUserCommand) -> anyhow::Result<()> {
    let password = match std::env::var("KENNING_USER_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    let store = store::connect(&cmd.store).await?;
    store.migrate().await?;
    let auth = crate::auth::Auth::new(store, true, std::time::Duration::from_secs(3600), 0, None)?;
    let user = auth
        .create_user(&cmd.email, &password, &cmd.display_name, cmd.admin, false)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.to_detail().message))?;
    println!(
        "created {} {} ({})",
        if user.is_admin { "admin" } else { "user" },
        user.email,
        user.id
    );
    Ok(())
}
