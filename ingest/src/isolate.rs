//! Parsing in a child process: the parser gets an address-space and CPU-time limit and a
//! wall-clock deadline, so a decompression bomb or a parser stuck in a loop costs one child
//! and fails its job for good, instead of exhausting the server or holding a worker while its
//! heartbeat keeps the lease. The child is this same binary, started with a hidden subcommand;
//! it reads the file on stdin and writes the text on stdout.

use super::parse::{self, Format, ParseError, Parsed};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

/// The hidden subcommand the child runs; `main` checks for it before starting a runtime.
pub const SUBCOMMAND: &str = "parse-document";

/// Exit code of a child whose parser refused the file (its reason is on stderr).
const REFUSED: u8 = 2;

/// How one document's parse is bounded.
#[derive(Clone, Debug)]
pub struct ParseLimits {
    /// The binary to run as the child; `None` parses in this process (unit tests), with only
    /// the text cap.
    pub program: Option<PathBuf>,
    /// Address space the child may use.
    pub memory_bytes: u64,
    /// Wall-clock (and CPU-time) budget of one parse.
    pub timeout: Duration,
    /// Longest text one document may yield.
    pub max_text_bytes: usize,
}

impl ParseLimits {
    /// The bounds the operator set.
    pub fn from_config(config: &kenning_core::config::IngestConfig) -> Self {
        Self {
            program: config.parse_program.clone(),
            memory_bytes: config.parse_memory_mb.saturating_mul(1 << 20),
            timeout: Duration::from_secs(config.parse_timeout_secs),
            max_text_bytes: usize::try_from(config.max_document_text_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
        }
    }

    /// In-process parsing with generous caps, for tests that drive workers directly.
    pub fn in_process() -> Self {
        Self {
            program: None,
            memory_bytes: 1 << 30,
            timeout: Duration::from_secs(120),
            max_text_bytes: 64 << 20,
        }
    }
}

/// Why an isolated parse produced no text.
#[derive(Debug)]
pub enum ParseFailure {
    /// The file will never parse within the limits: fail the job for good.
    Permanent(String),
    /// The child could not be started or talked to: worth another attempt.
    Transient(String),
}

/// Parses `bytes` as `format` within `limits`.
pub async fn parse_bounded(
    limits: &ParseLimits,
    format: Format,
    bytes: Vec<u8>,
) -> Result<Parsed, ParseFailure> {
    let parsed = match &limits.program {
        Some(program) => in_child(program, limits, format, bytes).await?,
        None => tokio::task::spawn_blocking(move || parse::parse(format, &bytes))
            .await
            .map_err(|e| ParseFailure::Transient(format!("parser task failed: {e}")))?
            .map_err(|e| ParseFailure::Permanent(e.0))?,
    };
    if parsed.text.len() > limits.max_text_bytes {
        return Err(too_much_text(limits));
    }
    Ok(parsed)
}

fn too_much_text(limits: &ParseLimits) -> ParseFailure {
    ParseFailure::Permanent(format!(
        "The document's text is larger than the {} MB one document may hold.",
        limits.max_text_bytes >> 20
    ))
}

async fn in_child(
    program: &Path,
    limits: &ParseLimits,
    format: Format,
    bytes: Vec<u8>,
) -> Result<Parsed, ParseFailure> {
    let program = program.to_path_buf();
    let run_limits = limits.clone();
    let ran = tokio::task::spawn_blocking(move || run_child(&program, &run_limits, format, bytes))
        .await
        .map_err(|e| ParseFailure::Transient(format!("parser task failed: {e}")))??;
    let Ran {
        out,
        err,
        status,
        timed_out,
    } = ran;
    if timed_out {
        return Err(ParseFailure::Permanent(format!(
            "Reading the document took longer than the {} s allowed.",
            limits.timeout.as_secs()
        )));
    }
    if out.len() > limits.max_text_bytes + 1 {
        return Err(too_much_text(limits));
    }
    match status.code() {
        Some(0) => decode(out),
        Some(code) if code == i32::from(REFUSED) => {
            Err(ParseFailure::Permanent(if err.is_empty() {
                "The file could not be read.".into()
            } else {
                err
            }))
        }
        _ => Err(ParseFailure::Permanent(stopped(&status, &err, limits))),
    }
}

/// What a child left behind.
struct Ran {
    out: Vec<u8>,
    err: String,
    status: std::process::ExitStatus,
    timed_out: bool,
}

/// Runs the child to its end on this (blocking) thread: the file is written and the answer
/// read on threads of their own, so neither pipe can fill up and stall the other, and the
/// child is killed at the deadline.
fn run_child(
    program: &Path,
    limits: &ParseLimits,
    format: Format,
    bytes: Vec<u8>,
) -> Result<Ran, ParseFailure> {
    let cpu_secs = limits.timeout.as_secs().max(1);
    let mut child = std::process::Command::new(program)
        .arg(SUBCOMMAND)
        .arg(format.mime())
        .arg(limits.memory_bytes.to_string())
        .arg(cpu_secs.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so a deadline ends whatever it started too.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ParseFailure::Transient(format!(
                "could not start the parser ({}): {e}",
                program.display()
            ))
        })?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ParseFailure::Transient(
            "the parser's pipes were not set up".into(),
        ));
    };
    // A child that dies early closes its stdin; its exit status tells why.
    let feed = std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    // One byte past the cap is enough to know the text is too long.
    let cap = limits.max_text_bytes as u64 + 2;
    let answer = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.take(cap).read_to_end(&mut out).map(|_| out)
    });
    let complaint = std::thread::spawn(move || {
        let mut err = Vec::new();
        let _ = stderr.take(4096).read_to_end(&mut err);
        String::from_utf8_lossy(&err).trim().to_string()
    });
    let deadline = std::time::Instant::now() + limits.timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if std::time::Instant::now() >= deadline => {
                timed_out = true;
                // Not yet reaped, so the group is still this child's.
                let group = rustix::process::Pid::from_child(&child);
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                let _ = child.kill();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ParseFailure::Transient(format!(
                    "waiting for the parser failed: {e}"
                )));
            }
        }
    };
    // Past the cap the reader stops and closes its end, so the child's next write fails and it
    // ends on its own.
    let out = answer
        .join()
        .map_err(|_| ParseFailure::Transient("the parser's reader failed".into()))?
        .map_err(|e| ParseFailure::Transient(format!("reading the parser failed: {e}")))?;
    let _ = feed.join();
    let err = complaint.join().unwrap_or_default();
    Ok(Ran {
        out,
        err,
        status,
        timed_out,
    })
}

