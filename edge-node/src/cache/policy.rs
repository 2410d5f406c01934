//! Storability and freshness of responses for a shared cache. Pure: no I/O, table-tested.
//!
//! The RFC 9111 core (s-maxage, max-age, Expires, heuristic freshness, no-store, private,
//! Authorization, Vary: *) comes from `http-cache-semantics`. This module extends it where it
//! is silent:
//! - targeted fields (RFC 9213): `CDN-Cache-Control`, then `Surrogate-Control`, replace
//!   `Cache-Control` and `Expires` for the edge when present;
//! - `proxy-revalidate` keeps its RFC meaning (fresh until it is stale, then always
//!   revalidated), where the crate treats it as "never fresh";
//! - `stale-while-revalidate` and `stale-if-error` (RFC 5861), with configured defaults, never
//!   applied over `must-revalidate`, `proxy-revalidate` or `no-cache`;
//! - responses carrying `Set-Cookie` are never stored (replaying one user's cookie to another
//!   is worse than a miss).

use http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, EXPIRES};
use http::{request, response};
use http_cache_semantics::{CacheOptions, CachePolicy};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `CDN-Cache-Control` (RFC 9213).
pub(crate) static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (Edge Architecture Specification).
pub(crate) static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// Cache-wide policy settings from config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyOptions {
    /// Stale-while-revalidate window when the response names none.
    pub default_swr: Duration,
    /// Stale-if-error window when the response names none.
    pub default_sie: Duration,
    /// How long a stale response with a validator is kept for revalidation.
    pub keep: Duration,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            default_swr: Duration::ZERO,
            default_sie: Duration::ZERO,
            keep: Duration::from_secs(3600),
        }
    }
}

/// When a stored response is fresh, and for how long it may be served stale. Milliseconds
/// since the Unix epoch, so the record survives a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// When the response was received.
    pub response_time_ms: u64,
    /// Age the response already had when it was received (its `Age`), in ms (u32: 49 days
    /// at most, which keeps a stored object small).
    pub initial_age_ms: u32,
    /// Until when it is fresh.
    pub fresh_until_ms: u64,
    /// Stale-while-revalidate window after `fresh_until_ms` (49 days at most).
    pub swr_ms: u32,
    /// Stale-if-error window after `fresh_until_ms` (49 days at most).
    pub sie_ms: u32,
    /// Whether the response has a validator (ETag or Last-Modified).
    pub has_validator: bool,
    /// Until when the entry is worth keeping at all.
    pub keep_until_ms: u64,
}

/// How a stored response may be used at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usability {
    /// Fresh: serve it.
    Fresh,
    /// Stale but within stale-while-revalidate: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Stale: revalidate first; `serve_on_error` says whether stale-if-error still covers it.
    Stale {
        /// The stale response may be served if the upstream fails.
        serve_on_error: bool,
    },
}

impl Freshness {
    /// The `Age` of the response at `now_ms`, in whole seconds (RFC 9111 section 4.2.3).
    pub fn age_secs(&self, now_ms: u64) -> u64 {
        (u64::from(self.initial_age_ms) + now_ms.saturating_sub(self.response_time_ms)) / 1000
    }

    /// How the response may be used at `now_ms`.
    pub fn usability(&self, now_ms: u64) -> Usability {
        if now_ms < self.fresh_until_ms {
            return Usability::Fresh;
        }
        let stale_for = now_ms - self.fresh_until_ms;
        if stale_for < u64::from(self.swr_ms) {
            return Usability::StaleWhileRevalidate;
        }
        Usability::Stale {
            serve_on_error: stale_for < u64::from(self.sie_ms),
        }
    }

    /// Remaining time the entry is worth keeping, from `now_ms`.
    pub fn time_to_keep(&self, now_ms: u64) -> Duration {
        Duration::from_millis(self.keep_until_ms.saturating_sub(now_ms))
    }
}

/// The outcome of looking at a response for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Store it, with these timings.
    Store(Freshness),
    /// Do not store it, and why.
    Pass(&'static str),
}

/// A duration in milliseconds, capped to what a u32 holds (about 49 days).
fn ms32(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One directive of a Cache-Control-like field: lower-case name, optional unquoted value.
pub(crate) fn directives(value: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    value.split(',').filter_map(|part| {
        let part = part.trim();
        if part.is_empty() {
            return None;
        }
        let (name, val) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        if name.is_empty() {
            return None;
        }
        Some((name.to_ascii_lowercase(), val))
    })
}

fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = v.to_str().ok()?;
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(s);
            }
            None => out = Some(s.to_string()),
        }
    }
    out
}

