//! Web sources: one page, or a site crawled from its start page or sitemap. The server is on the
//! inside of someone's network, so fetching refuses private, loopback, link-local and metadata
//! addresses — after DNS resolution and again on every redirect — with loopback allowed only by
//! an explicit setting for tests on one machine; only `http`/`https`, with size and time caps.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use reqwest::Url;
use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One request's time limit, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 5;
/// Pages fetched at once from one site: polite, and enough to keep a sync moving.
pub const CONCURRENCY: usize = 2;

/// Whether an address is one a fetch on a user's behalf must never reach; loopback only when
/// `allow_loopback` is off.
pub fn forbidden(ip: IpAddr, allow_loopback: bool) -> bool {
    if allow_loopback && is_loopback(ip) {
        return false;
    }
    blocked(ip)
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return blocked(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// A source URL as given: parsed, `http`/`https` only, no credentials, fragment dropped.
pub fn parse_url(raw: &str) -> Result<Url, String> {
    let mut url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "Only http and https URLs can be sources, not {:?}.",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("The URL has no host.".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("Put no credentials in a source URL.".into());
    }
    url.set_fragment(None);
    Ok(url)
}

/// Refuses a URL whose host is an address literal in a forbidden range (names are checked when
/// they resolve).
fn check_literal(url: &Url, allow_loopback: bool) -> Result<(), String> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if forbidden(ip, allow_loopback) {
        return Err(format!(
            "{url} points at a private, loopback or link-local address, which sources may not fetch."
        ));
    }
    Ok(())
}

/// Resolves names and drops every forbidden address, so a name pointing inside fails.
struct GuardedResolver {
    allow_loopback: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| !forbidden(a.ip(), allow_loopback))
                .collect();
            if allowed.is_empty() {
                return Err(format!(
                    "{host} resolves only to private, loopback or link-local addresses, which sources may not fetch"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Fetches pages for sources with the guards above.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    allow_loopback: bool,
    max_bytes: u64,
}

/// A fetched page.
pub enum Fetched {
    /// The validator matched: the page is as it was.
    NotModified,
    Page {
        body: Vec<u8>,
        content_type: Option<String>,
        /// ETag or Last-Modified, to ask next time whether it changed.
        stamp: Option<String>,
        /// Where the page ended up after redirects.
        url: Url,
    },
}

impl Fetcher {
    /// A fetcher; `allow_loopback` lets tests fetch from a server on this machine.
    pub fn new(allow_loopback: bool, max_bytes: u64) -> Result<Self, String> {
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("too many redirects");
            }
            let url = attempt.url().clone();
            if !matches!(url.scheme(), "http" | "https") {
                return attempt.error(format!("a redirect to {} left http(s)", url.scheme()));
            }
            match check_literal(&url, allow_loopback) {
                Ok(()) => attempt.follow(),
                Err(e) => attempt.error(e),
            }
        });
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .redirect(policy)
            .user_agent(concat!(
                "Kenning/",
                env!("CARGO_PKG_VERSION"),
                " (source sync)"
            ))
            .dns_resolver(Arc::new(GuardedResolver { allow_loopback }))
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            allow_loopback,
            max_bytes,
        })
    }

    /// Fetches `url`, asking with `stamp` (an earlier ETag or Last-Modified) whether it changed.
    pub async fn fetch(&self, url: &Url, stamp: Option<&str>) -> Result<Fetched, String> {
        check_literal(url, self.allow_loopback)?;
        let mut headers = HeaderMap::new();
        if let Some(stamp) = stamp {
            let (name, value) = match stamp.split_once(':') {
                Some(("etag", v)) => ("if-none-match", v),
                Some(("modified", v)) => ("if-modified-since", v),
                _ => ("", ""),
            };
            if let (false, Ok(value)) = (name.is_empty(), HeaderValue::from_str(value)) {
                headers.insert(name, value);
            }
        }
        let mut response = self
            .http
            .get(url.clone())
            .headers(headers)
            .send()
            .await
            .map_err(|e| describe(url, &e))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(Fetched::NotModified);
        }
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let header = |name| {
            response
                .headers()
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        let stamp = header(ETAG)
            .map(|e| format!("etag:{e}"))
            .or_else(|| header(LAST_MODIFIED).map(|m| format!("modified:{m}")));
        let content_type = header(CONTENT_TYPE);
        let final_url = response.url().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| describe(url, &e))? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(format!("{url} is larger than {} bytes", self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched::Page {
            body,
            content_type,
            stamp,
            url: final_url,
        })
    }

    /// The pages of a site: the start page and the same-origin pages it links to, breadth first,
    /// at most `max_pages`, never a path robots.txt disallows. A start URL ending in `.xml` is
    /// read as a sitemap instead.
    pub async fn crawl(&self, start: &Url, max_pages: usize) -> Result<Vec<Url>, String> {
        let robots = self.robots(start).await;
        let allowed = |u: &Url| same_origin(start, u) && robots.allows(u.path());
        if start.path().ends_with(".xml") {
            let Fetched::Page { body, .. } = self.fetch(start, None).await? else {
                return Ok(Vec::new());
            };
            let mut pages: Vec<Url> = sitemap_locations(&body)
                .iter()
                .filter_map(|l| parse_url(l).ok())
                .filter(|u| allowed(u))
                .collect();
            pages.dedup();
            pages.truncate(max_pages);
            return Ok(pages);
        }
        if !robots.allows(start.path()) {
            return Err(format!("robots.txt of {start} disallows it"));
        }
        let mut seen: HashSet<Url> = HashSet::from([start.clone()]);
        let mut queue = VecDeque::from([start.clone()]);
        let mut pages = Vec::new();
        let mut first_error = None;
        while let Some(url) = queue.pop_front() {
            if pages.len() == max_pages {
                break;
            }
            let (body, content_type) = match self.fetch(&url, None).await {
                Ok(Fetched::Page {
                    body, content_type, ..
                }) => (body, content_type),
                Ok(Fetched::NotModified) => continue,
                Err(e) => {
                    first_error.get_or_insert(e);
                    continue;
                }
            };
            pages.push(url.clone());
            let html = content_type.as_deref().is_some_and(|t| t.contains("html"));
            if !html {
                continue;
            }
            for link in links(&body) {
                let Ok(mut next) = url.join(&link) else {
                    continue;
                };
                next.set_fragment(None);
                if allowed(&next) && seen.insert(next.clone()) {
                    queue.push_back(next);
                }
            }
        }
        match (pages.is_empty(), first_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(pages),
        }
    }

    async fn robots(&self, start: &Url) -> Robots {
        let Ok(url) = start.join("/robots.txt") else {
            return Robots::default();
        };
        match self.fetch(&url, None).await {
            Ok(Fetched::Page { body, .. }) => Robots::parse(&String::from_utf8_lossy(&body)),
            _ => Robots::default(),
        }
    }
}

