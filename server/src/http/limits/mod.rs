//! Rate limits and load shedding in front of the APIs: a client that asks too fast gets `429`
//! with the time to come back, a saturated server answers `503` at once, and neither becomes an
//! unbounded queue. Limits are GCRA per client and route class: in process (governor), or shared
//! by every instance through Redis (one atomic Lua script) when `REDIS_URL` is set, falling back
//! to the in-process limiter whenever Redis does not answer in time.

mod answers;

pub use answers::{AnswerSlots, Refused};

pub use super::policy::RouteClass;
pub use crate::config::{Rate, RateLimit};
use crate::http::ApiError;
use crate::redis_link::RedisLink;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// The governor quota of a limit; `None` when it is off.
fn quota(limit: RateLimit) -> Option<Quota> {
    let rate = limit.rate()?;
    let burst = NonZeroU32::new(rate.burst)?;
    Quota::with_period(rate.period / rate.count).map(|q| q.allow_burst(burst))
}

type Limiter = DefaultKeyedRateLimiter<Client, StateInformationMiddleware>;

/// Whom a request counts against: its account when it has one (so a user's allowance follows
/// them across addresses and keys), else its address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    Account(String),
    Addr(IpAddr),
    /// A space's allowance, shared by all its callers.
    Space(String),
}

impl std::fmt::Display for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Client::Account(id) => write!(f, "user:{id}"),
            Client::Addr(ip) => write!(f, "ip:{ip}"),
            Client::Space(id) => write!(f, "space:{id}"),
        }
    }
}

/// One class's limiter and the figures its headers report.
struct ClassLimit {
    limiter: Limiter,
    burst: u32,
    /// Time for one request's worth of capacity to come back.
    interval: Duration,
}

impl ClassLimit {
    /// The headers of an admitted request: the reset is when the whole burst is back.
    fn admitted(&self, remaining: u32) -> HeaderMap {
        let refill = self.interval * self.burst.saturating_sub(remaining);
        rate_headers(self.burst, remaining, refill)
    }
}

/// The process's limits, shared by every request.
pub struct Limits {
    classes: [Option<ClassLimit>; 5],
    /// The per-space allowance, when one is configured.
    space: Option<ClassLimit>,
    trusted_proxies: Vec<ipnet::IpNet>,
    answers: AnswerSlots,
    /// How long an answer waits for a reader that takes nothing before it is abandoned.
    answer_stall: Duration,
    clock: DefaultClock,
    shared: Option<SharedLimiter>,
}

/// GCRA in Redis. The theoretical arrival time of a client's next request lives under one key
/// per class and client; Redis's clock is the one clock every instance agrees on. Returns
/// `{admitted (0|1), wait_ms, remaining}`.
const GCRA_SCRIPT: &str = r#"
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - interval * burst
if allow_at > now then
  return {0, allow_at - now, 0}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, 0, math.floor((now - allow_at) / interval)}
"#;

/// The Redis side of the limits: the shared link and the script.
struct SharedLimiter {
    link: Arc<RedisLink>,
    script: redis::Script,
}

impl SharedLimiter {
    /// Runs the script for one request; `None` when Redis did not answer in time.
    async fn check(&self, key: &str, interval: Duration, burst: u32) -> Option<(bool, u64, u32)> {
        let interval_ms = interval.as_millis().max(1) as u64;
        let (admitted, wait_ms, remaining) = self
            .link
            .run(|mut conn| async move {
                self.script
                    .key(key)
                    .arg(interval_ms)
                    .arg(burst)
                    .invoke_async::<(i64, i64, i64)>(&mut conn)
                    .await
            })
            .await?;
        Some((
            admitted == 1,
            u64::try_from(wait_ms).unwrap_or(0),
            u32::try_from(remaining).unwrap_or(0),
        ))
    }
}

impl Limits {
    /// Limits per class (in `RouteClass` order: chat, search, upload, other) and the most answers
    /// streaming at once.
    pub fn new(
        chat: RateLimit,
        search: RateLimit,
        upload: RateLimit,
        other: RateLimit,
        max_concurrent_chats: usize,
    ) -> Self {
        let class = class_limit;

        Self {
            classes: [
                class(chat),
                class(search),
                class(upload),
                class(other),
                None,
            ],
            space: None,
            answers: AnswerSlots::new(max_concurrent_chats, 0),
            answer_stall: Duration::from_secs(30),
            clock: DefaultClock::default(),
            shared: None,
            trusted_proxies: Vec::new(),
        }
    }

