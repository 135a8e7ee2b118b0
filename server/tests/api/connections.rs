//! Connection-level abuse: a client that sends its request head slowly (slowloris) is cut off,
//! an oversized head is refused with 431, and ordinary keep-alive traffic is unaffected.
//! Connections that send nothing, half an HTTP/2 preface, or sit idle on cleartext HTTP/2 are
//! closed and give their slots back, and one address cannot take every connection slot.

use crate::helpers::{spawn_app_with, Backend, Options, TestApp};
use kenning::config::ServeConfig;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
        slow.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n").as_bytes())
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
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nX-Filler: {filler}\r\n\r\n")
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
            // Single-user mode answers only to its own host name and port.
            ok.write_all(
                format!("GET /health/liveness HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
            )
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

/// A server on SQLite with `change` applied to its settings, and its `host:port`.
async fn app_with(change: impl FnOnce(&mut ServeConfig) + Send + 'static) -> (TestApp, String) {
    let app = spawn_app_with(
        Backend::Sqlite,
        Options {
            serve: Box::new(change),
            ..Options::default()
        },
    )
    .await;
    let addr = app.address.trim_start_matches("http://").to_string();
    (app, addr)
}

/// Reads (and discards) until the server closes the connection, with EOF or a reset; whether
/// that happened `within` the time given.
async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// Whether `GET /health/liveness` answers 200 on a fresh connection, within 5 s.
async fn liveness_answers(app: &TestApp) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    match client.get(app.url("/health/liveness")).send().await {
        Ok(r) if r.status() == 200 => Ok(()),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_free_their_slots() {
    let (app, addr) = app_with(|c| {
        c.max_connections = 5;
        c.header_read_timeout_secs = 1;
    })
    .await;

    // Two more than there are slots: the last two wait in the backlog for a slot to free.
    let mut silent = Vec::new();
    for _ in 0..7 {
        silent.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    let closed = futures::future::join_all(
        silent
            .iter_mut()
            .map(|s| closed_within(s, Duration::from_secs(4))),
    )
    .await;

    assert!(
        closed.iter().all(|c| *c),
        "silent connections still open after 4 s: {closed:?}"
    );
    liveness_answers(&app)
        .await
        .expect("the server answers once the silent connections are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_http2_preface_is_cut_off() {
    let (_app, addr) = app_with(|c| c.header_read_timeout_secs = 1).await;

    let mut stalled = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stalled
        .write_all(b"PRI * HTTP/2.0\r\n")
        .await
        .expect("write");

    assert!(
        closed_within(&mut stalled, Duration::from_secs(3)).await,
        "a connection stalled inside the HTTP/2 preface stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2c_connections_are_closed() {
    let (_app, addr) = app_with(|c| c.header_read_timeout_secs = 1).await;

    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame, then silence. The
    // server's SETTINGS, GOAWAY and PING are read and never answered.
    let mut idle = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("write preface");
    idle.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("write settings");

    assert!(
        closed_within(&mut idle, Duration::from_secs(4)).await,
        "an idle HTTP/2 connection stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection_slot() {
    let (app, addr) = app_with(|c| {
        c.max_connections = 50;
        c.max_connections_per_ip = 3;
        c.header_read_timeout_secs = 5;
    })
    .await;

    // Three connections from 127.0.0.1 each hold a slot with half a request line.
    let mut hogs = Vec::new();
    for _ in 0..3 {
        let mut hog = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connect");
        hog.write_all(b"GET /health/liveness HT")
            .await
            .expect("write");
        hogs.push(hog);
    }

    // A fourth from the same address is closed at once, long before the header timeout.
    let mut fourth = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let started = Instant::now();
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).await,
        "a connection over the per-address cap was kept open"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    // Once the three close, the address may connect again.
    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match liveness_answers(&app).await {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "requests still refused after the three closed: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