fn describe(url: &Url, e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut message = format!("fetching {url} failed: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(&format!(": {s}"));
        source = s.source();
    }
    message
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `href` targets of an HTML page.
fn links(html: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(html);
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find("href") {
        let mut i = at + found + 4;
        at = i;
        let bytes = lower.as_bytes();
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (start, end) = match bytes.get(i) {
            Some(q @ (b'"' | b'\'')) => {
                let Some(len) = lower[i + 1..].find(*q as char) else {
                    break;
                };
                (i + 1, i + 1 + len)
            }
            Some(_) => {
                let len = lower[i..]
                    .find(|c: char| c.is_ascii_whitespace() || c == '>')
                    .unwrap_or(lower.len() - i);
                (i, i + len)
            }
            None => break,
        };
        let link = text[start..end].replace("&amp;", "&");
        if !link.is_empty() && !link.starts_with('#') {
            out.push(link);
        }
        at = end;
    }
    out
}

/// The `<loc>` entries of a sitemap.
fn sitemap_locations(xml: &[u8]) -> Vec<String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut out = Vec::new();
    let mut in_loc = false;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(e)) => in_loc = e.local_name().as_ref() == b"loc",
            Ok(quick_xml::events::Event::End(_)) => in_loc = false,
            Ok(quick_xml::events::Event::Text(t)) if in_loc => {
                if let Ok(s) = t.decode() {
                    out.push(s.trim().to_string());
                }
            }
            Ok(quick_xml::events::Event::Eof) | Err(_) => break,
            _ => {}
        }
        buf.clear();
    }
    out
}

