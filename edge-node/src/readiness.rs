//! Whether a caching node can serve now, for `/healthz` (and so for geo-DNS, which stops
//! sending users to a region whose health check fails): not while it drains, not while its
//! disk tier has failed, and not when no site has an upstream that takes connections. And
//! whether it serves degraded (`degraded`): a full file system under the disk tier is not a
//! failed disk (the node serves from memory and origin and keeps writing what fits), so it
//! keeps the node in rotation and is reported as a reason, with 200.
//!
//! An upstream's health is what the node knows of it (active checks, passive failures, a
//! shield skipped after refusing a connection); one that nothing has found down yet is probed
//! with a TCP connect (bounded by [`PROBE_TIMEOUT`]; results kept for [`PROBE_TTL`], so a
//! health checker polling every second costs one connect per upstream per interval), because
//! an idle edge would otherwise report healthy with its shield and origin down.

use crate::proxy::Proxy;
use crate::upstream::addr::OriginAddr;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Longest a connect probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a probe's result stands.
pub(crate) const PROBE_TTL: Duration = Duration::from_secs(2);

/// Connect probes of upstreams, by host:port: when, and whether it connected.
#[derive(Default)]
pub(crate) struct Probes {
    seen: Mutex<HashMap<String, (Instant, bool)>>,
}

impl Probes {
    /// Whether `addr` takes TCP connections (from a recent probe, or a new one).
    async fn connects(&self, addr: &OriginAddr) -> bool {
        let key = addr.authority.as_str().to_string();
        if let Ok(seen) = self.seen.lock() {
            if let Some((at, ok)) = seen.get(&key) {
                if at.elapsed() < PROBE_TTL {
                    return *ok;
                }
            }
        }
        let port = addr
            .authority
            .port_u16()
            .unwrap_or(if addr.is_tls() { 443 } else { 80 });
        let host = addr.authority.host().trim_matches(['[', ']']).to_string();
        let ok = matches!(
            tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect((host, port))).await,
            Ok(Ok(_))
        );
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() > 1024 {
                seen.clear();
            }
            seen.insert(key, (Instant::now(), ok));
        }
        ok
    }
}

/// Why a node (`tier`, `draining`, its request path `proxy`) cannot serve now, or `None`
/// when it can.
pub(crate) async fn unready(
    tier: &str,
    draining: bool,
    proxy: &Proxy,
    probes: &Probes,
) -> Option<String> {
    if draining {
        return Some(format!("{tier}: draining (stopping)"));
    }
    if let Some(d) = proxy.gauges().disk {
        if !d.on {
            return Some(format!(
                "{tier}: the disk tier failed ({} I/O errors) and takes no writes",
                d.errors
            ));
        }
    }
    let now = crate::cache::clock::now_ms();
    // Every upstream the node has not found down, probed at once: one slow address costs
    // one probe timeout, not one per upstream.
    let mut candidates: Vec<OriginAddr> = proxy
        .shields()
        .iter()
        .filter(|s| s.is_up(now))
        .map(|s| s.addr.clone())
        .collect();
    let mut origins: Vec<String> = Vec::new();
    for site in proxy.sites() {
        for o in site.origins.origins() {
            origins.push(o.addr.authority.as_str().to_string());
            if o.usable(now) {
                candidates.push(o.addr.clone());
            }
        }
    }
    let probed = futures_util::future::join_all(candidates.iter().map(|a| probes.connects(a)));
    if probed.await.into_iter().any(|up| up) {
        return None;
    }
    if origins.is_empty() {
        return Some(format!("{tier}: no site is configured"));
    }
    origins.sort_unstable();
    origins.dedup();
    // Counts, not addresses: /healthz answers without a token.
    let shields = match proxy.shields().len() {
        0 => String::new(),
        n => format!(" and {n} shield(s)"),
    };
    Some(format!(
        "{tier}: no site has a healthy upstream ({} origin(s){shields} down)",
        origins.len()
    ))
}

/// What limits a node (`tier`, its request path `proxy`) that can still serve: each reason in
/// one line, none when it runs as configured.
pub(crate) fn degraded(tier: &str, proxy: &Proxy) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(d) = proxy.gauges().disk {
        if let Some(limit) = d.full_limit_bytes {
            reasons.push(format!(
                "{tier}: the disk tier's file system is full; it keeps to {limit} of its configured {} bytes, evicting to make room ({} writes found no space)",
                d.capacity_bytes, d.full_errors
            ));
        }
    }
    reasons
}
