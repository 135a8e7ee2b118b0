//! The `kenning` binary; everything lives in the library so tests share the same startup path.

#[tokio::main]
async fn main() -> std::process::ExitCode {
    kenning::cli::run().await
}