/// The rules of robots.txt that apply to us: the group for `*` or for Kenning.
#[derive(Debug, Default)]
struct Robots {
    /// (allow, path prefix), longest prefix wins.
    rules: Vec<(bool, String)>,
}

impl Robots {
    fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        let mut applies = false;
        let mut in_agents = false;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some((field, value)) = line.split_once(':') else {
                continue;
            };
            let (field, value) = (field.trim().to_ascii_lowercase(), value.trim());
            match field.as_str() {
                "user-agent" => {
                    if !in_agents {
                        applies = false;
                    }
                    in_agents = true;
                    let agent = value.to_ascii_lowercase();
                    applies |= agent == "*" || agent.contains("kenning");
                }
                "allow" | "disallow" => {
                    in_agents = false;
                    if applies && !value.is_empty() {
                        rules.push((field == "allow", value.to_string()));
                    }
                }
                _ => in_agents = false,
            }
        }
        Self { rules }
    }

    fn allows(&self, path: &str) -> bool {
        self.rules
            .iter()
            .filter(|(_, prefix)| path.starts_with(prefix.as_str()))
            .max_by_key(|(allow, prefix)| (prefix.len(), *allow))
            .is_none_or(|(allow, _)| *allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(forbidden(ip.parse().unwrap(), false), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!forbidden(ip.parse().unwrap(), false), "{ip}");
        }
        // The test setting opens loopback and nothing else.
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(!forbidden(ip.parse().unwrap(), true), "{ip}");
        }
        for ip in ["169.254.169.254", "10.0.0.1", "192.168.0.1", "fe80::1"] {
            assert!(forbidden(ip.parse().unwrap(), true), "{ip}");
        }
    }

    #[test]
    fn only_plain_http_urls_are_sources() {
        assert!(parse_url("https://example.com/a#b").is_ok());
        assert_eq!(
            parse_url("https://example.com/a#b").unwrap().as_str(),
            "https://example.com/a"
        );
        for bad in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://x/",
            "https://user:pw@example.com/",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let literal = parse_url("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(check_literal(&literal, false).is_err());
        assert!(check_literal(&literal, true).is_err());
        let local = parse_url("http://127.0.0.1:8080/").unwrap();
        assert!(check_literal(&local, false).is_err());
        assert!(check_literal(&local, true).is_ok());
    }

    #[test]
    fn links_are_found_in_any_quoting() {
        let html = br##"<a href="/a">x</a><A HREF='b.html'>y</A><a href=c?x=1&amp;y=2>z</a><a href="#top">t</a>"##;
        assert_eq!(links(html), ["/a", "b.html", "c?x=1&y=2"]);
    }

    #[test]
    fn robots_rules_for_everyone_apply_longest_first() {
        let r = Robots::parse(
            "User-agent: googlebot\nDisallow: /\n\nUser-agent: *\nDisallow: /private\nAllow: /private/ok\n",
        );
        assert!(r.allows("/"));
        assert!(r.allows("/docs/a"));
        assert!(!r.allows("/private/x"));
        assert!(r.allows("/private/ok/y"));
        assert!(Robots::parse("").allows("/anything"));
    }

    #[test]
    fn sitemaps_list_their_locations() {
        let xml = br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc> https://e.com/a </loc></url><url><loc>https://e.com/b</loc></url></urlset>"#;
        assert_eq!(
            sitemap_locations(xml),
            ["https://e.com/a", "https://e.com/b"]
        );
    }
}
