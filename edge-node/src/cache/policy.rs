//! Storability and freshness of responses for a shared cache (RFC 9111 sections 3 and 4.2,
//! RFC 9213, RFC 5861). Pure: no I/O, table-tested.
//!
//! Written here rather than taken from `http-cache-semantics`, which the first versions used:
//! that crate parses dates as RFC 2822 (it accepts malformed IMF-fixdates and refuses the two
//! obsolete formats RFC 9110 5.6.7 requires), takes any `Age` text `parse()` accepts and
//! ignores `Date` in the age, stores only a fixed list of statuses (500 or 299 with
//! `max-age` are refused, RFC 9111 3 allows any final status with explicit freshness),
//! applies heuristic freshness to statuses that are not heuristically cacheable, ignores
//! `must-understand`, treats `proxy-revalidate` as "never fresh", and sees `Vary: *` only
//! when it is the whole field. Each rule below names its section.
//!
//! Beyond the RFC core:
//! - targeted fields: `CDN-Cache-Control` (RFC 9213: an RFC 8941 Dictionary; one that does not
//!   parse, or has a member of the wrong type, is ignored whole), then `Surrogate-Control`,
//!   replace `Cache-Control` and `Expires` for this cache when present;
//! - `stale-while-revalidate` and `stale-if-error` (RFC 5861), with configured defaults, and a
//!   window for serving stale when the next tier cannot be reached (RFC 9111 4.2.4); none
//!   over `must-revalidate`, `proxy-revalidate` or `no-cache`, and no default one over
//!   `s-maxage` (which carries proxy-revalidate's meaning, 5.2.2.10);
//! - responses carrying `Set-Cookie` are never stored (replaying one user's cookie to another
//!   is worse than a miss: a deliberate deviation from RFC 9111 section 3, see
//!   docs/caching.md).

use super::date::parse_http_date;
use http::header::{
    HeaderMap, HeaderName, AGE, AUTHORIZATION, CACHE_CONTROL, DATE, ETAG, EXPIRES, LAST_MODIFIED,
    SET_COOKIE,
};
use http::{request, response, Method, StatusCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `CDN-Cache-Control` (RFC 9213).
pub(crate) static CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
/// `Surrogate-Control` (Edge Architecture Specification).
pub(crate) static SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// The largest delta-seconds a cache must handle; larger values mean this (RFC 9111 1.2.2).
const DELTA_MAX: u64 = 1 << 31;

/// Cache-wide policy settings from config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PolicyOptions {
    /// Stale-while-revalidate window when the response names none.
    pub default_swr: Duration,
    /// Stale-if-error window when the response names none.
    pub default_sie: Duration,
    /// How long a stale response with a validator is kept for revalidation.
    pub keep: Duration,
    /// How long past its freshness a response may be served when the next tier cannot be
    /// reached (RFC 9111 4.2.4), unless its directives forbid stale use.
    pub stale_if_unreachable: Duration,
    /// What the site's rules say about this request's response (none: the origin governs).
    pub rule: RuleFreshness,
}

/// A site rule's word on freshness (`rules/`): an edge TTL used when the origin names none
/// or in place of what it names, and stale windows in place of the response's. Applied to
/// heuristically cacheable statuses only (RFC 9110 15.1: 200, 301, 404, ...), so a rule
/// never stores an error or a redirect the origin meant for one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RuleFreshness {
    /// Edge TTL.
    pub ttl: Option<Duration>,
    /// `true`: the TTL replaces the origin's freshness directives for this cache (`no-cache`,
    /// `private`, `no-store`, `max-age`, `Expires` do not count); `false`: it applies only
    /// when the origin gives no explicit freshness.
    pub ttl_override: bool,
    /// Stale-while-revalidate window.
    pub swr: Option<Duration>,
    /// Stale-if-error window.
    pub sie: Option<Duration>,
}

