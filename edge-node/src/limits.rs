//! Rate limits: named limiters (GCRA, the governor crate) that sites name in `limits`. Each
//! keys requests by client address, a header's value, the path, or the whole site; a request
//! over its limiter's rate (beyond the burst) is answered 429 with `Retry-After`, and, with a
//! `block` period, the key is refused for that long. A limiter with `upstream_only` counts only
//! requests that would go upstream (misses, passes, revalidations): it protects the origin
//! and never limits cache hits.
//!
//! Keys are hashed to 64 bits (bounded memory per key, whatever a header holds); the keyed
//! state is swept every 5 s (`SWEEP`) of keys whose rate window has passed, so memory follows the
//! keys active now, not every key ever seen (a million distinct keys come and go).

use agent::units::Dur;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use serde::Deserialize;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often idle keys are swept.
pub(crate) const SWEEP: Duration = Duration::from_secs(5);

/// Blocked keys at most (beyond it, the oldest blocks are dropped early).
const MAX_BLOCKED: usize = 100_000;

/// `[[edge.limits]]`: one named limiter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// The name sites use in `limits`.
    pub name: String,
    /// Requests per period: `"10/s"`, `"600/m"`, `"5000/h"`.
    pub rate: String,
    /// Requests allowed at once above the rate (default: the rate's count).
    #[serde(default)]
    pub burst: Option<u32>,
    /// What a request is counted by: `client` (its address, the default), `site`, `path`,
    /// or `header:NAME`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Once over the limit, how long the key is refused (default: only while over).
    #[serde(default)]
    pub block: Option<Dur>,
    /// Count only requests that go upstream (origin protection): hits are never limited.
    #[serde(default)]
    pub upstream_only: bool,
}

fn default_key() -> String {
    "client".into()
}

/// What a request is counted by.
#[derive(Debug, Clone)]
enum KeyBy {
    Client,
    Site,
    Path,
    Header(http::HeaderName),
}

impl LimitConfig {
    /// The rate as (count, period).
    fn quota(&self) -> Result<Quota, String> {
        let (n, per) = self.rate.split_once('/').ok_or_else(|| {
            format!(
                "{:?} is not a rate: use \"10/s\", \"600/m\" or \"5000/h\"",
                self.rate
            )
        })?;
        let n: u32 =
            n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                format!("{:?}: the count must be a whole number above 0", self.rate)
            })?;
        let period = match per.trim() {
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            other => return Err(format!("{:?}: {other:?} is not s, m or h", self.rate)),
        };
        let burst = self.burst.unwrap_or(n);
        let burst = NonZeroU32::new(burst).ok_or("burst must be above 0")?;
        let per_request = period / n;
        Quota::with_period(per_request)
            .map(|q| q.allow_burst(burst))
            .ok_or_else(|| format!("{:?} is too fast", self.rate))
    }

    fn key_by(&self) -> Result<KeyBy, String> {
        match self.key.as_str() {
            "client" => Ok(KeyBy::Client),
            "site" => Ok(KeyBy::Site),
            "path" => Ok(KeyBy::Path),
            k => match k.strip_prefix("header:") {
                Some(h) => http::HeaderName::from_bytes(h.trim().as_bytes())
                    .map(KeyBy::Header)
                    .map_err(|_| format!("{h:?} is not a header name")),
                None => Err(format!(
                    "{k:?} is not a key: use client, site, path or header:NAME"
                )),
            },
        }
    }

    /// Problems of this limiter, as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.name.is_empty() {
            out.push(("name", "empty".to_string()));
        }
        if let Err(e) = self.quota() {
            out.push(("rate", e));
        }
        if let Err(e) = self.key_by() {
            out.push(("key", e));
        }
        out
    }
}

/// What a limiter is asked about one request.
pub(crate) struct Ask<'a> {
    pub client: std::net::IpAddr,
    pub site: &'a str,
    pub path: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// The hasher of a limiter's keyed state. Keys are already 64-bit digests (xxh3) or IPv4
/// addresses: they need mixing over the map's shards and buckets, not SipHash (two of those
/// per request were a tenth of what two limiters cost). A seed drawn per limiter keeps the
/// buckets unpredictable to a client choosing its keys.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MixKeys(u64);

impl Default for MixKeys {
    fn default() -> Self {
        use std::hash::BuildHasher;
        MixKeys(std::collections::hash_map::RandomState::new().hash_one(0x5eed_u64))
    }
}

impl std::hash::BuildHasher for MixKeys {
    type Hasher = Mixed;
    fn build_hasher(&self) -> Mixed {
        Mixed(self.0)
    }
}

/// [`MixKeys`]'s hasher: the splitmix64 finaliser over the seeded key.
#[derive(Debug)]
pub(crate) struct Mixed(u64);

impl std::hash::Hasher for Mixed {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.0);
    }
    fn write_u64(&mut self, v: u64) {
        let mut z = (v ^ self.0).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.0 = z ^ (z >> 31);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One named limiter.
pub(crate) struct Limiter {
    pub name: String,
    pub upstream_only: bool,
    key: KeyBy,
    limiter: DefaultKeyedRateLimiter<
        u64,
        governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
        MixKeys,
    >,
    block: Option<Duration>,
    blocked: Mutex<HashMap<u64, Instant>>,
    /// The limiter's clock, for how long a refused request is to wait.
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("name", &self.name).finish()
    }
}

