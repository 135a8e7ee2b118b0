//! Connection-level abuse: a client that sends its request head slowly (slowloris) is cut off,
//! an oversized head is refused with 431, and ordinary keep-alive traffic is unaffected.

use crate::helpers::{spawn_app_with, Backend, Options};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_oversized_request_heads_are_cut_off() {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(|c| {
                c.header_read_timeout_secs = 1;
                c.max_header_bytes = 16 * 1024;
            }),
            ..Options::default()
        },
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();

    let outcome = tokio::task::spawn_blocking(move || {
        // Slowloris: half a request head, then nothing.
        let mut slow = TcpStream::connect(&addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        slow.write_all(b"GET /health HTTP/1.1\r\nHost: kenning\r\n")
            .unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 1024];
        let read = slow.read(&mut buf);
        let slow_closed_after = started.elapsed();
        let slow_answer = String::from_utf8_lossy(&buf[..*read.as_ref().unwrap_or(&0)]).to_string();

        // A head over the limit.
        let mut big = TcpStream::connect(&addr).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let filler = "x".repeat(64 * 1024);
        let _ = big.write_all(
            format!("GET /health HTTP/1.1\r\nHost: kenning\r\nX-Filler: {filler}\r\n\r\n")
                .as_bytes(),
        );
        let mut answer = Vec::new();
        let _ = big.read_to_end(&mut answer);
        let big_answer = String::from_utf8_lossy(&answer).to_string();

        // Two requests on one kept-alive connection, well within the limits.
        let mut ok = TcpStream::connect(&addr).unwrap();
        ok.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut statuses = Vec::new();
        for _ in 0..2 {
            ok.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: kenning\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 4096];
            let n = ok.read(&mut buf).unwrap();
            statuses.push(
                String::from_utf8_lossy(&buf[..n])
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        (
            read.is_ok(),
            slow_closed_after,
            slow_answer,
            big_answer,
            statuses,
        )
    })
    .await
    .unwrap();
    let (slow_read_ok, slow_closed_after, slow_answer, big_answer, statuses) = outcome;

    assert!(
        slow_read_ok,
        "the slow connection was closed, not left hanging"
    );
    assert!(
        slow_closed_after < Duration::from_secs(4),
        "a slow request head held its connection for {slow_closed_after:?}"
    );
    assert!(!slow_answer.contains("200 OK"), "{slow_answer}");
    assert!(
        big_answer.starts_with("HTTP/1.1 431"),
        "an oversized head got: {}",
        big_answer.lines().next().unwrap_or_default()
    );
    assert_eq!(statuses, vec!["HTTP/1.1 200 OK", "HTTP/1.1 200 OK"]);
}