/// Why a child ended without an answer, in words for the document's error.
fn stopped(status: &std::process::ExitStatus, stderr: &str, limits: &ParseLimits) -> String {
    use std::os::unix::process::ExitStatusExt;
    let mb = limits.memory_bytes >> 20;
    if stderr.contains("memory allocation") || stderr.contains("capacity overflow") {
        return format!("Reading the document needed more than the {mb} MB allowed.");
    }
    match status.signal() {
        Some(SIGXCPU) => format!(
            "Reading the document took more than the {} s of processor time allowed.",
            limits.timeout.as_secs()
        ),
        Some(signal) => format!(
            "The parser stopped (signal {signal}); the document may need more than the {mb} MB \
             allowed, or be damaged."
        ),
        None => format!("The parser stopped unexpectedly ({status})."),
    }
}

/// Linux's signal for an exceeded CPU-time limit.
const SIGXCPU: i32 = 24;

/// The child's answer: one byte for the Markdown flag, then the text.
fn decode(out: Vec<u8>) -> Result<Parsed, ParseFailure> {
    let Some((&flag, text)) = out.split_first() else {
        return Err(ParseFailure::Transient(
            "the parser answered nothing".into(),
        ));
    };
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| ParseFailure::Transient("the parser answered invalid text".into()))?;
    Ok(Parsed {
        text,
        markdown: flag == b'M',
    })
}

/// The child: `parse-document <mime> <memory bytes> <cpu seconds>`, the file on stdin.
/// Limits itself before it reads a byte of the file.
pub fn child_main(args: &[OsString]) -> ExitCode {
    match child(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ChildError::Refused(e)) => {
            eprintln!("{e}");
            ExitCode::from(REFUSED)
        }
        Err(ChildError::Broken(e)) => {
            eprintln!("parser: {e}");
            ExitCode::FAILURE
        }
    }
}

enum ChildError {
    Refused(String),
    Broken(String),
}

