//! The DNS counters as OpenTelemetry instruments (`outpost.dns.*`), on the admin `/metrics`
//! and exported over OTLP with the other roles' metrics. They are observable: a scrape or an
//! export reads the atomics the query path increments, so answering a query costs nothing
//! more.

use crate::health::HealthBoard;
use crate::stats::Stats;
use opentelemetry::KeyValue;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Names of the response codes counted in [`crate::stats::Stats::rcodes`], by index.
const RCODES: [&str; 7] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS",
];

/// Registers the instruments on `meter` (once per server; they outlive reloads, as the
/// counters do).
pub(crate) fn register(
    meter: &opentelemetry::metrics::Meter,
    stats: Arc<Stats>,
    board: Arc<HealthBoard>,
) {
    let s = stats.clone();
    let _ = meter
        .u64_observable_counter("outpost.dns.queries")
        .with_unit("{query}")
        .with_description("DNS queries received, by transport.")
        .with_callback(move |o| {
            o.observe(
                s.udp_queries.load(Relaxed),
                &[KeyValue::new("network.transport", "udp")],
            );
            o.observe(
                s.tcp_queries.load(Relaxed),
                &[KeyValue::new("network.transport", "tcp")],
            );
        })
        .build();
    let s = stats.clone();
    let _ = meter
        .u64_observable_counter("outpost.dns.responses")
        .with_unit("{response}")
        .with_description("DNS responses, by response code.")
        .with_callback(move |o| {
            for (i, name) in RCODES.iter().enumerate() {
                o.observe(
                    s.rcodes[i].load(Relaxed),
                    &[KeyValue::new("dns.response_code", *name)],
                );
            }
        })
        .build();
    type Field = fn(&crate::stats::Stats) -> &AtomicU64;
    let plain: [(&'static str, &'static str, Field); 4] = [
        (
            "outpost.dns.dropped",
            "Packets dropped without an answer.",
            |s| &s.dropped,
        ),
        (
            "outpost.dns.truncated",
            "UDP answers truncated (TC set).",
            |s| &s.truncated,
        ),
        (
            "outpost.dns.ecs_queries",
            "Queries carrying EDNS Client Subnet.",
            |s| &s.ecs,
        ),
        (
            "outpost.dns.fail_open",
            "Geo answers with every region because none was healthy.",
            |s| &s.fail_open,
        ),
    ];
    for (name, help, field) in plain {
        let s = stats.clone();
        let _ = meter
            .u64_observable_counter(name)
            .with_description(help)
            .with_callback(move |o| o.observe(field(&s).load(Relaxed), &[]))
            .build();
    }
    let s = stats.clone();
    let _ = meter
        .u64_observable_counter("outpost.dns.geo.answers")
        .with_unit("{answer}")
        .with_description("Geo answers, by name and the region chosen.")
        .with_callback(move |o| {
            for ((name, region), n) in s.region_counts() {
                o.observe(
                    n,
                    &[
                        KeyValue::new("dns.question.name", name),
                        KeyValue::new("cdn.region", region),
                    ],
                );
            }
        })
        .build();
    let _ = meter
        .u64_observable_gauge("outpost.dns.region.endpoint.up")
        .with_description("Health of each region endpoint (1 up, 0 down).")
        .with_callback(move |o| {
            for e in board.endpoints() {
                o.observe(
                    u64::from(e.is_up()),
                    &[KeyValue::new("url.full", e.url.clone())],
                );
            }
        })
        .build();
}