impl Limiter {
    /// The limiter of `cfg` (which passed `problems()`).
    pub(crate) fn new(cfg: &LimitConfig) -> Result<Self, String> {
        Ok(Self {
            name: cfg.name.clone(),
            upstream_only: cfg.upstream_only,
            key: cfg.key_by()?,
            limiter: DefaultKeyedRateLimiter::dashmap_with_hasher(cfg.quota()?, MixKeys::default()),
            clock: DefaultClock::default(),
            block: cfg.block.map(|d| d.0),
            blocked: Mutex::default(),
        })
    }

    fn key(&self, a: &Ask<'_>) -> u64 {
        use xxhash_rust::xxh3::xxh3_64;
        match &self.key {
            KeyBy::Client => match a.client {
                std::net::IpAddr::V4(v4) => u64::from(u32::from(v4)),
                std::net::IpAddr::V6(v6) => xxh3_64(&v6.octets()),
            },
            KeyBy::Site => xxh3_64(a.site.as_bytes()),
            KeyBy::Path => xxh3_64(a.path.as_bytes()),
            KeyBy::Header(h) => a.headers.get(h).map_or(0, |v| xxh3_64(v.as_bytes())),
        }
    }

    /// `Ok` when the request may go on; else how long until it may.
    pub(crate) fn check(&self, a: &Ask<'_>) -> Result<(), Duration> {
        let key = self.key(a);
        if self.block.is_some() {
            let now = Instant::now();
            if let Ok(mut b) = self.blocked.lock() {
                if let Some(until) = b.get(&key).copied() {
                    if until > now {
                        return Err(until - now);
                    }
                    b.remove(&key);
                }
            }
        }
        match self.limiter.check_key(&key) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let Some(block) = self.block else {
                    return Err(wait);
                };
                let now = Instant::now();
                if let Ok(mut b) = self.blocked.lock() {
                    if b.len() >= MAX_BLOCKED {
                        b.retain(|_, until| *until > now);
                    }
                    if b.len() < MAX_BLOCKED {
                        b.insert(key, now + block);
                    }
                }
                Err(block.max(wait))
            }
        }
    }

    /// Forgets keys whose rate window has passed and blocks that ended.
    pub(crate) fn sweep(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        if let Ok(mut b) = self.blocked.lock() {
            let now = Instant::now();
            b.retain(|_, until| *until > now);
            b.shrink_to_fit();
        }
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub(crate) fn keys(&self) -> usize {
        self.limiter.len()
    }
}

/// The limiters of a config, by name.
pub(crate) fn build(cfgs: &[LimitConfig]) -> Result<HashMap<String, Arc<Limiter>>, String> {
    cfgs.iter()
        .map(|c| {
            Limiter::new(c)
                .map(|l| (c.name.clone(), Arc::new(l)))
                .map_err(|e| format!("limits {:?}: {e}", c.name))
        })
        .collect()
}

/// Sweeps `limiters` every [`SWEEP`] until `stop` flips.
pub(crate) async fn sweep_every(
    limiters: Vec<Arc<Limiter>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if limiters.is_empty() {
        return;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        for l in &limiters {
            l.sweep();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg(rate: &str, burst: Option<u32>, key: &str) -> LimitConfig {
        LimitConfig {
            name: "t".into(),
            rate: rate.into(),
            burst,
            key: key.into(),
            block: None,
            upstream_only: false,
        }
    }

    fn ask<'a>(client: &str, h: &'a http::HeaderMap) -> Ask<'a> {
        Ask {
            client: client.parse().unwrap(),
            site: "s",
            path: "/p",
            headers: h,
        }
    }

    #[test]
    fn bad_rates_and_keys_are_named() {
        assert!(cfg("10", None, "client").problems()[0]
            .1
            .contains("not a rate"));
        assert!(cfg("0/s", None, "client").problems()[0]
            .1
            .contains("above 0"));
        assert!(cfg("5/d", None, "client").problems()[0]
            .1
            .contains("not s, m or h"));
        assert!(cfg("5/s", None, "cookie").problems()[0]
            .1
            .contains("not a key"));
        assert!(cfg("5/s", None, "header:bad header").problems()[0]
            .1
            .contains("not a header"));
        assert!(cfg("5/s", Some(0), "client").problems()[0]
            .1
            .contains("burst"));
        assert!(cfg("600/m", Some(3), "header:x-api-key")
            .problems()
            .is_empty());
    }

    #[test]
    fn a_burst_passes_then_the_key_waits_and_other_keys_do_not() {
        let l = Limiter::new(&cfg("1/m", Some(3), "client")).unwrap();
        let h = http::HeaderMap::new();
        for _ in 0..3 {
            assert!(l.check(&ask("127.0.0.1", &h)).is_ok());
        }
        let wait = l.check(&ask("127.0.0.1", &h)).unwrap_err();
        assert!(wait > Duration::from_secs(10), "{wait:?}");
        assert!(l.check(&ask("127.0.0.2", &h)).is_ok());
    }

    #[test]
    fn memory_follows_active_keys_not_every_key_seen() {
        let l = Limiter::new(&cfg("1000/s", Some(1), "client")).unwrap();
        let h = http::HeaderMap::new();
        for i in 0..1_000_000u32 {
            let ip = std::net::Ipv4Addr::from(i);
            let a = Ask {
                client: ip.into(),
                site: "s",
                path: "/",
                headers: &h,
            };
            let _ = l.check(&a);
        }
        assert_eq!(l.keys(), 1_000_000);
        // Their windows (1 ms each) pass; a sweep forgets them.
        std::thread::sleep(Duration::from_millis(20));
        l.sweep();
        assert_eq!(l.keys(), 0);
    }
}
