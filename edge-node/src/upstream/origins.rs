//! The origins of a site: load balancing across the healthy ones, passive health (a connect
//! error or a 5xx takes an origin out for `PASSIVE_BACKOFF`) and active health checks (an HTTP
//! GET of a configured path every interval; `unhealthy_after` failures in a row take an origin
//! out, `healthy_after` successes bring it back). When no origin is healthy, all are tried
//! anyway: a guess beats a certain error.

use super::addr::OriginAddr;
use super::tls::UpstreamClient;
use agent::throttle::RepeatedWarning;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// How long an origin that failed a request is avoided.
pub(crate) const PASSIVE_BACKOFF: Duration = Duration::from_secs(10);

/// Active health check settings of a site.
#[derive(Debug, Clone)]
pub(crate) struct HealthCheck {
    /// Path to GET (`/healthz`).
    pub path: String,
    /// Host header to send.
    pub host: String,
    /// Time between checks.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes in a row that make an origin healthy again.
    pub healthy_after: u32,
    /// Failures in a row that make an origin unhealthy.
    pub unhealthy_after: u32,
}

/// One origin and what is known of its health.
#[derive(Debug)]
pub(crate) struct Origin {
    /// Its address.
    pub addr: OriginAddr,
    healthy: AtomicBool,
    fails: AtomicU32,
    oks: AtomicU32,
    avoid_until_ms: AtomicU64,
    /// Failed requests to it, said once per interval.
    pub failing: RepeatedWarning,
}

impl Origin {
    fn new(addr: OriginAddr) -> Self {
        Self {
            failing: RepeatedWarning::new(
                format!("requests to origin {addr} fail"),
                format!("origin {addr} answers again"),
            ),
            addr,
            healthy: AtomicBool::new(true),
            fails: AtomicU32::new(0),
            oks: AtomicU32::new(0),
            avoid_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether active checks (if any) say it is up.
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether requests go to it now: healthy, and not avoided after a recent failure.
    pub(crate) fn usable(&self, now_ms: u64) -> bool {
        self.is_healthy() && self.avoid_until_ms.load(Ordering::Relaxed) <= now_ms
    }
}

/// The origins of one site.
pub(crate) struct OriginPool {
    origins: Vec<Origin>,
    next: AtomicUsize,
    /// Active checks, if configured.
    pub health: Option<HealthCheck>,
    /// The site's own client, when its TLS settings differ from the defaults.
    pub client: Option<UpstreamClient>,
    /// The Host sent to origins instead of the client's (a bucket's name, say).
    pub host: Option<http::HeaderValue>,
    /// The site's index (its metrics' `cdn.site`).
    pub site: usize,
}

impl std::fmt::Debug for OriginPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginPool")
            .field("origins", &self.origins)
            .field("health", &self.health)
            .field("own_client", &self.client.is_some())
            .field("host", &self.host)
            .finish()
    }
}

impl OriginPool {
    /// A pool over `addrs`.
    pub(crate) fn new(addrs: Vec<OriginAddr>, health: Option<HealthCheck>) -> Self {
        Self {
            origins: addrs.into_iter().map(Origin::new).collect(),
            next: AtomicUsize::new(0),
            health,
            client: None,
            host: None,
            site: 0,
        }
    }

    /// The origins.
    pub(crate) fn origins(&self) -> &[Origin] {
        &self.origins
    }

    /// The order to try origins in for one request: usable ones round-robin, then the rest.
    pub(crate) fn order(&self, now_ms: u64) -> Vec<&Origin> {
        let n = self.origins.len();
        if n == 0 {
            return Vec::new();
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let rotated = (0..n).map(|i| &self.origins[(start + i) % n]);
        let (mut good, rest): (Vec<&Origin>, Vec<&Origin>) =
            rotated.partition(|o| o.usable(now_ms));
        good.extend(rest);
        good
    }

    /// A request to `o` failed (connect error, timeout or 5xx): avoid it for a while, unless it
    /// is the only origin.
    pub(crate) fn report_failure(&self, o: &Origin, now_ms: u64) {
        if self.origins.len() > 1 {
            o.avoid_until_ms.store(
                now_ms + PASSIVE_BACKOFF.as_millis() as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Records one active check result; returns the new health when it changed.
    pub(crate) fn record_check(&self, o: &Origin, ok: bool) -> Option<bool> {
        let Some(h) = &self.health else { return None };
        if ok {
            o.fails.store(0, Ordering::Relaxed);
            let oks = o.oks.fetch_add(1, Ordering::Relaxed) + 1;
            if !o.is_healthy() && oks >= h.healthy_after {
                o.healthy.store(true, Ordering::Relaxed);
                o.avoid_until_ms.store(0, Ordering::Relaxed);
                return Some(true);
            }
        } else {
            o.oks.store(0, Ordering::Relaxed);
            let fails = o.fails.fetch_add(1, Ordering::Relaxed) + 1;
            if o.is_healthy() && fails >= h.unhealthy_after {
                o.healthy.store(false, Ordering::Relaxed);
                return Some(false);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> OriginPool {
        let addrs = (0..n)
            .map(|i| OriginAddr::parse(&format!("http://127.0.0.1:{}", 1000 + i)).unwrap())
            .collect();
        let hc = HealthCheck {
            path: "/h".into(),
            host: "a.test".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_after: 2,
            unhealthy_after: 3,
        };
        OriginPool::new(addrs, Some(hc))
    }

    #[test]
    fn round_robin_over_healthy_origins() {
        let p = pool(3);
        let firsts: Vec<_> = (0..6).map(|_| p.order(0)[0].addr.to_string()).collect();
        assert_eq!(firsts[0..3], firsts[3..6]);
        assert_ne!(firsts[0], firsts[1]);
    }

    #[test]
    fn failures_and_checks_move_origins_out_and_back() {
        let p = pool(2);
        let a = &p.origins()[0];
        p.report_failure(a, 1000);
        for _ in 0..4 {
            assert_ne!(p.order(1000)[0].addr, a.addr, "avoided after a failure");
        }
        assert!(p
            .order(1000 + PASSIVE_BACKOFF.as_millis() as u64)
            .iter()
            .any(|o| o.addr == a.addr));
        assert_eq!(p.record_check(a, false), None);
        assert_eq!(p.record_check(a, false), None);
        assert_eq!(
            p.record_check(a, false),
            Some(false),
            "unhealthy after 3 failures"
        );
        assert_eq!(
            p.order(u64::MAX / 2).last().unwrap().addr,
            a.addr,
            "tried last"
        );
        assert_eq!(p.record_check(a, true), None);
        assert_eq!(
            p.record_check(a, true),
            Some(true),
            "healthy after 2 successes"
        );
        // A single origin is never avoided: there is nowhere else to go.
        let one = pool(1);
        one.report_failure(&one.origins()[0], 0);
        assert!(one.origins()[0].usable(1));
    }
}