    /// Proxies whose `X-Forwarded-For` is believed: behind a load balancer, the client is the
    /// address it saw, not the balancer.
    pub fn with_trusted_proxies(mut self, proxies: Vec<ipnet::IpNet>) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client a request counts against: the peer, or, when the peer is a trusted proxy, the
    /// nearest address in `X-Forwarded-For` that is not one of our proxies (a client cannot
    /// forge its way past them: only what trusted hops appended is read).
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusted(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        // From the right, the first hop we do not run; when all are ours, the nearest of them.
        // Never the left-most: that one is whatever the client wrote.
        hops.iter()
            .rev()
            .find(|ip| !self.trusted(**ip))
            .or(hops.last())
            .copied()
            .unwrap_or(peer)
    }

    /// Shares the limits through Redis; each check waits at most the link's time limit before
    /// this process decides alone.
    pub fn with_redis(mut self, link: Arc<RedisLink>) -> Self {
        self.shared = Some(SharedLimiter {
            link,
            script: redis::Script::new(GCRA_SCRIPT),
        });
        self
    }

    /// Forgets clients whose allowance is full again, so the table holds only recent clients.
    fn sweep(&self) {
        for class in self.classes.iter().chain([&self.space]).flatten() {
            class.limiter.retain_recent();
            class.limiter.shrink_to_fit();
        }
    }

    /// Clients currently remembered across all classes.
    pub fn tracked_clients(&self) -> usize {
        self.classes
            .iter()
            .chain([&self.space])
            .flatten()
            .map(|c| c.limiter.len())
            .sum()
    }

    /// Sweeps the client tables every `every` while the limits are alive.
    pub fn spawn_sweeper(self: &Arc<Self>, every: Duration) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limits) => limits.sweep(),
                    None => break,
                }
            }
        });
    }

    /// Admits or refuses one request, through Redis when limits are shared and it answers.
    async fn check_shared(
        &self,
        class: RouteClass,
        client: Client,
    ) -> Result<HeaderMap, Box<Response>> {
        match &self.classes[class.index()] {
            Some(limit) => self.admit(class.as_str(), limit, class, &client).await,
            None => Ok(HeaderMap::new()),
        }
    }

    /// One check of `limit` for `client`, under `label` in Redis when limits are shared.
    async fn admit(
        &self,
        label: &str,
        limit: &ClassLimit,
        class: RouteClass,
        client: &Client,
    ) -> Result<HeaderMap, Box<Response>> {
        if let Some(shared) = &self.shared {
            let key = format!("kenning:ratelimit:{label}:{client}");
            if let Some((admitted, wait_ms, remaining)) =
                shared.check(&key, limit.interval, limit.burst).await
            {
                return if admitted {
                    Ok(limit.admitted(remaining))
                } else {
                    Err(Box::new(refusal(
                        class,
                        limit.burst,
                        Duration::from_millis(wait_ms),
                    )))
                };
            }
        }
        self.local(limit, class, client)
    }

    /// Admits or refuses one request of `class` from `client`, with the headers to send either way.
    #[cfg(test)]
    fn check(&self, class: RouteClass, client: &Client) -> Result<HeaderMap, Box<Response>> {
        match &self.classes[class.index()] {
            Some(limit) => self.local(limit, class, client),
            None => Ok(HeaderMap::new()),
        }
    }

    fn local(
        &self,
        limit: &ClassLimit,
        class: RouteClass,
        client: &Client,
    ) -> Result<HeaderMap, Box<Response>> {
        match limit.limiter.check_key(client) {
            Ok(state) => Ok(limit.admitted(state.remaining_burst_capacity())),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Err(Box::new(refusal(class, limit.burst, wait)))
            }
        }
    }

    /// At most `per_caller` answers streaming at once for one account or client address (0: no
    /// cap), and how long an answer waits for a reader that stopped taking it.
    pub fn with_answer_caps(
        mut self,
        max_concurrent: usize,
        per_caller: usize,
        stall: Duration,
    ) -> Self {
        self.answers = AnswerSlots::new(max_concurrent, per_caller);
        self.answer_stall = stall;
        self
    }

    /// The limit on sign-in attempts per client, against password guessing.
    pub fn with_sign_in_limit(mut self, limit: RateLimit) -> Self {
        self.classes[RouteClass::SignIn.index()] = class_limit(limit);
        self
    }

    /// A limit per space (tenant) on questions, searches and uploads from all its callers
    /// together, so one busy space cannot take the whole server.
    pub fn with_space_limit(mut self, limit: RateLimit) -> Self {
        self.space = class_limit(limit);
        self
    }

    /// Admits or refuses a request against its space's shared allowance.
    async fn check_space(
        &self,
        class: RouteClass,
        space: Option<&str>,
    ) -> Result<(), Box<Response>> {
        let (Some(limit), Some(space)) = (&self.space, space.and_then(canonical_space)) else {
            return Ok(());
        };
        if matches!(class, RouteClass::Other | RouteClass::SignIn) {
            return Ok(());
        }
        self.admit("space", limit, class, &Client::Space(space))
            .await
            .map(|_| ())
    }
}

