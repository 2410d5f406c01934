//! The instruments of an HTTP caching node (edge or shield), registered once on the node's
//! meter at start-up: every request, upstream attempt and cache event is counted here and
//! nowhere else. `/metrics` renders them (through the node's registry), OTLP exports them, and
//! `/stats` adds them up.
//!
//! Attributes are bounded: `cdn.tier` (the node's role), `cdn.site` (the site's name, from
//! config), `cdn.cache.status` (five values), `http.request.method` (ten),
//! `http.response.status_class` (`1xx` ... `5xx`). The per-request instruments are bound to
//! their attribute set on first use, so a request costs two atomic updates and no hashing.

use agent::metrics::{method_index, names, DURATION_BUCKETS, METHODS};
use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry::KeyValue;
use std::sync::OnceLock;

/// Names of the instruments this module registers (beside `agent::metrics::names`).
pub(crate) mod instrument {
    /// Requests that joined another request's upstream fetch.
    pub(crate) const COLLAPSED: &str = "outpost.cache.collapsed";
    /// Stale objects refreshed by a 304.
    pub(crate) const REVALIDATED: &str = "outpost.cache.revalidated";
    /// Objects written to the cache.
    pub(crate) const STORES: &str = "outpost.cache.stores";
    /// Upstream bodies that ended badly after the head (`error.type`: truncated, timeout,
    /// slow-reader, disk).
    pub(crate) const BODY_ERRORS: &str = "outpost.upstream.body.errors";
}

/// How a request was answered: the `cdn.cache.status` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Served fresh from cache.
    Hit,
    /// Served stale (stale-while-revalidate or stale-if-error).
    Stale,
    /// Fetched from upstream (including collapsed followers and revalidations).
    Miss,
    /// Not cacheable: passed to upstream.
    Pass,
    /// Refused or answered by the node itself (unknown host, bad request, upstream error).
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Miss,
        Outcome::Pass,
        Outcome::Error,
    ];

    /// The `cdn.cache.status` value: `hit`, `stale`, `miss`, `pass` or `error`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `http.response.status_class` values, by hundred.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: u16) -> usize {
    usize::from(status / 100).clamp(1, 5) - 1
}

/// The request duration histogram and body-bytes counter bound to one attribute set.
struct Bound {
    duration: BoundHistogram<f64>,
    bytes: BoundCounter<u64>,
}

/// The instruments of one node.
pub(crate) struct NodeMetrics {
    tier: &'static str,
    duration: Histogram<f64>,
    bytes: Counter<u64>,
    client_duration: Histogram<f64>,
    body_errors: Counter<u64>,
    collapsed: BoundCounter<u64>,
    revalidated: BoundCounter<u64>,
    stores: BoundCounter<u64>,
    /// Site names by site index; the last one stands for requests that matched no site.
    sites: Box<[std::sync::Arc<str>]>,
    /// Bound instruments by (site, method, cache status, status class), made on first use.
    bound: Box<[OnceLock<Bound>]>,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics")
            .field("tier", &self.tier)
            .field("sites", &self.sites)
            .finish()
    }
}

/// The `cdn.site` value of requests that matched no site.
pub(crate) const NO_SITE: &str = "-";

