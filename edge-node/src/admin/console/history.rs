//! The overview's history: a ring of the node's counters sampled every interval (10 s by
//! default; 360 samples, an hour), per tier and per site, taken from the same instruments as
//! `/stats`; and the rates between consecutive samples (requests/s, hit ratio, bandwidth,
//! status classes, upstream errors, latency percentiles from the histogram's buckets).
//! Sampled by one background task, never on the request path; the ring is bounded.

use agent::metrics::{names, Snapshot};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// Samples kept (an hour at the default interval).
pub(crate) const SAMPLES: usize = 360;
/// The default interval between samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(10);

/// The interval: `OUTPOST_CONSOLE_SAMPLE` (`"10s"`, at least 1 s), else [`INTERVAL`].
pub(crate) fn interval() -> Duration {
    std::env::var("OUTPOST_CONSOLE_SAMPLE")
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .map_or(INTERVAL, |d| d.max(Duration::from_secs(1)))
}

/// Cumulative counters of one series at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Counters {
    pub requests: u64,
    /// Hits and stale answers.
    pub hits: u64,
    pub misses: u64,
    pub passes: u64,
    pub errors: u64,
    /// 1xx .. 5xx.
    pub classes: [u64; 5],
    pub bytes: u64,
    pub upstream_attempts: u64,
    pub upstream_errors: u64,
    /// Bucket bounds (seconds) and counts of the request duration histogram.
    pub bounds: Vec<f64>,
    pub buckets: Vec<u64>,
}

impl Counters {
    /// The counters of the points of `snap` matching `filter`.
    pub(crate) fn of(snap: &Snapshot, filter: &[(&str, &str)]) -> Self {
        let server = names::HTTP_SERVER_DURATION;
        let by_cache = snap.totals_by(server, filter, Some("cdn.cache.status"));
        let c = |s: &str| by_cache.get(s).copied().unwrap_or(0);
        let by_class = snap.totals_by(server, filter, Some("http.response.status_class"));
        let mut classes = [0; 5];
        for (i, k) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            classes[i] = by_class.get(*k).copied().unwrap_or(0);
        }
        let client = names::HTTP_CLIENT_DURATION;
        let failed: u64 = snap
            .totals_by(client, filter, Some("error.type"))
            .values()
            .sum();
        let upstream_5xx = snap
            .totals_by(client, filter, Some("http.response.status_class"))
            .get("5xx")
            .copied()
            .unwrap_or(0);
        let (bounds, buckets) = snap.buckets(server, filter).unwrap_or_default();
        Self {
            requests: by_cache.values().sum(),
            hits: c("hit") + c("stale"),
            misses: c("miss"),
            passes: c("pass"),
            errors: c("error"),
            classes,
            bytes: snap.total(names::RESPONSE_BYTES, filter),
            upstream_attempts: snap.total(client, filter),
            upstream_errors: failed + upstream_5xx,
            bounds,
            buckets,
        }
    }
}

/// Every series at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub series: BTreeMap<String, Counters>,
}