impl RuleFreshness {
    /// The directives `d` as the rule amends them for a response with `status`; `targeted`
    /// becomes true when the rule's TTL replaces the origin's.
    fn amend(&self, d: &mut Directives, targeted: &mut bool, status: StatusCode, expires: bool) {
        if *self == RuleFreshness::default() || !heuristically_cacheable(status) {
            return;
        }
        if let Some(ttl) = self.ttl {
            let secs = Some(ttl.as_secs().min(DELTA_MAX));
            if self.ttl_override {
                *d = Directives {
                    max_age: Some(secs),
                    ..Directives::default()
                };
                // Expires no longer counts either.
                *targeted = true;
            } else if (*targeted || !expires) && d.max_age.is_none() && d.s_maxage.is_none() {
                d.max_age = Some(secs);
            }
        }
        if let Some(w) = self.swr {
            d.swr = Some(w.as_secs().min(DELTA_MAX));
        }
        if let Some(w) = self.sie {
            d.sie = Some(w.as_secs().min(DELTA_MAX));
        }
    }
}

impl Default for PolicyOptions {
    fn default() -> Self {
        Self {
            default_swr: Duration::ZERO,
            default_sie: Duration::ZERO,
            keep: Duration::from_secs(3600),
            stale_if_unreachable: Duration::from_secs(3600),
            rule: RuleFreshness::default(),
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
    /// Window after `fresh_until_ms` in which it may be served when the next tier cannot be
    /// reached (0 when its directives forbid stale use).
    pub unreachable_ms: u32,
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
    /// Fresh for `ttl` from `now_ms` (ms since the Unix epoch), then gone: no stale use.
    pub fn for_ttl(now_ms: u64, ttl: Duration) -> Self {
        let until = now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        Freshness {
            response_time_ms: now_ms,
            initial_age_ms: 0,
            fresh_until_ms: until,
            swr_ms: 0,
            sie_ms: 0,
            unreachable_ms: 0,
            keep_until_ms: until,
        }
    }

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

    /// Whether it may be served at `now_ms` because the next tier cannot be reached (refused,
    /// reset, closed before a response): within stale-if-error or the unreachable window.
    pub fn usable_when_unreachable(&self, now_ms: u64) -> bool {
        let stale_for = now_ms.saturating_sub(self.fresh_until_ms);
        stale_for < u64::from(self.sie_ms.max(self.unreachable_ms))
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

/// The directives this cache acts on, from whichever field governs.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Directives {
    no_store: bool,
    no_cache: bool,
    private: bool,
    public: bool,
    must_revalidate: bool,
    proxy_revalidate: bool,
    must_understand: bool,
    /// `Some(None)`: present but not a valid delta-seconds (the response is then stale).
    max_age: Option<Option<u64>>,
    s_maxage: Option<Option<u64>>,
    swr: Option<u64>,
    sie: Option<u64>,
}

impl Directives {
    /// Directives of a `Cache-Control` or `Surrogate-Control` value, read leniently. The
    /// first occurrence of a directive counts (RFC 9111 4.2.1).
    fn lenient(value: &str) -> Self {
        let mut d = Directives::default();
        for (name, val) in directives(value) {
            match name.as_str() {
                "no-store" => d.no_store = true,
                "no-cache" => d.no_cache = true,
                "private" => d.private = true,
                "public" => d.public = true,
                "must-revalidate" => d.must_revalidate = true,
                "proxy-revalidate" => d.proxy_revalidate = true,
                "must-understand" => d.must_understand = true,
                "max-age" if d.max_age.is_none() => d.max_age = Some(delta_seconds(val)),
                "s-maxage" if d.s_maxage.is_none() => d.s_maxage = Some(delta_seconds(val)),
                "stale-while-revalidate" if d.swr.is_none() => d.swr = delta_seconds(val),
                "stale-if-error" if d.sie.is_none() => d.sie = delta_seconds(val),
                _ => {}
            }
        }
        d
    }

    /// Directives of a `CDN-Cache-Control` value: an RFC 8941 Dictionary (RFC 9213 section
    /// 2.1). `None` when it does not parse, or a known member has a value of the wrong type:
    /// the whole field is then ignored.
    fn dictionary(value: &str) -> Option<Self> {
        let mut d = Directives::default();
        let mut p = sfparse::Parser::new(value.as_bytes());
        let mut any = false;
        while let Some((key, v)) = p.parse_dict().ok()? {
            any = true;
            let flag = matches!(v, sfparse::Value::Bool(true));
            let seconds = match v {
                sfparse::Value::Integer(n) => Some(u64::try_from(n).ok()?.min(DELTA_MAX)),
                _ => None,
            };
            match key {
                "no-store" if flag => d.no_store = true,
                "no-cache" if flag => d.no_cache = true,
                "private" if flag => d.private = true,
                "public" if flag => d.public = true,
                "must-revalidate" if flag => d.must_revalidate = true,
                "proxy-revalidate" if flag => d.proxy_revalidate = true,
                "must-understand" if flag => d.must_understand = true,
                "max-age" => d.max_age = Some(Some(seconds?)),
                "s-maxage" => d.s_maxage = Some(Some(seconds?)),
                "stale-while-revalidate" => d.swr = Some(seconds?),
                "stale-if-error" => d.sie = Some(seconds?),
                "no-store" | "no-cache" | "private" | "public" | "must-revalidate"
                | "proxy-revalidate" | "must-understand" => return None,
                _ => {}
            }
        }
        any.then_some(d)
    }
}

/// Every line of `name`, joined with `, ` (a list field split over lines is one list).
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let mut out: Option<String> = None;
    for v in headers.get_all(name) {
        let s = String::from_utf8_lossy(v.as_bytes());
        match &mut out {
            Some(o) => {
                o.push_str(", ");
                o.push_str(&s);
            }
            None => out = Some(s.into_owned()),
        }
    }
    out
}

/// A delta-seconds value (RFC 9111 section 1.2.2): digits only; larger than 2^31 means 2^31.
fn delta_seconds(v: Option<&str>) -> Option<u64> {
    let v = v?;
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(v.parse::<u64>().unwrap_or(DELTA_MAX).min(DELTA_MAX))
}

/// The directives that govern this cache: a valid `CDN-Cache-Control`, else a
/// `Surrogate-Control` with any directive, else `Cache-Control` (RFC 9213 section 2.1).
/// Returns them and whether a targeted field governs.
fn governing(headers: &HeaderMap) -> (Directives, bool) {
    if let Some(d) = joined(headers, &CDN_CACHE_CONTROL).and_then(|v| Directives::dictionary(&v)) {
        return (d, true);
    }
    if let Some(v) = joined(headers, &SURROGATE_CONTROL) {
        if directives(&v).next().is_some() {
            return (Directives::lenient(&v), true);
        }
    }
    let cc = joined(headers, &CACHE_CONTROL).unwrap_or_default();
    (Directives::lenient(&cc), false)
}

/// The `Age` a response arrived with (RFC 9111 5.1): the first value of the field (a list,
/// or several lines); a value that is not a non-negative integer makes the field ignored;
/// 2^31 or more counts as 2^31.
pub(crate) fn age_value(headers: &HeaderMap) -> Option<u64> {
    let first = headers.get(AGE)?.to_str().ok()?.split(',').next()?.trim();
    delta_seconds(Some(first))
}

/// Whether a `Vary` has `*` among its members, anywhere (RFC 9111 4.1): such a response
/// never matches a later request.
pub(crate) fn vary_star(headers: &HeaderMap) -> bool {
    headers.get_all(http::header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|b| *b == b',')
            .any(|m| m.trim_ascii() == b"*")
    })
}