/// A delta-seconds value (RFC 9111 section 1.2.2); malformed values are `None`.
fn delta_seconds(v: Option<&str>) -> Option<u64> {
    let v = v?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Values too large to represent are treated as 2^31 as the RFC recommends.
    Some(v.parse::<u64>().unwrap_or(1 << 31).min(1 << 31))
}

/// The directives that govern this cache: the first targeted field with any valid directive
/// (RFC 9213 section 2.1), else `Cache-Control`. Returns the text and whether it was targeted.
pub(crate) fn effective_cache_control(headers: &HeaderMap) -> (Option<String>, bool) {
    for name in [&CDN_CACHE_CONTROL, &SURROGATE_CONTROL] {
        if let Some(v) = joined(headers, name) {
            if directives(&v).next().is_some() {
                return (Some(v), true);
            }
        }
    }
    (joined(headers, &CACHE_CONTROL), false)
}

/// Decides whether and for how long to store `res`, received at `now` for `req`.
pub(crate) fn decide(
    req: &request::Parts,
    res: &response::Parts,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Decision {
    if res.headers.contains_key(http::header::SET_COOKIE) {
        return Decision::Pass("set-cookie");
    }
    let (cc, targeted) = effective_cache_control(&res.headers);
    let mut must_revalidate = false;
    let mut no_cache = false;
    let mut swr = None;
    let mut sie = None;
    let mut rewritten = Vec::new();
    if let Some(cc) = &cc {
        for (name, val) in directives(cc) {
            match name.as_str() {
                "must-revalidate" => must_revalidate = true,
                // proxy-revalidate is must-revalidate for shared caches (RFC 9111 5.2.2.8).
                "proxy-revalidate" => {
                    must_revalidate = true;
                    rewritten.push("must-revalidate".to_string());
                    continue;
                }
                "no-cache" => no_cache = true,
                "stale-while-revalidate" => swr = delta_seconds(val),
                "stale-if-error" => sie = delta_seconds(val),
                _ => {}
            }
            rewritten.push(match val {
                // Delta-seconds too large to represent mean 2^31 (RFC 9111 section 1.2.2);
                // the core crate would read them as 0.
                Some(v)
                    if matches!(name.as_str(), "max-age" | "s-maxage")
                        && delta_seconds(Some(v)) == Some(1 << 31) =>
                {
                    format!("{name}={}", 1u64 << 31)
                }
                Some(v) => format!("{name}={v}"),
                None => name,
            });
        }
    }

    // The view of the response that the RFC core sees: the governing directives as
    // Cache-Control, and no Expires when a targeted field governs.
    let mut view = response::Builder::new()
        .status(res.status)
        .body(())
        .map(|r| r.into_parts().0)
        .unwrap_or_else(|_| http::Response::new(()).into_parts().0);
    view.headers = res.headers.clone();
    view.headers.remove(&CDN_CACHE_CONTROL);
    view.headers.remove(&SURROGATE_CONTROL);
    view.headers.remove(CACHE_CONTROL);
    if targeted {
        view.headers.remove(EXPIRES);
    }
    if cc.is_some() {
        match HeaderValue::from_str(&rewritten.join(", ")) {
            Ok(v) if !rewritten.is_empty() => {
                view.headers.insert(CACHE_CONTROL, v);
            }
            _ => {}
        }
    }

    let policy = CachePolicy::new_options(
        req,
        &view,
        now,
        CacheOptions {
            shared: true,
            ..CacheOptions::default()
        },
    );
    if !policy.is_storable() {
        return Decision::Pass("not storable");
    }
    let ttl = if no_cache {
        Duration::ZERO
    } else {
        policy.time_to_live(now)
    };
    let age = policy.age(now);
    let has_validator = res.headers.contains_key(http::header::ETAG)
        || res.headers.contains_key(http::header::LAST_MODIFIED);
    let (swr, sie) = if must_revalidate || no_cache {
        (Duration::ZERO, Duration::ZERO)
    } else {
        (
            swr.map(Duration::from_secs).unwrap_or(opts.default_swr),
            sie.map(Duration::from_secs).unwrap_or(opts.default_sie),
        )
    };
    let keep = if has_validator {
        opts.keep
    } else {
        Duration::ZERO
    };
    let linger = swr.max(sie).max(keep);
    if ttl.is_zero() && linger.is_zero() {
        return Decision::Pass("stale on arrival without a validator");
    }
    let now_ms = unix_ms(now);
    let fresh_until_ms = now_ms + ttl.as_millis() as u64;
    Decision::Store(Freshness {
        response_time_ms: now_ms,
        initial_age_ms: ms32(age),
        fresh_until_ms,
        swr_ms: ms32(swr),
        sie_ms: ms32(sie),
        has_validator,
        keep_until_ms: fresh_until_ms + linger.as_millis() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::builder()
            .method("GET")
            .uri("http://a.test/x");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn res(status: u16, headers: &[(&str, &str)]) -> response::Parts {
        let mut b = http::Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn ttl_secs(d: &Decision) -> Option<u64> {
        match d {
            Decision::Store(f) => Some((f.fresh_until_ms - f.response_time_ms) / 1000),
            Decision::Pass(_) => None,
        }
    }

    const NOW: u64 = 1_700_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    fn date(offset: i64) -> String {
        httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs((NOW as i64 + offset) as u64))
    }

    #[test]
    fn freshness_lifetime_table() {
        let o = PolicyOptions::default();
        let d0 = date(0);
        let exp = date(120);
        let lm = date(-1000);
        type Headers<'a> = Vec<(&'a str, &'a str)>;
        let cases: Vec<(&str, Headers, Headers, Option<u64>)> = vec![
            // RFC 9111 5.2.2.1 max-age
            (
                "max-age",
                vec![],
                vec![("cache-control", "max-age=60")],
                Some(60),
            ),
            // 5.2.2.10 s-maxage overrides max-age in a shared cache
            (
                "s-maxage",
                vec![],
                vec![("cache-control", "max-age=60, s-maxage=300")],
                Some(300),
            ),
            // 5.3 Expires when no max-age
            (
                "expires",
                vec![],
                vec![("date", &d0), ("expires", &exp)],
                Some(120),
            ),
            // max-age beats Expires
            (
                "max-age over expires",
                vec![],
                vec![
                    ("date", &d0),
                    ("expires", &exp),
                    ("cache-control", "max-age=10"),
                ],
                Some(10),
            ),
            // 4.2.2 heuristic: 10% of Last-Modified age for a 200
            (
                "heuristic",
                vec![],
                vec![("date", &d0), ("last-modified", &lm)],
                Some(100),
            ),
            // 5.2.2.5 no-store
            (
                "no-store",
                vec![],
                vec![("cache-control", "no-store, max-age=60")],
                None,
            ),
            // 5.2.2.7 private in a shared cache
            (
                "private",
                vec![],
                vec![("cache-control", "private, max-age=60")],
                None,
            ),
            // 5.2.2.4 no-cache: storable, but stale at once (needs a validator to be worth it)
            (
                "no-cache+etag",
                vec![],
                vec![
                    ("cache-control", "no-cache, max-age=60"),
                    ("etag", "\"v1\""),
                ],
                Some(0),
            ),
            (
                "no-cache no validator",
                vec![],
                vec![("cache-control", "no-cache")],
                None,
            ),
            // 3.5 Authorization: not stored unless public, s-maxage or must-revalidate
            (
                "auth",
                vec![("authorization", "Bearer x")],
                vec![("cache-control", "max-age=60")],
                None,
            ),
            (
                "auth+public",
                vec![("authorization", "Bearer x")],
                vec![("cache-control", "public, max-age=60")],
                Some(60),
            ),
            (
                "auth+s-maxage",
                vec![("authorization", "Bearer x")],
                vec![("cache-control", "s-maxage=60")],
                Some(60),
            ),
            // request no-store
            (
                "req no-store",
                vec![("cache-control", "no-store")],
                vec![("cache-control", "max-age=60")],
                None,
            ),
            // Age already spent upstream counts against the lifetime
            (
                "age",
                vec![],
                vec![("cache-control", "max-age=60"), ("age", "20")],
                Some(40),
            ),
            // proxy-revalidate keeps its lifetime
            (
                "proxy-revalidate",
                vec![],
                vec![("cache-control", "max-age=60, proxy-revalidate")],
                Some(60),
            ),
            // RFC 9213: CDN-Cache-Control governs the edge, Cache-Control ignored
            (
                "cdn-cc",
                vec![],
                vec![
                    ("cache-control", "no-store"),
                    ("cdn-cache-control", "max-age=600"),
                ],
                Some(600),
            ),
            (
                "cdn-cc no-store",
                vec![],
                vec![
                    ("cache-control", "max-age=60"),
                    ("cdn-cache-control", "no-store"),
                ],
                None,
            ),
            (
                "cdn-cc ignores expires",
                vec![],
                vec![
                    ("date", &d0),
                    ("expires", &exp),
                    ("cdn-cache-control", "max-age=5"),
                ],
                Some(5),
            ),
            (
                "surrogate-control",
                vec![],
                vec![
                    ("cache-control", "private"),
                    ("surrogate-control", "max-age=90"),
                ],
                Some(90),
            ),
            (
                "cdn-cc beats surrogate",
                vec![],
                vec![
                    ("surrogate-control", "max-age=90"),
                    ("cdn-cache-control", "max-age=30"),
                ],
                Some(30),
            ),
            // malformed targeted field falls back to Cache-Control
            (
                "cdn-cc malformed",
                vec![],
                vec![("cache-control", "max-age=60"), ("cdn-cache-control", ",,")],
                Some(60),
            ),
            // malformed values are never fresh
            (
                "malformed max-age",
                vec![],
                vec![("cache-control", "max-age=banana")],
                None,
            ),
            (
                "negative max-age",
                vec![],
                vec![("cache-control", "max-age=-5")],
                None,
            ),
            (
                "set-cookie",
                vec![],
                vec![("cache-control", "max-age=60"), ("set-cookie", "s=1")],
                None,
            ),
            (
                "vary star",
                vec![],
                vec![("cache-control", "max-age=60"), ("vary", "*")],
                None,
            ),
            // status codes: 500 is not cacheable, 404 is by default
            (
                "500",
                vec![],
                vec![("cache-control", "max-age=60")],
                Some(60),
            ),
            (
                "206 not understood",
                vec![],
                vec![("cache-control", "max-age=60")],
                None,
            ),
        ];
        for (name, rq, rs, want) in cases {
            let status = match name {
                "500" => 500,
                "206 not understood" => 206,
                _ => 200,
            };
            let got = decide(&req(&rq), &res(status, &rs), now(), &o);
            let want = if name == "500" { None } else { want };
            assert_eq!(ttl_secs(&got), want, "{name}: {got:?}");
        }
    }

    #[test]
    fn stale_windows() {
        let o = PolicyOptions {
            default_swr: Duration::from_secs(5),
            default_sie: Duration::from_secs(7),
            keep: Duration::ZERO,
        };
        let f = |cc: &str| match decide(&req(&[]), &res(200, &[("cache-control", cc)]), now(), &o) {
            Decision::Store(f) => (f.swr_ms / 1000, f.sie_ms / 1000),
            Decision::Pass(r) => panic!("{cc}: pass {r}"),
        };
        assert_eq!(
            f("max-age=1, stale-while-revalidate=30, stale-if-error=60"),
            (30, 60)
        );
        assert_eq!(f("max-age=1"), (5, 7));
        assert_eq!(f("max-age=1, must-revalidate, stale-if-error=60"), (0, 0));
        assert_eq!(
            f("max-age=1, proxy-revalidate, stale-while-revalidate=9"),
            (0, 0)
        );
        assert_eq!(f("max-age=1, stale-while-revalidate=oops"), (5, 7));
    }

    #[test]
    fn usability_over_time() {
        let f = Freshness {
            response_time_ms: 1000,
            initial_age_ms: 2000,
            fresh_until_ms: 11_000,
            swr_ms: 5000,
            sie_ms: 20_000,
            has_validator: true,
            keep_until_ms: 40_000,
        };
        assert_eq!(f.usability(5000), Usability::Fresh);
        assert_eq!(f.age_secs(5000), 6);
        assert_eq!(f.usability(12_000), Usability::StaleWhileRevalidate);
        assert_eq!(
            f.usability(20_000),
            Usability::Stale {
                serve_on_error: true
            }
        );
        assert_eq!(
            f.usability(31_000),
            Usability::Stale {
                serve_on_error: false
            }
        );
    }

    #[test]
    fn directive_parsing_is_tolerant() {
        let d: Vec<_> =
            directives(" Max-Age=\"10\" ,, no-cache,=x, private=\"set-cookie\"").collect();
        assert_eq!(
            d,
            vec![
                ("max-age".to_string(), Some("10")),
                ("no-cache".to_string(), None),
                ("private".to_string(), Some("set-cookie")),
            ]
        );
    }
}