/// The rates of one series over consecutive samples, for the charts.
#[derive(Debug, Default, Serialize, PartialEq)]
pub(crate) struct Rates {
    /// Each interval's end, ms since the epoch.
    pub t: Vec<u64>,
    pub rps: Vec<f64>,
    /// Hits over hits and misses (`null` with neither).
    pub hit_ratio: Vec<Option<f64>>,
    pub bytes_per_s: Vec<f64>,
    /// Per second, by class: 1xx .. 5xx.
    pub classes: [Vec<f64>; 5],
    pub upstream_errors_per_s: Vec<f64>,
    pub upstream_per_s: Vec<f64>,
    /// Latency percentiles, ms (`null` without requests).
    pub p50_ms: Vec<Option<f64>>,
    pub p95_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

/// The `q` quantile (0..1) of the histogram whose bucket counts are `counts`, interpolated
/// within its bucket; `None` when empty. Above the last bound counts as the last bound.
pub(crate) fn quantile(bounds: &[f64], counts: &[u64], q: f64) -> Option<f64> {
    let n: u64 = counts.iter().sum();
    if n == 0 {
        return None;
    }
    let target = q * n as f64;
    let mut seen = 0u64;
    for (i, c) in counts.iter().enumerate() {
        if *c > 0 && (seen + c) as f64 >= target {
            let lower = if i == 0 {
                0.0
            } else {
                bounds.get(i - 1).copied()?
            };
            let Some(upper) = bounds.get(i).copied() else {
                return Some(lower);
            };
            let within = ((target - seen as f64) / *c as f64).clamp(0.0, 1.0);
            return Some(lower + (upper - lower) * within);
        }
        seen += c;
    }
    bounds.last().copied()
}

/// The rates of `series` between each pair of consecutive samples.
pub(crate) fn rates(samples: &[Sample], series: &str) -> Rates {
    let mut r = Rates::default();
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let secs = (b.at_ms.saturating_sub(a.at_ms)) as f64 / 1000.0;
        if secs <= 0.0 {
            continue;
        }
        let empty = Counters::default();
        let ca = a.series.get(series).unwrap_or(&empty);
        let Some(cb) = b.series.get(series) else {
            continue;
        };
        let d = |x: u64, y: u64| y.saturating_sub(x) as f64;
        r.t.push(b.at_ms);
        r.rps.push(d(ca.requests, cb.requests) / secs);
        let (h, m) = (d(ca.hits, cb.hits), d(ca.misses, cb.misses));
        r.hit_ratio.push((h + m > 0.0).then(|| h / (h + m)));
        r.bytes_per_s.push(d(ca.bytes, cb.bytes) / secs);
        for (i, v) in r.classes.iter_mut().enumerate() {
            v.push(d(ca.classes[i], cb.classes[i]) / secs);
        }
        r.upstream_errors_per_s
            .push(d(ca.upstream_errors, cb.upstream_errors) / secs);
        r.upstream_per_s
            .push(d(ca.upstream_attempts, cb.upstream_attempts) / secs);
        let delta: Vec<u64> = cb
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(ca.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let ms = |q| quantile(&cb.bounds, &delta, q).map(|s| (s * 1000.0 * 100.0).round() / 100.0);
        r.p50_ms.push(ms(0.5));
        r.p95_ms.push(ms(0.95));
        r.p99_ms.push(ms(0.99));
    }
    r
}

/// The ring.
#[derive(Default)]
pub(crate) struct History(Mutex<VecDeque<Sample>>);

impl History {
    /// Adds `s`, forgetting the oldest beyond [`SAMPLES`].
    pub(crate) fn push(&self, s: Sample) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= SAMPLES {
                q.pop_front();
            }
            q.push_back(s);
        }
    }

    /// A copy of the samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample(at_s: u64, requests: u64, hits: u64, buckets: Vec<u64>) -> Sample {
        let c = Counters {
            requests,
            hits,
            misses: requests - hits,
            classes: [0, requests, 0, 0, 0],
            bytes: requests * 100,
            bounds: vec![0.01, 0.1, 1.0],
            buckets,
            ..Default::default()
        };
        Sample {
            at_ms: at_s * 1000,
            series: [("edge".to_string(), c)].into_iter().collect(),
        }
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let b = [0.01, 0.1, 1.0];
        assert_eq!(quantile(&b, &[0, 0, 0, 0], 0.5), None);
        assert_eq!(quantile(&b, &[10, 0, 0, 0], 0.5), Some(0.005));
        let p = quantile(&b, &[0, 10, 0, 0], 0.5).unwrap();
        assert!((p - 0.055).abs() < 1e-9, "{p}");
        assert_eq!(
            quantile(&b, &[0, 0, 0, 4], 0.99),
            Some(1.0),
            "overflow bucket"
        );
        let p99 = quantile(&b, &[9, 0, 1, 0], 0.99).unwrap();
        assert!((p99 - 0.91).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn rates_between_samples_and_a_bounded_ring() {
        let h = History::default();
        h.push(sample(0, 0, 0, vec![0, 0, 0, 0]));
        h.push(sample(10, 100, 75, vec![100, 0, 0, 0]));
        h.push(sample(20, 100, 75, vec![100, 0, 0, 0]));
        let r = rates(&h.samples(), "edge");
        assert_eq!(r.t, [10_000, 20_000]);
        assert_eq!(r.rps, [10.0, 0.0]);
        assert_eq!(r.hit_ratio, [Some(0.75), None]);
        assert_eq!(r.bytes_per_s, [1000.0, 0.0]);
        assert_eq!(r.classes[1], [10.0, 0.0]);
        assert_eq!(r.p50_ms, [Some(5.0), None]);
        assert!(rates(&h.samples(), "nope").t.is_empty());
        for i in 0..SAMPLES + 5 {
            h.push(sample(30 + i as u64, 0, 0, vec![]));
        }
        assert_eq!(h.samples().len(), SAMPLES);
    }
}