fn child(args: &[OsString]) -> Result<(), ChildError> {
    let arg = |i: usize| {
        args.get(i).and_then(|a| a.to_str()).ok_or_else(|| {
            ChildError::Broken(format!(
                "usage: kenning {SUBCOMMAND} <mime> <memory bytes> <cpu seconds>"
            ))
        })
    };
    let format =
        Format::from_mime(arg(0)?).ok_or_else(|| ChildError::Broken("unknown format".into()))?;
    let memory: u64 = arg(1)?
        .parse()
        .map_err(|_| ChildError::Broken("memory is a number of bytes".into()))?;
    let cpu: u64 = arg(2)?
        .parse()
        .map_err(|_| ChildError::Broken("cpu is a number of seconds".into()))?;
    limit(rustix::process::Resource::As, memory, memory)?;
    // SIGXCPU at the budget, SIGKILL shortly after if the parser ignores it.
    limit(rustix::process::Resource::Cpu, cpu, cpu.saturating_add(5))?;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| ChildError::Broken(format!("reading the file: {e}")))?;
    let parsed = parse::parse(format, &bytes).map_err(|ParseError(e)| ChildError::Refused(e))?;
    drop(bytes);
    let mut out = std::io::stdout().lock();
    out.write_all(if parsed.markdown { b"M" } else { b"T" })
        .and_then(|()| out.write_all(parsed.text.as_bytes()))
        .and_then(|()| out.flush())
        .map_err(|e| ChildError::Broken(format!("writing the text: {e}")))
}

fn limit(resource: rustix::process::Resource, soft: u64, hard: u64) -> Result<(), ChildError> {
    rustix::process::setrlimit(
        resource,
        rustix::process::Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        },
    )
    .map_err(|e| ChildError::Broken(format!("setting a limit: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in for the child: a shell script run with the child's arguments.
    fn script(dir: &tempfile::TempDir, body: &str) -> PathBuf {
        let path = dir.path().join("parser.sh");
        std::fs::write(&path, format!("#!/bin/sh\ncat >/dev/null\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn limits(program: PathBuf) -> ParseLimits {
        ParseLimits {
            program: Some(program),
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(1),
            max_text_bytes: 1 << 20,
        }
    }

    async fn outcome(body: &str) -> Result<Parsed, ParseFailure> {
        let dir = tempfile::tempdir().unwrap();
        let limits = limits(script(&dir, body));
        parse_bounded(&limits, Format::Text, b"some file".to_vec()).await
    }

    fn permanent(r: Result<Parsed, ParseFailure>) -> String {
        match r {
            Err(ParseFailure::Permanent(m)) => m,
            other => panic!("expected a permanent failure, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_childs_answer_is_the_text_and_its_kind() {
        let parsed = outcome("printf 'M# Title'").await.unwrap();
        assert_eq!(parsed.text, "# Title");
        assert!(parsed.markdown);
        let parsed = outcome("printf 'Tplain'").await.unwrap();
        assert!(!parsed.markdown);
    }

    #[tokio::test]
    async fn a_child_past_its_deadline_is_killed_and_the_job_fails_for_good() {
        let started = std::time::Instant::now();
        let message = permanent(outcome("sleep 30").await);
        assert!(message.contains("longer than the 1 s"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "killed at the deadline"
        );
    }

    #[tokio::test]
    async fn refusals_out_of_memory_and_crashes_say_why() {
        let refused = permanent(outcome("echo 'The PDF is damaged.' >&2; exit 2").await);
        assert_eq!(refused, "The PDF is damaged.");
        let oom = permanent(
            outcome("echo 'memory allocation of 4096 bytes failed' >&2; kill -ABRT $$").await,
        );
        assert!(oom.contains("more than the 256 MB"), "{oom}");
        let cpu = permanent(outcome("kill -XCPU $$").await);
        assert!(cpu.contains("processor time"), "{cpu}");
        let crash = permanent(outcome("kill -SEGV $$").await);
        assert!(crash.contains("signal 11"), "{crash}");
    }

    #[tokio::test]
    async fn a_child_that_writes_past_the_text_cap_is_cut_off() {
        let started = std::time::Instant::now();
        let message = permanent(outcome("printf T; yes aaaaaaaaaaaaaaaa").await);
        assert!(message.contains("larger than the 1 MB"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "cut off, not drained"
        );
    }

    #[tokio::test]
    async fn a_missing_parser_is_worth_another_attempt() {
        let limits = limits(PathBuf::from("/nonexistent/kenning"));
        assert!(matches!(
            parse_bounded(&limits, Format::Text, b"x".to_vec()).await,
            Err(ParseFailure::Transient(_))
        ));
    }

    #[test]
    fn the_child_refuses_what_its_parser_refuses() {
        // The child's own entry, minus stdin: bad arguments are reported, not panics.
        assert!(matches!(
            child(&[OsString::from("application/x-unknown")]),
            Err(ChildError::Broken(_))
        ));
    }
}