/// Status codes whose caching requirements this cache understands (RFC 9110 section 15):
/// with `must-understand`, only these are stored (RFC 9111 5.2.2.3).
fn understood(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451
            | 500..=508 | 510 | 511
    )
}

/// Status codes defined as heuristically cacheable (RFC 9110 section 15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Decides whether and for how long to store `res`, received at `now` for `req`.
pub(crate) fn decide(
    req: &request::Parts,
    res: &response::Parts,
    now: SystemTime,
    opts: &PolicyOptions,
) -> Decision {
    let (mut d, mut targeted) = governing(&res.headers);
    opts.rule.amend(
        &mut d,
        &mut targeted,
        res.status,
        res.headers.contains_key(EXPIRES),
    );
    if let Err(why) = storable(req, res, &d) {
        return Decision::Pass(why);
    }
    let lifetime = lifetime(res, &d, targeted, now);
    let age = initial_age(&res.headers, now);
    let ttl = if d.no_cache {
        Duration::ZERO
    } else {
        lifetime.saturating_sub(age)
    };
    // No stale use over these (RFC 9111 4.2.4); s-maxage carries proxy-revalidate's meaning
    // (5.2.2.10), so no default grace over it, though the origin's own RFC 5861 windows
    // still apply.
    let forbidden = d.must_revalidate || d.proxy_revalidate || d.no_cache;
    let defaults_allowed = !forbidden && d.s_maxage.is_none();
    let window = |explicit: Option<u64>, default: Duration| {
        if forbidden {
            Duration::ZERO
        } else {
            match explicit {
                Some(s) => Duration::from_secs(s),
                None if defaults_allowed => default,
                None => Duration::ZERO,
            }
        }
    };
    let swr = window(d.swr, opts.default_swr);
    let sie = window(d.sie, opts.default_sie);
    let unreachable = window(None, opts.stale_if_unreachable);
    let has_validator = res.headers.contains_key(ETAG) || res.headers.contains_key(LAST_MODIFIED);
    let keep = if has_validator {
        opts.keep
    } else {
        Duration::ZERO
    };
    let linger = swr.max(sie).max(keep);
    if ttl.is_zero() && linger.is_zero() {
        // Not worth storing only to be served if the origin goes away later.
        return Decision::Pass("stale on arrival without a validator");
    }
    let linger = linger.max(unreachable);
    let now_ms = unix_ms(now);
    let fresh_until_ms = now_ms + ttl.as_millis() as u64;
    Decision::Store(Freshness {
        response_time_ms: now_ms,
        initial_age_ms: ms32(age),
        fresh_until_ms,
        swr_ms: ms32(swr),
        sie_ms: ms32(sie),
        unreachable_ms: ms32(unreachable),
        keep_until_ms: fresh_until_ms + linger.as_millis() as u64,
    })
}