/// The address a client is limited by: IPv6 hosts get a /64 each, so one host cannot rotate
/// through its billions of addresses; IPv4 (and IPv4-mapped IPv6) addresses count alone.
pub fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The space a path's `{id}` names, as its canonical id: another spelling of the same id (upper
/// case, braces) is the same space and shares its allowance; a segment that is no id names no
/// space (the request will be answered 404).
fn canonical_space(id: &str) -> Option<String> {
    uuid::Uuid::parse_str(id).ok().map(|id| id.to_string())
}

fn class_limit(limit: RateLimit) -> Option<ClassLimit> {
    let quota = quota(limit)?;
    Some(ClassLimit {
        limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        burst: quota.burst_size().get(),
        interval: quota.replenish_interval(),
    })
}

/// A 429 for `class`, telling the client how long to wait.
fn refusal(class: RouteClass, burst: u32, wait: Duration) -> Response {
    crate::metrics::global().record_refused(class.as_str(), "rate_limited");
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "Too many {} requests; try again in {} s.",
            class.as_str(),
            ceil_secs(wait)
        ),
    )
    .into_response();
    let headers = response.headers_mut();
    headers.extend(rate_headers(burst, 0, wait));
    headers.insert("retry-after", HeaderValue::from(ceil_secs(wait).max(1)));
    response
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn rate_headers(limit: u32, remaining: u32, reset: Duration) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("ratelimit-limit", HeaderValue::from(limit));
    h.insert("ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("ratelimit-reset", HeaderValue::from(ceil_secs(reset)));
    h
}

