//! The node's gauges, read at each scrape or export: the cache's tiers, the fills in flight,
//! the disk tier's counters, and the health of each upstream. Registered once per node, with
//! `cdn.tier`; the callbacks hold the node weakly, so a dropped node stops reporting. One
//! scrape reads the cache's figures once (they take the tiers' locks), not once per gauge.

use super::Proxy;
use crate::cache::CacheGauges;
use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;
use std::sync::{Arc, Weak};

type Read = fn(&Proxy) -> Option<u64>;

/// How long one reading of the cache's figures serves the gauges of a scrape.
const SCRAPE: std::time::Duration = std::time::Duration::from_millis(200);

impl Proxy {
    /// Registers this node's gauges on its registry.
    pub(super) fn register_gauges(self: &Arc<Self>) {
        register(self);
    }

    /// The cache's figures for the gauges: read once per scrape.
    fn scrape(&self) -> CacheGauges {
        let now = std::time::Instant::now();
        if let Ok(mut last) = self.scraped.lock() {
            if let Some((at, g)) = *last {
                if now.duration_since(at) < SCRAPE {
                    return g;
                }
            }
            let g = self.gauges();
            *last = Some((now, g));
            return g;
        }
        self.gauges()
    }
}

fn register(proxy: &Arc<Proxy>) {
    let meter = proxy.registry.meter();
    let tier = KeyValue::new("cdn.tier", proxy.tier());
    let has_disk = proxy.gauges().disk.is_some();
    let gauges: [(&'static str, &'static str, &'static str, Read); 10] = [
        (
            "outpost.cache.memory.bytes",
            "By",
            "Bytes held by the memory tier.",
            |p| Some(p.scrape().memory_bytes),
        ),
        (
            "outpost.cache.memory.capacity",
            "By",
            "Capacity of the memory tier.",
            |p| Some(p.scrape().memory_capacity_bytes),
        ),
        (
            "outpost.cache.objects",
            "{object}",
            "URLs held by the memory tier.",
            |p| Some(p.scrape().objects),
        ),
        (
            "outpost.cache.memory.mapped",
            "{object}",
            "Large bodies held in sealed memory files, sent with sendfile on plain HTTP/1.1 (for the whole process).",
            |_| Some(crate::cache::mapped::mapped_now() as u64),
        ),
        (
            "outpost.cache.inflight",
            "{fetch}",
            "Upstream fetches in flight.",
            |p| Some(p.inflight() as u64),
        ),
        (
            "outpost.cache.disk.bytes",
            "By",
            "Bytes held by the disk tier.",
            |p| p.scrape().disk.map(|d| d.bytes),
        ),
        (
            "outpost.cache.disk.capacity",
            "By",
            "Capacity of the disk tier.",
            |p| p.scrape().disk.map(|d| d.capacity_bytes),
        ),
        (
            "outpost.cache.disk.objects",
            "{object}",
            "Responses held by the disk tier.",
            |p| p.scrape().disk.map(|d| d.objects),
        ),
        (
            "outpost.cache.disk.up",
            "",
            "1 while the disk tier accepts writes.",
            |p| p.scrape().disk.map(|d| u64::from(d.on)),
        ),
        (
            "outpost.cache.disk.full",
            "",
            "1 while the disk tier's file system is full (the tier keeps to what it holds, evicting to make room).",
            |p| p.scrape().disk.map(|d| u64::from(d.full_limit_bytes.is_some())),
        ),
    ];
    for (name, unit, help, read) in gauges {
        if name.starts_with("outpost.cache.disk") && !has_disk {
            continue;
        }
        observe_gauge(
            &meter,
            name,
            unit,
            help,
            Arc::downgrade(proxy),
            tier.clone(),
            read,
        );
    }
    if has_disk {
        let counters: [(&'static str, &'static str, Read); 6] = [
            (
                "outpost.cache.disk.hits",
                "Lookups answered from the disk tier.",
                |p| p.scrape().disk.map(|d| d.hits),
            ),
            (
                "outpost.cache.disk.writes",
                "Responses written to the disk tier.",
                |p| p.scrape().disk.map(|d| d.writes),
            ),
            (
                "outpost.cache.disk.evictions",
                "Responses evicted from the disk tier.",
                |p| p.scrape().disk.map(|d| d.evictions),
            ),
            (
                "outpost.cache.disk.corrupt",
                "Damaged disk entries dropped (never served).",
                |p| p.scrape().disk.map(|d| d.corrupt),
            ),
            ("outpost.cache.disk.errors", "Disk tier I/O errors.", |p| {
                p.scrape().disk.map(|d| d.errors)
            }),
            (
                "outpost.cache.disk.full_errors",
                "Disk tier writes that found the file system full (counted in errors too).",
                |p| p.scrape().disk.map(|d| d.full_errors),
            ),
        ];
        for (name, help, read) in counters {
            let observe = reader(Arc::downgrade(proxy), tier.clone(), read);
            let _ = meter
                .u64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| observe(o))
                .build();
        }
    }
    let sent = reader(Arc::downgrade(proxy), tier.clone(), |_| {
        Some(crate::listener::sent_from_files())
    });
    let _ = meter
        .u64_observable_counter("outpost.http.sendfile")
        .with_unit("By")
        .with_description(
            "Body bytes sent from memory files with sendfile instead of copied (for the whole process).",
        )
        .with_callback(move |o| sent(o))
        .build();
    let node = Arc::downgrade(proxy);
    let _ = meter
        .u64_observable_gauge("outpost.upstream.up")
        .with_description(
            "Whether each upstream (origin or shield) takes requests now (1 up, 0 down).",
        )
        .with_callback(move |o| {
            let Some(p) = node.upgrade() else { return };
            for (kind, addr, up) in p.upstream_health() {
                o.observe(
                    u64::from(up),
                    &[
                        tier.clone(),
                        KeyValue::new("cdn.upstream", kind),
                        KeyValue::new("server.address", addr.host().to_string()),
                        KeyValue::new("server.port", i64::from(addr.port_u16().unwrap_or(80))),
                    ],
                );
            }
        })
        .build();
}

fn observe_gauge(
    meter: &Meter,
    name: &'static str,
    unit: &'static str,
    help: &'static str,
    node: Weak<Proxy>,
    tier: KeyValue,
    read: Read,
) {
    let observe = reader(node, tier, read);
    let _ = meter
        .u64_observable_gauge(name)
        .with_unit(unit)
        .with_description(help)
        .with_callback(move |o| observe(o))
        .build();
}

/// A callback body: `read` of the node, with its tier, while the node lives.
fn reader(
    node: Weak<Proxy>,
    tier: KeyValue,
    read: Read,
) -> impl Fn(&dyn AsyncInstrument<u64>) + Send + Sync + 'static {
    move |o| {
        if let Some(v) = node.upgrade().as_deref().and_then(read) {
            o.observe(v, std::slice::from_ref(&tier));
        }
    }
}