/// RFC 9111 section 3: may `res` be stored at all? `Err` says why not.
fn storable(
    req: &request::Parts,
    res: &response::Parts,
    d: &Directives,
) -> Result<(), &'static str> {
    let status = res.status;
    // A final status. Partial content is stored (RFC 9111 3.3) when it is one span of a
    // representation of known length, which later ranges can be answered from (`parts.rs`).
    if status.is_informational() || status == StatusCode::NOT_MODIFIED {
        return Err("not a final response");
    }
    if status == StatusCode::PARTIAL_CONTENT && super::parts::Span::of(&res.headers).is_none() {
        return Err("partial content without one byte range of known length");
    }
    let explicit = res.headers.contains_key(EXPIRES) || d.max_age.is_some() || d.s_maxage.is_some();
    // The method: GET and HEAD; POST only with explicit freshness (RFC 9110 9.3.3).
    let method_ok = req.method == Method::GET
        || req.method == Method::HEAD
        || (req.method == Method::POST && explicit);
    if !method_ok {
        return Err("method");
    }
    if Directives::lenient(&joined(&req.headers, &CACHE_CONTROL).unwrap_or_default()).no_store {
        return Err("request no-store");
    }
    // must-understand: stored only with an understood status, and then no-store is
    // overridden (5.2.2.3).
    if d.must_understand {
        if !understood(status) {
            return Err("must-understand: status not understood");
        }
    } else if d.no_store {
        return Err("no-store");
    }
    if d.private {
        return Err("private");
    }
    // Authorization: only with must-revalidate, public or s-maxage (3.5).
    if req.headers.contains_key(AUTHORIZATION)
        && !(d.must_revalidate || d.public || d.s_maxage.is_some())
    {
        return Err("authorization");
    }
    if res.headers.contains_key(SET_COOKIE) {
        return Err("set-cookie");
    }
    if vary_star(&res.headers) {
        return Err("vary *");
    }
    if explicit || d.public || heuristically_cacheable(status) {
        Ok(())
    } else {
        Err("no explicit freshness and not heuristically cacheable")
    }
}