/// The middleware: classifies, rate-limits by client address, and sheds answers beyond the
/// concurrency cap (the permit lives as long as the answer's stream).
pub async fn enforce(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let decided = super::policy::of(&req);
    let Some(class) = decided.policy.class else {
        return next.run(req).await;
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let client = match req
        .extensions()
        .get::<crate::auth::Caller>()
        .and_then(|c| c.user_id.clone())
    {
        Some(account) => Client::Account(account),
        None => Client::Addr(rate_key(limits.client_address(peer, req.headers()))),
    };
    let client_key = client.to_string();
    let headers = match limits.check_shared(class, client).await {
        Ok(headers) => headers,
        Err(refused) => return *refused,
    };
    if let Err(refused) = limits.check_space(class, decided.space.as_deref()).await {
        return *refused;
    }
    let slot = if class == RouteClass::Chat {
        match limits.answers.try_acquire(&client_key) {
            Ok(slot) => Some(slot),
            Err(refused) => return answer_refusal(refused),
        }
    } else {
        None
    };
    let mut response = next.run(req).await;
    response.headers_mut().extend(headers);
    match slot {
        None => response,
        Some(slot) => {
            let stall = limits.answer_stall;
            response.map(|body| answers::relay(body, slot, stall))
        }
    }
}

/// A 503 when the server streams all the answers it may, a 429 when this caller does.
fn answer_refusal(refused: Refused) -> Response {
    let (status, code, message) = match refused {
        Refused::Server(n) => {
            crate::metrics::global().record_refused("chat", "overloaded");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("The server is answering {n} questions already; try again in a moment."),
            )
        }
        Refused::Caller(n) => {
            crate::metrics::global().record_refused("chat", "caller_busy");
            (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_concurrent_answers",
                format!("You have {n} answers streaming already; wait for one to finish."),
            )
        }
    };
    let mut response = ApiError::new(status, code, message).into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(1u64));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_as_written_and_print_back() {
        let r: RateLimit = "60/min".parse().unwrap();
        assert_eq!(
            r.rate(),
            Some(Rate {
                count: 60,
                period: Duration::from_secs(60),
                burst: 60
            })
        );
        let r: RateLimit = "10/s,burst=20".parse().unwrap();
        assert_eq!(r.rate().map(|r| r.burst), Some(20));
        assert_eq!(r.to_string(), "10/s,burst=20");
        assert_eq!("off".parse::<RateLimit>().unwrap(), RateLimit::OFF);
        for bad in [
            "",
            "60",
            "0/min",
            "60/week",
            "5/s,burst=0",
            "5/s,bust=3",
            "x/s",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn the_client_behind_a_trusted_proxy_is_the_forwarded_address() {
        let limits = Limits::new(
            RateLimit::OFF,
            RateLimit::OFF,
            RateLimit::OFF,
            RateLimit::OFF,
            1,
        )
        .with_trusted_proxies(vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.168.1.5/32".parse().unwrap(),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let with_xff = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(v).unwrap());
            h
        };
        // Untrusted peers are the client, whatever they claim.
        assert_eq!(
            limits.client_address(ip("203.0.113.9"), &with_xff("1.2.3.4")),
            ip("203.0.113.9")
        );
        // A trusted balancer: the last untrusted hop, not what the client prepended.
        assert_eq!(
            limits.client_address(
                ip("10.1.2.3"),
                &with_xff("6.6.6.6, 198.51.100.7, 192.168.1.5")
            ),
            ip("198.51.100.7")
        );
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            limits.client_address(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        // Every hop trusted: the nearest one, never the left-most, which anyone can write.
        assert_eq!(
            limits.client_address(ip("10.1.2.3"), &with_xff("10.9.9.9, 10.4.4.4")),
            ip("10.4.4.4")
        );
    }

    #[test]
    fn ipv6_clients_count_by_their_slash_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            rate_key(ip("2001:db8:1:2:aaaa::1")),
            rate_key(ip("2001:db8:1:2:ffff:1:2:3"))
        );
        assert_ne!(
            rate_key(ip("2001:db8:1:2::1")),
            rate_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(rate_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(rate_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    #[test]
    fn one_space_is_one_key_however_its_id_is_written() {
        let policies = crate::http::test_policies();
        let space_of = |path: &str| {
            let decided = policies.decide(&axum::http::Method::POST, path);
            decided.space.as_deref().and_then(canonical_space)
        };
        let id = "0190f5a2-7c1e-7000-8000-000000000000";
        let upper = id.to_uppercase();
        assert_eq!(
            space_of(&format!("/api/v1/spaces/{id}/search")),
            Some(id.to_string())
        );
        assert_eq!(
            space_of(&format!("/api/v1/spaces/{upper}/chat")),
            Some(id.to_string())
        );
        assert_eq!(
            space_of(&format!("/api/v1/spaces/{{{id}}}/chat")),
            Some(id.to_string())
        );
        assert_eq!(space_of("/api/v1/spaces/not-an-id/chat"), None);
    }

    #[test]
    fn a_client_over_its_burst_is_refused_with_the_wait_and_others_are_not() {
        let limits = Limits::new(
            "2/min".parse().unwrap(),
            RateLimit::OFF,
            RateLimit::OFF,
            RateLimit::OFF,
            4,
        );
        let a = Client::Addr("10.0.0.1".parse().unwrap());
        let b = Client::Addr("10.0.0.2".parse().unwrap());
        let first = limits.check(RouteClass::Chat, &a).unwrap();
        assert_eq!(first["ratelimit-remaining"], "1");
        assert!(limits.check(RouteClass::Chat, &a).is_ok());
        let refused = limits.check(RouteClass::Chat, &a).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=30).contains(&wait), "retry after {wait} s");
        assert_eq!(refused.headers()["ratelimit-remaining"], "0");
        assert!(limits.check(RouteClass::Chat, &b).is_ok(), "another client");
        assert!(
            limits.check(RouteClass::Search, &a).is_ok(),
            "another class"
        );
        assert_eq!(limits.tracked_clients(), 2);
    }
}