impl NodeMetrics {
    /// The instruments of a `tier` node serving `sites` (names, by site index), on `m`.
    pub(crate) fn new(m: &Meter, tier: &'static str, sites: &[String]) -> Self {
        let tier_attr = [KeyValue::new("cdn.tier", tier)];
        let counter = |name: &'static str, unit: &'static str, help: &'static str| {
            m.u64_counter(name)
                .with_unit(unit)
                .with_description(help)
                .build()
                .bind(&tier_attr)
        };
        let mut names_by_index: Vec<String> = sites.to_vec();
        names_by_index.push(NO_SITE.to_string());
        let slots = names_by_index.len() * METHODS.len() * Outcome::ALL.len() * CLASSES.len();
        Self {
            tier,
            duration: m
                .f64_histogram(names::HTTP_SERVER_DURATION)
                .with_unit("s")
                .with_description("Time from request to response head.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            bytes: m
                .u64_counter(names::RESPONSE_BYTES)
                .with_unit("By")
                .with_description("Response body bytes sent to clients (known lengths).")
                .build(),
            client_duration: m
                .f64_histogram(names::HTTP_CLIENT_DURATION)
                .with_unit("s")
                .with_description("Time from an upstream request to its response head.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            body_errors: m
                .u64_counter(instrument::BODY_ERRORS)
                .with_unit("{body}")
                .with_description(
                    "Upstream bodies that ended early, stalled or could not be stored.",
                )
                .build(),
            collapsed: counter(
                instrument::COLLAPSED,
                "{request}",
                "Requests that joined another request's upstream fetch.",
            ),
            revalidated: counter(
                instrument::REVALIDATED,
                "{object}",
                "Stale objects refreshed by a 304 from upstream.",
            ),
            stores: counter(
                instrument::STORES,
                "{object}",
                "Objects written to the cache.",
            ),
            sites: names_by_index
                .into_iter()
                .map(std::sync::Arc::from)
                .collect(),
            bound: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The node's role (`edge`, `shield`).
    pub(crate) fn tier(&self) -> &'static str {
        self.tier
    }

    /// Records one answered request: `site` is the site index (`None`: no site matched).
    pub(crate) fn request(
        &self,
        secs: f64,
        site: Option<usize>,
        method: &http::Method,
        status: u16,
        outcome: Outcome,
        body_bytes: Option<u64>,
    ) {
        let no_site = self.sites.len() - 1;
        let s = site.unwrap_or(no_site).min(no_site);
        let m = method_index(method);
        let c = class_index(status);
        let i =
            ((s * METHODS.len() + m) * Outcome::ALL.len() + outcome.index()) * CLASSES.len() + c;
        let Some(slot) = self.bound.get(i) else {
            return;
        };
        let b = slot.get_or_init(|| {
            let attrs = [
                KeyValue::new("cdn.tier", self.tier),
                KeyValue::new("cdn.site", self.sites[s].clone()),
                KeyValue::new("cdn.cache.status", outcome.as_str()),
                KeyValue::new("http.request.method", METHODS[m]),
                KeyValue::new("http.response.status_class", CLASSES[c]),
            ];
            Bound {
                duration: self.duration.bind(&attrs),
                bytes: self.bytes.bind(&attrs[..3]),
            }
        });
        b.duration.record(secs);
        if let Some(n) = body_bytes {
            b.bytes.add(n);
        }
    }

    /// The `cdn.site` of site `site` (`-` for none).
    pub(crate) fn site_name(&self, site: Option<usize>) -> std::sync::Arc<str> {
        let no_site = self.sites.len() - 1;
        self.sites[site.unwrap_or(no_site).min(no_site)].clone()
    }

    /// Records one upstream attempt; `target` is `shield` or `origin`, `status` 0 when no
    /// response came (then `error` names why).
    pub(crate) fn upstream_attempt(
        &self,
        secs: f64,
        site: usize,
        target: &'static str,
        status: u16,
        error: Option<&'static str>,
    ) {
        let no_site = self.sites.len() - 1;
        let mut attrs = vec![
            KeyValue::new("cdn.tier", self.tier),
            KeyValue::new("cdn.site", self.sites[site.min(no_site)].clone()),
            KeyValue::new("cdn.upstream", target),
        ];
        if status > 0 {
            attrs.push(KeyValue::new(
                "http.response.status_class",
                CLASSES[class_index(status)],
            ));
        }
        if let Some(e) = error {
            attrs.push(KeyValue::new("error.type", e));
        }
        self.client_duration.record(secs, &attrs);
    }

    /// A request joined another request's fetch.
    pub(crate) fn collapsed(&self) {
        self.collapsed.add(1);
    }

    /// A stale object was refreshed by a 304.
    pub(crate) fn revalidated(&self) {
        self.revalidated.add(1);
    }

    /// An object was written to the cache.
    pub(crate) fn stored(&self) {
        self.stores.add(1);
    }

    /// An upstream body ended badly after its head; `kind` is `truncated`, `timeout`,
    /// `slow-reader` or `disk`.
    pub(crate) fn body_error(&self, kind: &'static str) {
        self.body_errors.add(
            1,
            &[
                KeyValue::new("cdn.tier", self.tier),
                KeyValue::new("error.type", kind),
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_are_counted_by_site_status_class_and_cache_status() {
        let r = agent::metrics::Registry::default();
        let m = NodeMetrics::new(&r.meter(), "edge", &["www".to_string()]);
        m.request(
            0.001,
            Some(0),
            &http::Method::GET,
            200,
            Outcome::Hit,
            Some(10),
        );
        m.request(
            0.001,
            Some(0),
            &http::Method::GET,
            206,
            Outcome::Hit,
            Some(5),
        );
        m.request(0.002, None, &http::Method::GET, 421, Outcome::Error, None);
        m.request(
            0.002,
            Some(7),
            &http::Method::POST,
            999,
            Outcome::Pass,
            None,
        );
        let text = r.render();
        for want in [
            "http_server_request_duration_seconds_count{cdn_cache_status=\"hit\",cdn_site=\"www\",cdn_tier=\"edge\",http_request_method=\"GET\",http_response_status_class=\"2xx\"} 2",
            "http_server_request_duration_seconds_count{cdn_cache_status=\"error\",cdn_site=\"-\",cdn_tier=\"edge\",http_request_method=\"GET\",http_response_status_class=\"4xx\"} 1",
            "http_server_request_duration_seconds_count{cdn_cache_status=\"pass\",cdn_site=\"-\",cdn_tier=\"edge\",http_request_method=\"POST\",http_response_status_class=\"5xx\"} 1",
            "outpost_http_response_body_bytes_total{cdn_cache_status=\"hit\",cdn_site=\"www\",cdn_tier=\"edge\"} 15",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
