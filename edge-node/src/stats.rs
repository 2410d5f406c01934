//! Counters and a latency histogram for the edge, rendered as Prometheus text and JSON.
//!
//! Plain atomics: registered once, incremented on the hot path without locks or allocation.
//! Each observable event increments in exactly one place (the proxy's `record_*` calls).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the request duration histogram; explicit, since the durations are
/// in seconds and most hits take well under a millisecond.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a request was answered, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Served fresh from cache.
    Hit,
    /// Served stale (stale-while-revalidate or stale-if-error).
    Stale,
    /// Fetched from upstream (including collapsed followers and revalidations).
    Miss,
    /// Not cacheable: passed to upstream.
    Pass,
    /// Refused or answered by the edge itself (unknown host, bad request, upstream error).
    Error,
}

impl Outcome {
    /// The `cdn.cache.status` value: `hit`, `stale`, `miss`, `pass` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
        }
    }
}

/// The edge's counters.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    hits: AtomicU64,
    stale: AtomicU64,
    misses: AtomicU64,
    passes: AtomicU64,
    errors: AtomicU64,
    collapsed: AtomicU64,
    revalidated: AtomicU64,
    stores: AtomicU64,
    bytes_out: AtomicU64,
    upstream_requests: AtomicU64,
    upstream_connect_errors: AtomicU64,
    upstream_timeouts: AtomicU64,
    upstream_protocol_errors: AtomicU64,
    upstream_truncated: AtomicU64,
    duration_buckets: [AtomicU64; DURATION_BUCKETS.len()],
    duration_count: AtomicU64,
    duration_sum_us: AtomicU64,
}

/// Gauges read from the store when rendering.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StoreGauges {
    /// Bytes charged to the memory tier.
    pub memory_bytes: u64,
    /// Configured memory tier capacity.
    pub memory_capacity_bytes: u64,
    /// URLs stored.
    pub objects: u64,
    /// Fetches in flight.
    pub inflight: u64,
    /// The disk tier, when configured.
    pub disk: Option<DiskGauges>,
}

/// Figures of the disk tier.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DiskGauges {
    /// Bytes on disk.
    pub bytes: u64,
    /// Configured size.
    pub capacity_bytes: u64,
    /// Responses stored.
    pub objects: u64,
    /// Whether the index rebuild after start has finished.
    pub ready: bool,
    /// Whether the tier is accepting writes (false for a while after an error).
    pub on: bool,
    /// Lookups answered from disk.
    pub hits: u64,
    /// Objects written.
    pub writes: u64,
    /// Objects evicted.
    pub evictions: u64,
    /// Damaged entries dropped.
    pub corrupt: u64,
    /// I/O errors.
    pub errors: u64,
}

