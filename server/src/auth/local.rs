//! What "this machine" means for single-user mode and for creating the first account: a loopback
//! peer, a loopback host name on the bound port (so a web page that rebinds its own DNS name to
//! 127.0.0.1 is refused), and no sign of a proxy in between (a same-host proxy or tunnel would
//! otherwise hand the whole server to its network).

use axum::http::header::HOST;
use axum::http::{HeaderMap, Uri};
use std::net::{IpAddr, SocketAddr};

/// Headers only a proxy adds; their presence means the request did not start on this machine.
const FORWARDING_HEADERS: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
];

/// Whether an address is this machine's loopback, IPv4-mapped IPv6 included.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// Whether a proxy forwarded this request.
pub fn forwarded(headers: &HeaderMap) -> bool {
    FORWARDING_HEADERS.iter().any(|h| headers.contains_key(*h))
}

/// Whether the request came straight from a process on this machine: a loopback peer (an
/// in-process caller has none) and no forwarding headers.
pub fn from_this_machine(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    peer.is_none_or(|p| is_loopback(p.ip())) && !forwarded(headers)
}

/// Why a request may not act as the single user, or `None` when it may: it must come from this
/// machine and name a loopback host on the port Kenning is bound to.
pub fn single_user_refusal(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    uri: &Uri,
    port: u16,
) -> Option<String> {
    if let Some(p) = peer.filter(|p| !is_loopback(p.ip())) {
        return Some(format!(
            "Single-user mode only serves this machine, not {}.",
            p.ip()
        ));
    }
    if forwarded(headers) {
        return Some(
            "Single-user mode does not serve forwarded requests: a proxy in front of it would \
             open it to a network. Start Kenning with --auth password behind a proxy."
                .into(),
        );
    }
    // HTTP/1.1 names the host in `Host`; HTTP/2 in the request's authority.
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.as_str().to_string()));
    match host {
        Some(h) if loopback_host(&h, port) => None,
        Some(h) => Some(format!(
            "Single-user mode only answers to localhost or 127.0.0.1 on port {port}, not '{}'; \
             open Kenning at http://127.0.0.1:{port}.",
            h.chars().take(100).collect::<String>()
        )),
        None => Some("The request names no host.".into()),
    }
}

/// Whether `host` (`name[:port]`) is a loopback name or address on `port`. A missing port is
/// HTTP's default, 80.
fn loopback_host(host: &str, port: u16) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let (name, given) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, tail)) => (addr.to_string(), tail.strip_prefix(':')),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, p)) => (name.to_string(), Some(p)),
            None => (host.clone(), None),
        }
    };
    let port_ok = match given {
        Some(p) => p.parse::<u16>() == Ok(port),
        None => port == 80,
    };
    let name = name.trim_end_matches('.');
    let name_ok = name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(is_loopback);
    port_ok && name_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_host(host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        h
    }

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn loopback_names_on_the_bound_port_are_this_machine() {
        let uri = Uri::from_static("/");
        for host in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "[::1]:3000",
            "127.0.0.2:3000",
            "app.localhost:3000",
        ] {
            assert!(
                single_user_refusal(peer("127.0.0.1:5000"), &with_host(host), &uri, 3000).is_none(),
                "{host}"
            );
        }
        assert!(
            single_user_refusal(peer("127.0.0.1:5000"), &with_host("localhost"), &uri, 80)
                .is_none()
        );
    }

    #[test]
    fn a_rebound_name_another_port_or_no_host_is_refused() {
        let uri = Uri::from_static("/");
        for host in [
            "rebind.attacker.example:3000",
            "127.0.0.1.nip.io:3000",
            "localhost:3001",
            "localhost",
            "10.0.0.1:3000",
            "[::ffff:7f00:1:3000",
            "localhost.attacker.example:3000",
        ] {
            assert!(
                single_user_refusal(peer("127.0.0.1:5000"), &with_host(host), &uri, 3000).is_some(),
                "{host}"
            );
        }
        assert!(
            single_user_refusal(peer("127.0.0.1:5000"), &HeaderMap::new(), &uri, 3000).is_some()
        );
    }

    #[test]
    fn http2_names_its_host_in_the_authority() {
        let uri: Uri = "http://127.0.0.1:3000/api/v1/spaces".parse().unwrap();
        assert!(
            single_user_refusal(peer("127.0.0.1:5000"), &HeaderMap::new(), &uri, 3000).is_none()
        );
    }

    #[test]
    fn other_peers_and_forwarded_requests_are_not_this_machine() {
        let uri = Uri::from_static("/");
        let local = with_host("127.0.0.1:3000");
        assert!(single_user_refusal(peer("192.168.1.5:5000"), &local, &uri, 3000).is_some());
        assert!(single_user_refusal(peer("[::ffff:127.0.0.1]:5000"), &local, &uri, 3000).is_none());
        for header in FORWARDING_HEADERS {
            let mut h = local.clone();
            h.insert(header, HeaderValue::from_static("203.0.113.9"));
            assert!(
                single_user_refusal(peer("127.0.0.1:5000"), &h, &uri, 3000).is_some(),
                "{header}"
            );
            assert!(!from_this_machine(peer("127.0.0.1:5000"), &h), "{header}");
        }
        assert!(from_this_machine(peer("127.0.0.1:5000"), &local));
        assert!(!from_this_machine(peer("10.1.2.3:5000"), &local));
    }
}