/// The freshness lifetime (RFC 9111 4.2.1, shared cache): s-maxage, max-age, Expires - Date,
/// then a heuristic for heuristically cacheable statuses (4.2.2). A malformed value, or an
/// invalid Expires, makes it zero (stale).
fn lifetime(res: &response::Parts, d: &Directives, targeted: bool, now: SystemTime) -> Duration {
    if let Some(v) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(v.unwrap_or(0));
    }
    let date = header_date(&res.headers, &DATE).unwrap_or(now);
    // A targeted field replaces Expires for this cache (RFC 9213 2.2).
    if !targeted && res.headers.contains_key(EXPIRES) {
        return match header_date(&res.headers, &EXPIRES) {
            Some(expires) => expires.duration_since(date).unwrap_or_default(),
            None => Duration::ZERO,
        };
    }
    if heuristically_cacheable(res.status) || d.public {
        if let Some(lm) = header_date(&res.headers, &LAST_MODIFIED) {
            // 10% of the time since the last change, as the RFC suggests.
            return date.duration_since(lm).unwrap_or_default() / 10;
        }
    }
    Duration::ZERO
}

/// The age of a response as it arrives (RFC 9111 4.2.3): the larger of its `Age` and the time
/// since its `Date` (apparent age). The request's own delay is not known here and not added.
fn initial_age(headers: &HeaderMap, now: SystemTime) -> Duration {
    let age = Duration::from_secs(age_value(headers).unwrap_or(0));
    let apparent = header_date(headers, &DATE)
        .and_then(|d| now.duration_since(d).ok())
        .unwrap_or_default();
    age.max(apparent)
}