impl Stats {
    /// Counts one answered request.
    pub fn record(&self, outcome: Outcome, elapsed: Duration, body_bytes: Option<u64>) {
        self.requests.fetch_add(1, Relaxed);
        let c = match outcome {
            Outcome::Hit => &self.hits,
            Outcome::Stale => &self.stale,
            Outcome::Miss => &self.misses,
            Outcome::Pass => &self.passes,
            Outcome::Error => &self.errors,
        };
        c.fetch_add(1, Relaxed);
        if let Some(b) = body_bytes {
            self.bytes_out.fetch_add(b, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.duration_buckets[i].fetch_add(1, Relaxed);
                break;
            }
        }
        self.duration_count.fetch_add(1, Relaxed);
        self.duration_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// A request joined another request's fetch.
    pub fn record_collapsed(&self) {
        self.collapsed.fetch_add(1, Relaxed);
    }

    /// A stale object was refreshed by a 304.
    pub fn record_revalidated(&self) {
        self.revalidated.fetch_add(1, Relaxed);
    }

    /// An object was written to the store.
    pub fn record_store(&self) {
        self.stores.fetch_add(1, Relaxed);
    }

    /// A request was sent upstream.
    pub fn record_upstream_request(&self) {
        self.upstream_requests.fetch_add(1, Relaxed);
    }

    /// An upstream failed; `kind` is `UpstreamError::kind()` or `"truncated"`.
    pub fn record_upstream_error(&self, kind: &str) {
        let c = match kind {
            "connect" => &self.upstream_connect_errors,
            "timeout" => &self.upstream_timeouts,
            "truncated" => &self.upstream_truncated,
            _ => &self.upstream_protocol_errors,
        };
        c.fetch_add(1, Relaxed);
    }

    /// Upstream requests sent so far.
    pub fn upstream_requests(&self) -> u64 {
        self.upstream_requests.load(Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render_prometheus(&self, g: &StoreGauges) -> String {
        let mut o = String::with_capacity(4096);
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(o, "# HELP outpost_edge_requests_total Requests answered, by cache result.\n# TYPE outpost_edge_requests_total counter");
        for (label, c) in [
            ("hit", &self.hits),
            ("stale", &self.stale),
            ("miss", &self.misses),
            ("pass", &self.passes),
            ("error", &self.errors),
        ] {
            let _ = writeln!(
                o,
                "outpost_edge_requests_total{{cache=\"{label}\"}} {}",
                c.load(Relaxed)
            );
        }
        counter(
            &mut o,
            "outpost_edge_collapsed_total",
            "Requests that joined another request's upstream fetch.",
            self.collapsed.load(Relaxed),
        );
        counter(
            &mut o,
            "outpost_edge_revalidated_total",
            "Stale objects refreshed by a 304 from upstream.",
            self.revalidated.load(Relaxed),
        );
        counter(
            &mut o,
            "outpost_edge_stores_total",
            "Objects written to the cache.",
            self.stores.load(Relaxed),
        );
        counter(
            &mut o,
            "outpost_edge_response_body_bytes_total",
            "Response body bytes sent to clients (known lengths).",
            self.bytes_out.load(Relaxed),
        );
        counter(
            &mut o,
            "outpost_edge_upstream_requests_total",
            "Requests sent to origins.",
            self.upstream_requests.load(Relaxed),
        );
        let _ = writeln!(o, "# HELP outpost_edge_upstream_errors_total Upstream failures, by kind.\n# TYPE outpost_edge_upstream_errors_total counter");
        for (label, c) in [
            ("connect", &self.upstream_connect_errors),
            ("timeout", &self.upstream_timeouts),
            ("protocol", &self.upstream_protocol_errors),
            ("truncated", &self.upstream_truncated),
        ] {
            let _ = writeln!(
                o,
                "outpost_edge_upstream_errors_total{{kind=\"{label}\"}} {}",
                c.load(Relaxed)
            );
        }
        let _ = writeln!(o, "# HELP outpost_edge_request_duration_seconds Time from request to response head.\n# TYPE outpost_edge_request_duration_seconds histogram");
        let mut cum = 0;
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            cum += self.duration_buckets[i].load(Relaxed);
            let _ = writeln!(
                o,
                "outpost_edge_request_duration_seconds_bucket{{le=\"{le}\"}} {cum}"
            );
        }
        let count = self.duration_count.load(Relaxed);
        let _ = writeln!(
            o,
            "outpost_edge_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            o,
            "outpost_edge_request_duration_seconds_sum {}",
            self.duration_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(o, "outpost_edge_request_duration_seconds_count {count}");
        let gauge = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut o,
            "outpost_edge_cache_memory_bytes",
            "Bytes held by the memory tier.",
            g.memory_bytes,
        );
        gauge(
            &mut o,
            "outpost_edge_cache_memory_capacity_bytes",
            "Capacity of the memory tier.",
            g.memory_capacity_bytes,
        );
        gauge(
            &mut o,
            "outpost_edge_cache_objects",
            "URLs held by the memory tier.",
            g.objects,
        );
        gauge(
            &mut o,
            "outpost_edge_inflight_fetches",
            "Upstream fetches in flight.",
            g.inflight,
        );
        if let Some(d) = &g.disk {
            gauge(
                &mut o,
                "outpost_edge_cache_disk_bytes",
                "Bytes held by the disk tier.",
                d.bytes,
            );
            gauge(
                &mut o,
                "outpost_edge_cache_disk_capacity_bytes",
                "Capacity of the disk tier.",
                d.capacity_bytes,
            );
            gauge(
                &mut o,
                "outpost_edge_cache_disk_objects",
                "Responses held by the disk tier.",
                d.objects,
            );
            gauge(
                &mut o,
                "outpost_edge_cache_disk_up",
                "1 while the disk tier accepts writes.",
                u64::from(d.on),
            );
            counter(
                &mut o,
                "outpost_edge_cache_disk_hits_total",
                "Lookups answered from the disk tier.",
                d.hits,
            );
            counter(
                &mut o,
                "outpost_edge_cache_disk_writes_total",
                "Responses written to the disk tier.",
                d.writes,
            );
            counter(
                &mut o,
                "outpost_edge_cache_disk_evictions_total",
                "Responses evicted from the disk tier.",
                d.evictions,
            );
            counter(
                &mut o,
                "outpost_edge_cache_disk_corrupt_total",
                "Damaged disk entries dropped (never served).",
                d.corrupt,
            );
            counter(
                &mut o,
                "outpost_edge_cache_disk_errors_total",
                "Disk tier I/O errors.",
                d.errors,
            );
        }
        o
    }

    /// The same figures as JSON.
    pub fn to_json(&self, g: &StoreGauges) -> serde_json::Value {
        serde_json::json!({
            "requests": self.requests.load(Relaxed),
            "hits": self.hits.load(Relaxed),
            "stale": self.stale.load(Relaxed),
            "misses": self.misses.load(Relaxed),
            "passes": self.passes.load(Relaxed),
            "errors": self.errors.load(Relaxed),
            "collapsed": self.collapsed.load(Relaxed),
            "revalidated": self.revalidated.load(Relaxed),
            "stores": self.stores.load(Relaxed),
            "response_body_bytes": self.bytes_out.load(Relaxed),
            "upstream": {
                "requests": self.upstream_requests.load(Relaxed),
                "connect_errors": self.upstream_connect_errors.load(Relaxed),
                "timeouts": self.upstream_timeouts.load(Relaxed),
                "protocol_errors": self.upstream_protocol_errors.load(Relaxed),
                "truncated": self.upstream_truncated.load(Relaxed),
            },
            "cache": g,
        })
    }
}
