//! Counters of the DNS server, kept across reloads, and their Prometheus text.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one DNS server.
#[derive(Default)]
pub struct Stats {
    /// Queries over UDP.
    pub udp_queries: AtomicU64,
    /// Queries over TCP.
    pub tcp_queries: AtomicU64,
    /// Packets dropped unanswered (too short, responses, ...).
    pub dropped: AtomicU64,
    /// UDP answers truncated (TC set).
    pub truncated: AtomicU64,
    /// Queries carrying an ECS option.
    pub ecs: AtomicU64,
    /// Geo answers given with every region because none was healthy.
    pub fail_open: AtomicU64,
    /// Responses by rcode (index = rcode, 0..=5, and 6 for BADVERS).
    pub rcodes: [AtomicU64; 7],
    regions: Mutex<BTreeMap<(String, String), Arc<AtomicU64>>>,
}

impl Stats {
    /// Counts a response code.
    pub fn rcode(&self, rcode: u16) {
        let i = if rcode == crate::wire::rcode::BADVERS {
            6
        } else {
            (rcode as usize).min(5)
        };
        self.rcodes[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counter of answers given with `region` for geo name `name`.
    pub fn region_counter(&self, name: &str, region: &str) -> Arc<AtomicU64> {
        let mut m = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((name.to_string(), region.to_string()))
            .or_default()
            .clone()
    }

    /// The geo answers given so far, by (name, region).
    pub fn region_counts(&self) -> Vec<((String, String), u64)> {
        let m = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .map(|(k, c)| (k.clone(), c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Prometheus text exposition of every counter; `health` lists (url, up) pairs.
    pub fn prometheus(&self, health: &[(String, bool)]) -> String {
        let mut s = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let _ = writeln!(
            s,
            "# HELP outpost_dns_queries_total DNS queries received, by transport."
        );
        let _ = writeln!(s, "# TYPE outpost_dns_queries_total counter");
        let _ = writeln!(
            s,
            "outpost_dns_queries_total{{network_transport=\"udp\"}} {}",
            get(&self.udp_queries)
        );
        let _ = writeln!(
            s,
            "outpost_dns_queries_total{{network_transport=\"tcp\"}} {}",
            get(&self.tcp_queries)
        );
        let _ = writeln!(
            s,
            "# HELP outpost_dns_responses_total DNS responses, by rcode."
        );
        let _ = writeln!(s, "# TYPE outpost_dns_responses_total counter");
        for (i, name) in [
            "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "BADVERS",
        ]
        .iter()
        .enumerate()
        {
            let _ = writeln!(
                s,
                "outpost_dns_responses_total{{dns_response_code=\"{name}\"}} {}",
                get(&self.rcodes[i])
            );
        }
        for (metric, help, c) in [
            (
                "outpost_dns_dropped_total",
                "Packets dropped without an answer.",
                &self.dropped,
            ),
            (
                "outpost_dns_truncated_total",
                "UDP answers truncated (TC set).",
                &self.truncated,
            ),
            (
                "outpost_dns_ecs_queries_total",
                "Queries carrying EDNS Client Subnet.",
                &self.ecs,
            ),
            (
                "outpost_dns_fail_open_total",
                "Geo answers with every region because none was healthy.",
                &self.fail_open,
            ),
        ] {
            let _ = writeln!(s, "# HELP {metric} {help}");
            let _ = writeln!(s, "# TYPE {metric} counter");
            let _ = writeln!(s, "{metric} {}", get(c));
        }
        let _ = writeln!(
            s,
            "# HELP outpost_dns_geo_answers_total Geo answers, by name and region chosen."
        );
        let _ = writeln!(s, "# TYPE outpost_dns_geo_answers_total counter");
        for ((name, region), n) in self.region_counts() {
            let _ = writeln!(
                s,
                "outpost_dns_geo_answers_total{{dns_question_name=\"{name}\",cdn_region=\"{region}\"}} {n}"
            );
        }
        let _ = writeln!(
            s,
            "# HELP outpost_dns_region_endpoint_up Health of each region endpoint (1 up, 0 down)."
        );
        let _ = writeln!(s, "# TYPE outpost_dns_region_endpoint_up gauge");
        for (url, up) in health {
            let _ = writeln!(
                s,
                "outpost_dns_region_endpoint_up{{url_full=\"{url}\"}} {}",
                u8::from(*up)
            );
        }
        s
    }
}
