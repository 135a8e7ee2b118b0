//! Setting values with a syntax of their own, parsed (and refused) when the command line is read,
//! so the layers that use them never see a malformed one.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// Whether requests must carry credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// `none` when bound to a loopback address, `password` on any other.
    Auto,
    /// Single-user mode: no accounts, no sign-in. Refused on non-loopback addresses.
    None,
    /// Accounts with passwords, sessions and API keys; per-space roles.
    Password,
}

impl AuthMode {
    /// Whether a server bound to `addr` requires sign-in; `none` off loopback is refused, so
    /// an open Kenning is never reachable from the network by accident.
    pub fn requires_sign_in(self, addr: SocketAddr) -> anyhow::Result<bool> {
        let loopback = addr.ip().is_loopback();
        match self {
            AuthMode::Auto => Ok(!loopback),
            AuthMode::Password => Ok(true),
            AuthMode::None if loopback => Ok(false),
            AuthMode::None => anyhow::bail!(
                "--auth none (single-user mode, no sign-in) is only allowed on a loopback \
                 address, not {addr}; use --auth password, or bind to 127.0.0.1"
            ),
        }
    }
}

/// A quota as people write it: `60/min`, `10/s,burst=20`, `1000/h`; `off` means no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit(Option<Rate>);

/// `count` requests per `period`, with up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: RateLimit = RateLimit(None);

    /// The rate, unless the limit is off.
    pub fn rate(&self) -> Option<Rate> {
        self.0
    }
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") || s == "0" {
            return Ok(Self::OFF);
        }
        let usage =
            || format!("'{s}' is not a rate: write e.g. 60/min, 10/s,burst=20, 1000/h or off");
        let (rate, burst) = match s.split_once(',') {
            Some((rate, burst)) => {
                let b = burst
                    .trim()
                    .strip_prefix("burst=")
                    .and_then(|b| b.parse::<u32>().ok())
                    .filter(|b| *b > 0)
                    .ok_or_else(usage)?;
                (rate, Some(b))
            }
            None => (s, None),
        };
        let (count, unit) = rate.split_once('/').ok_or_else(usage)?;
        let count = count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(usage)?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        Ok(Self(Some(Rate {
            count,
            period,
            burst: burst.unwrap_or(count),
        })))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "off"),
            Some(r) => {
                let unit = match r.period.as_secs() {
                    1 => "s",
                    60 => "min",
                    _ => "h",
                };
                write!(f, "{}/{unit},burst={}", r.count, r.burst)
            }
        }
    }
}
