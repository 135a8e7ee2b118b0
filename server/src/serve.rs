//! The HTTP connection loop: hyper with a clock and a budget. A client that sends its first bytes,
//! an HTTP/2 preface or a request head slowly (slowloris), or holds a kept-alive HTTP/1 or
//! cleartext HTTP/2 connection idle, is cut off; request heads are size-capped; open connections
//! are bounded in total and per client address (an IPv6 /64 counts as one), so one host cannot
//! take every slot; TCP keepalive finds peers that vanished; and shutdown lets in-flight requests
//! finish.
//!
//! Each accepted connection is served by a task of its own that holds the connection's slot: it
//! waits (at most the header timeout) until the first bytes tell HTTP/1 from the HTTP/2 preface,
//! then serves HTTP while a watchdog closes the connection gracefully once it has had no request
//! in flight for the header timeout. An HTTP/2 client that ignores the GOAWAY is dropped one
//! header timeout later.

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use socket2::{SockRef, TcpKeepalive};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Connection-level limits.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Longest time to receive the first bytes and a request head, and to stay idle between
    /// requests (HTTP/1 keep-alive and HTTP/2 alike).
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Connections open at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv6 /64 counts as one), so one
    /// host cannot take every slot; more are closed at once. 0 turns the cap off.
    pub max_connections_per_ip: usize,
}

/// The HTTP/2 connection preface; a connection that starts any other way speaks HTTP/1.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Idle time before the kernel probes a silent peer, and the time between probes.
const TCP_KEEPALIVE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(10));
/// How long sent data may stay unacknowledged before the kernel gives up on the peer (Linux).
#[cfg(any(target_os = "linux", target_os = "android"))]
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts and serves connections until `stop` resolves, then waits for open connections to
/// finish their requests (the caller bounds that wait).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let shared = Arc::new(Shared {
        router,
        builder,
        idle: limits.header_read_timeout,
        stop: CancellationToken::new(),
    });
    let capacity = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let slots = Arc::new(Semaphore::new(capacity as usize));
    let per_address = Arc::new(PerAddress::new(limits.max_connections_per_ip));
    // A slot taken but not used (the accept failed or the address was over its cap).
    let mut unused: Option<OwnedSemaphorePermit> = None;
    tokio::pin!(stop);
    loop {
        let permit = match unused.take() {
            Some(permit) => permit,
            None => tokio::select! {
                () = &mut stop => break,
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    unused = Some(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(address) = per_address.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "too many connections from one address; closing");
            drop(stream);
            unused = Some(permit);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(&shared, stream, peer).await;
            drop((permit, address));
        });
    }
    drop(listener);
    drop(unused);
    shared.stop.cancel();
    // Every open connection holds a slot, so all slots free means all connections have ended.
    let _ = slots.acquire_many(capacity).await;
}

/// What every connection task needs from the server.
struct Shared {
    router: Router,
    builder: Builder<TokioExecutor>,
    /// The header timeout: the deadline for the first bytes and the idle limit.
    idle: Duration,
    /// Cancelled when the server stops: connections finish their requests and close.
    stop: CancellationToken,
}

/// Serves one connection until the client leaves, it idles out, or the server stops.
async fn serve_connection(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    probe_dead_peers(&stream);
    let h2 = tokio::select! {
        () = shared.stop.cancelled() => return,
        known = tokio::time::timeout(shared.idle, protocol(&stream)) => match known {
            Ok(Ok(Some(h2))) => h2,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, %peer, "reading the first bytes failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no request within the header timeout; closing");
                return;
            }
        },
    };
    let activity = Arc::new(Activity::new());
    let counter = activity.clone();
    let router = shared.router.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let busy = counter.begin();
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(ConnectInfo(peer));
        let response = router.clone().oneshot(req);
        async move {
            let response = response.await;
            response.map(|r| r.map(|body| Body::new(Counted { body, _busy: busy })))
        }
    });
    let conn = shared
        .builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let wake = activity.quiet_since().unwrap_or_else(Instant::now) + shared.idle;
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            () = shared.stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
                activity.touch();
            }
            // HTTP/1 needs no clock once closing: hyper ends it after the response in flight.
            () = tokio::time::sleep_until(wake), if !closing || h2 => {
                let now = Instant::now();
                if activity.quiet_since().is_none_or(|t| t + shared.idle > now) {
                    continue;
                }
                if closing {
                    // HTTP/2 closes only once the client answers the GOAWAY's ping; this
                    // client has not, and has nothing in flight.
                    tracing::debug!(%peer, "idle HTTP/2 connection ignored GOAWAY; dropping");
                    return;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
                activity.touch();
            }
        }
    }
}

/// Waits for the first bytes, without consuming them, until they tell the protocol: `Some(true)`
/// for the whole HTTP/2 preface, `Some(false)` for anything else, `None` if the client closed.
async fn protocol(stream: &TcpStream) -> std::io::Result<Option<bool>> {
    let mut seen = [0u8; H2_PREFACE.len()];
    let mut pause = Duration::from_millis(10);
    loop {
        let n = stream.peek(&mut seen).await?;
        if n == 0 {
            return Ok(None);
        }
        if !H2_PREFACE.starts_with(&seen[..n]) {
            return Ok(Some(false));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        // Part of the preface: peek returns at once while bytes wait, so pause between looks.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(80));
    }
}

/// Lets the kernel notice peers that vanished without closing (TCP keepalive, user timeout), so
/// their slots come back; best effort.
fn probe_dead_peers(stream: &TcpStream) {
    let socket = SockRef::from(stream);
    let (time, interval) = TCP_KEEPALIVE;
    let _ = socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(time).with_interval(interval));
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = socket.set_tcp_user_timeout(Some(TCP_USER_TIMEOUT));
}

