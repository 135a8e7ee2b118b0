//! The `kenning` binary; everything lives in the library so tests share the same startup path.

fn main() -> std::process::ExitCode {
    // The document parser's child process: no runtime, no threads, limits set before any input.
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if args
        .first()
        .is_some_and(|a| a == kenning::ingest::isolate::SUBCOMMAND)
    {
        return kenning::ingest::isolate::child_main(&args[1..]);
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(kenning::cli::run()),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