/// The first line of a date field, parsed strictly (RFC 9110 5.6.7).
fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<SystemTime> {
    parse_http_date(headers.get(name)?.to_str().ok()?.trim())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
            // RFC 9111 3: any final status with explicit freshness may be stored
            (
                "500",
                vec![],
                vec![("cache-control", "max-age=60")],
                Some(60),
            ),
            (
                "206 without content-range",
                vec![],
                vec![("cache-control", "max-age=60")],
                None,
            ),
            (
                "206 with unknown length",
                vec![],
                vec![
                    ("cache-control", "max-age=60"),
                    ("content-range", "bytes 0-4/*"),
                ],
                None,
            ),
            (
                "206 one span",
                vec![],
                vec![
                    ("cache-control", "max-age=60"),
                    ("content-range", "bytes 4-9/10"),
                ],
                Some(60),
            ),
        ];
        for (name, rq, rs, want) in cases {
            let status = match name {
                "500" => 500,
                n if n.starts_with("206") => 206,
                _ => 200,
            };
            let got = decide(&req(&rq), &res(status, &rs), now(), &o);
            assert_eq!(ttl_secs(&got), want, "{name}: {got:?}");
        }
    }

    /// The rules of RFC 9111 (and 9110 5.6.7, 9213) the first versions got wrong, one row
    /// each: (what, request method, status, response fields, expected freshness in seconds;
    /// `None`: not stored).
    #[test]
    fn rfc9111_rows() {
        let o = PolicyOptions::default();
        let d0 = date(0);
        let d30 = date(-30);
        let lm = date(-1000);
        // 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT; +120 s in the three date forms.
        let imf = "Tue, 14 Nov 2023 22:15:20 GMT";
        let rfc850 = "Tuesday, 14-Nov-23 22:15:20 GMT";
        let asctime = "Tue Nov 14 22:15:20 2023";
        let cc = "cache-control";
        type Row<'a> = (&'a str, &'a str, u16, Vec<(&'a str, &'a str)>, Option<u64>);
        let rows: Vec<Row> = vec![
            // 5.1 Age: the first value counts; anything but a non-negative integer is ignored;
            // 2^31 or more is 2^31.
            (
                "age",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "20")],
                Some(40),
            ),
            (
                "age list",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "20, 50")],
                Some(40),
            ),
            (
                "age lines",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "20"), ("age", "50")],
                Some(40),
            ),
            (
                "age text",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "abc")],
                Some(60),
            ),
            (
                "age negative",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "-20")],
                Some(60),
            ),
            (
                "age fraction",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("age", "20.5")],
                Some(60),
            ),
            (
                "age huge",
                "GET",
                200,
                vec![
                    (cc, "max-age=60"),
                    ("age", "99999999999"),
                    ("etag", "\"e\""),
                ],
                Some(0),
            ),
            // 4.2.3 apparent age: the time since Date counts too
            (
                "apparent age",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("date", &d30)],
                Some(30),
            ),
            // RFC 9213: CDN-Cache-Control is a Dictionary; a bad one is ignored whole
            (
                "cdn-cc dictionary",
                "GET",
                200,
                vec![
                    (cc, "max-age=60"),
                    ("cdn-cache-control", "max-age=600, stale-if-error=10"),
                ],
                Some(600),
            ),
            (
                "cdn-cc string value",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("cdn-cache-control", "max-age=\"600\"")],
                Some(60),
            ),
            (
                "cdn-cc token flag value",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("cdn-cache-control", "no-store=yes")],
                Some(60),
            ),
            (
                "cdn-cc syntax",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("cdn-cache-control", "max-age=600,,")],
                Some(60),
            ),
            (
                "cdn-cc no-store",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("cdn-cache-control", "no-store")],
                None,
            ),
            // 4.1: a * member anywhere in Vary
            (
                "vary * *",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("vary", "*, *")],
                None,
            ),
            (
                "vary foo *",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("vary", "Foo, *")],
                None,
            ),
            (
                "vary , *",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("vary", ", *")],
                None,
            ),
            (
                "vary * line",
                "GET",
                200,
                vec![(cc, "max-age=60"), ("vary", "Foo"), ("vary", "*")],
                None,
            ),
            // RFC 9110 5.6.7: IMF-fixdate strictly, the obsolete forms accepted; an invalid
            // Expires means already expired
            (
                "expires imf",
                "GET",
                200,
                vec![("date", &d0), ("expires", imf)],
                Some(120),
            ),
            (
                "expires rfc850",
                "GET",
                200,
                vec![("date", &d0), ("expires", rfc850)],
                Some(120),
            ),
            (
                "expires asctime",
                "GET",
                200,
                vec![("date", &d0), ("expires", asctime)],
                Some(120),
            ),
            (
                "expires double space",
                "GET",
                200,
                vec![
                    ("date", &d0),
                    ("expires", "Tue,  14 Nov 2023 22:15:20 GMT"),
                    ("etag", "\"e\""),
                ],
                Some(0),
            ),
            (
                "expires zero",
                "GET",
                200,
                vec![("date", &d0), ("expires", "0"), ("etag", "\"e\"")],
                Some(0),
            ),
            // 3, 4.2.2: any final status with explicit freshness; heuristics only for the
            // heuristically cacheable ones
            ("400", "GET", 400, vec![(cc, "max-age=60")], Some(60)),
            ("502", "GET", 502, vec![(cc, "max-age=60")], Some(60)),
            ("503", "GET", 503, vec![(cc, "max-age=60")], Some(60)),
            ("504", "GET", 504, vec![(cc, "max-age=60")], Some(60)),
            ("299", "GET", 299, vec![(cc, "max-age=60")], Some(60)),
            ("599", "GET", 599, vec![(cc, "max-age=60")], Some(60)),
            (
                "302 expires",
                "GET",
                302,
                vec![("date", &d0), ("expires", imf)],
                Some(120),
            ),
            (
                "404 heuristic",
                "GET",
                404,
                vec![("date", &d0), ("last-modified", &lm)],
                Some(100),
            ),
            (
                "302 no heuristic",
                "GET",
                302,
                vec![("date", &d0), ("last-modified", &lm)],
                None,
            ),
            (
                "500 no heuristic",
                "GET",
                500,
                vec![("date", &d0), ("last-modified", &lm)],
                None,
            ),
            // 5.2.2.3 must-understand: an understood status is stored over no-store; an
            // unknown one is not
            (
                "must-understand",
                "GET",
                200,
                vec![(cc, "no-store, must-understand, max-age=60")],
                Some(60),
            ),
            (
                "must-understand unknown",
                "GET",
                299,
                vec![(cc, "no-store, must-understand, max-age=60")],
                None,
            ),
            // RFC 9110 9.3.3: a POST response with explicit freshness
            (
                "post explicit",
                "POST",
                200,
                vec![(cc, "max-age=60")],
                Some(60),
            ),
            (
                "post heuristic",
                "POST",
                200,
                vec![("date", &d0), ("last-modified", &lm)],
                None,
            ),
            ("put", "PUT", 200, vec![(cc, "max-age=60")], None),
            // 1xx and 304 are never stored; 206 only as one span of known length
            ("304", "GET", 304, vec![(cc, "max-age=60")], None),
            ("206", "GET", 206, vec![(cc, "max-age=60")], None),
        ];
        for (name, method, status, rs, want) in rows {
            let mut q = req(&[]);
            q.method = method.parse().unwrap();
            let got = decide(&q, &res(status, &rs), now(), &o);
            assert_eq!(ttl_secs(&got), want, "{name}: {got:?}");
        }
    }

    #[test]
    fn stale_use_when_unreachable_follows_the_directives() {
        let o = PolicyOptions::default();
        let f = |cc: &str| {
            let r = res(200, &[("cache-control", cc), ("etag", "\"e\"")]);
            match decide(&req(&[]), &r, now(), &o) {
                Decision::Store(f) => f.unreachable_ms / 1000,
                Decision::Pass(r) => panic!("{cc}: pass {r}"),
            }
        };
        assert_eq!(f("max-age=60"), 3600);
        for forbidding in [
            "max-age=60, must-revalidate",
            "max-age=60, proxy-revalidate",
            "max-age=60, no-cache",
            "s-maxage=60",
        ] {
            assert_eq!(f(forbidding), 0, "{forbidding}");
        }
    }

    #[test]
    fn stale_windows() {
        let o = PolicyOptions {
            default_swr: Duration::from_secs(5),
            default_sie: Duration::from_secs(7),
            keep: Duration::ZERO,
            stale_if_unreachable: Duration::ZERO,
            rule: RuleFreshness::default(),
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
            unreachable_ms: 0,
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

    #[test]
    fn rule_ttls() {
        let rule = |ttl: u64, ttl_override: bool| PolicyOptions {
            keep: Duration::ZERO,
            rule: RuleFreshness {
                ttl: Some(Duration::from_secs(ttl)),
                ttl_override,
                swr: None,
                sie: Some(Duration::from_secs(9)),
            },
            ..PolicyOptions::default()
        };
        let ttl = |o: &PolicyOptions, status: u16, h: &[(&str, &str)]| match decide(
            &req(&[]),
            &res(status, h),
            now(),
            o,
        ) {
            Decision::Store(f) => Some((
                (f.fresh_until_ms - f.response_time_ms) / 1000,
                f.sie_ms / 1000,
            )),
            Decision::Pass(_) => None,
        };
        let default = rule(60, false);
        // A default: used when the origin names no freshness, not over what it names.
        assert_eq!(ttl(&default, 200, &[]), Some((60, 9)));
        assert_eq!(
            ttl(&default, 200, &[("cache-control", "max-age=5")]),
            Some((5, 9))
        );
        assert_eq!(ttl(&default, 200, &[("cache-control", "no-store")]), None);
        assert_eq!(ttl(&default, 200, &[("cache-control", "private")]), None);
        let date = date(0);
        assert_eq!(
            ttl(&default, 200, &[("date", &date), ("expires", &date)]),
            Some((0, 9))
        );
        let over = rule(60, true);
        // An override: the origin's directives do not count for this cache.
        for cc in ["no-cache", "private", "no-store", "max-age=0", "s-maxage=1"] {
            assert_eq!(
                ttl(&over, 200, &[("cache-control", cc)]),
                Some((60, 9)),
                "{cc}"
            );
        }
        assert_eq!(
            ttl(&over, 200, &[("date", &date), ("expires", &date)]),
            Some((60, 9))
        );
        // Never over Set-Cookie, and not for statuses that are not heuristically cacheable.
        assert_eq!(ttl(&over, 200, &[("set-cookie", "a=b")]), None);
        assert_eq!(ttl(&over, 500, &[]), None);
        assert_eq!(
            ttl(&over, 302, &[("cache-control", "max-age=7")]),
            Some((7, 0))
        );
    }
}