/// A connection's requests in flight and when one last started or ended, for the idle watchdog.
struct Activity {
    opened: Instant,
    /// Milliseconds after `opened` of the last start or end of a request.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Restarts the idle clock.
    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Release);
    }

    /// Since when nothing has been in flight; `None` while a request is.
    fn quiet_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.opened + Duration::from_millis(self.last_ms.load(Ordering::Acquire)))
    }

    /// Counts a request in flight until the returned guard drops.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }
}

/// One request in flight; dropped when its response body is sent, or the request is cancelled.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is sent or dropped, so a long
/// stream (an answer over SSE) does not look idle.
struct Counted {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Open connections per client address, so one host cannot take every connection slot. IPv6
/// clients count by their /64 (one host commonly holds a whole /64), IPv4 and IPv4-mapped IPv6
/// by address. Loopback counts like any other address.
struct PerAddress {
    /// Connections one address may hold; 0 means no cap.
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more connection from `ip`, or `None` when its address is at the cap.
    fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        // The same key rate limits use: IPv4 as is, IPv6 by its /64.
        let key = crate::http::limits::rate_key(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key).or_insert(0);
        if self.limit != 0 && *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            counts: self.clone(),
            key,
        })
    }
}

/// One connection counted against its address; gives the count back when dropped.
struct AddressSlot {
    counts: Arc<PerAddress>,
    key: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .counts
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let left = match open.get_mut(&self.key) {
            Some(count) => {
                *count = count.saturating_sub(1);
                *count
            }
            None => return,
        };
        if left == 0 {
            open.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP address")
    }

    #[test]
    fn ipv6_peers_in_one_slash_64_share_a_count() {
        let counts = Arc::new(PerAddress::new(2));
        let _a = counts.try_acquire(ip("2001:db8:1:2::1")).expect("first");
        let _b = counts
            .try_acquire(ip("2001:db8:1:2:ffff::9"))
            .expect("second");
        assert!(counts.try_acquire(ip("2001:db8:1:2:abcd::1")).is_none());
        assert!(counts.try_acquire(ip("2001:db8:1:3::1")).is_some());
    }

    #[test]
    fn ipv4_peers_are_counted_each_by_their_own_address() {
        let counts = Arc::new(PerAddress::new(1));
        let _a = counts.try_acquire(ip("192.0.2.1")).expect("first");
        assert!(counts.try_acquire(ip("192.0.2.1")).is_none());
        assert!(counts.try_acquire(ip("192.0.2.2")).is_some());
    }

    #[test]
    fn ipv4_mapped_ipv6_peers_count_as_their_ipv4_address() {
        let counts = Arc::new(PerAddress::new(1));
        let _a = counts.try_acquire(ip("192.0.2.1")).expect("first");
        assert!(counts.try_acquire(ip("::ffff:192.0.2.1")).is_none());
    }

    #[test]
    fn loopback_peers_are_capped_too() {
        let counts = Arc::new(PerAddress::new(1));
        let _a = counts.try_acquire(ip("127.0.0.1")).expect("first");
        assert!(counts.try_acquire(ip("127.0.0.1")).is_none());
    }

    #[test]
    fn a_closed_connection_gives_its_address_a_slot_back() {
        let counts = Arc::new(PerAddress::new(1));
        let first = counts.try_acquire(ip("192.0.2.1")).expect("first");
        drop(first);
        assert!(counts.try_acquire(ip("192.0.2.1")).is_some());
        drop(counts.try_acquire(ip("192.0.2.7")));
        let open = counts.open.lock().expect("lock");
        assert!(
            open.is_empty(),
            "released addresses are forgotten: {open:?}"
        );
    }

    #[test]
    fn a_cap_of_zero_refuses_no_one() {
        let counts = Arc::new(PerAddress::new(0));
        let held: Vec<_> = (0..100)
            .map(|_| counts.try_acquire(ip("192.0.2.1")))
            .collect();
        assert!(held.iter().all(Option::is_some));
    }

    #[test]
    fn a_request_is_in_flight_until_its_response_body_is_dropped() {
        let activity = Arc::new(Activity::new());
        assert!(activity.quiet_since().is_some());
        let body = Counted {
            body: Body::from("answer"),
            _busy: activity.begin(),
        };
        assert!(activity.quiet_since().is_none());
        drop(body);
        assert!(activity.quiet_since().is_some());
    }

    /// What `protocol` decides for a client that writes `parts`, pausing between them, and
    /// then closes its side.
    async fn decided(parts: &[&[u8]]) -> Option<bool> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("address"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
        let writer = tokio::spawn(async move {
            for part in parts {
                client.write_all(&part).await.expect("write");
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
            client.shutdown().await.expect("shutdown");
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
        let decided = tokio::time::timeout(Duration::from_secs(5), protocol(&server))
            .await
            .expect("decided in time")
            .expect("peek");
        writer.await.expect("writer");
        decided
    }

    #[tokio::test]
    async fn the_first_bytes_tell_http1_from_http2_and_eof_from_either() {
        assert_eq!(
            decided(&[b"GET / HTTP/1.1\r\n".as_slice()]).await,
            Some(false)
        );
        assert_eq!(
            decided(&[b"PRI * HTTP/1.1\r\n".as_slice()]).await,
            Some(false)
        );
        assert_eq!(decided(&[H2_PREFACE]).await, Some(true));
        assert_eq!(
            decided(&[&H2_PREFACE[..5], &H2_PREFACE[5..16], &H2_PREFACE[16..]]).await,
            Some(true)
        );
        assert_eq!(decided(&[]).await, None);
    }
}
