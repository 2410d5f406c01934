//! Counters of the DNS server, kept across reloads (read by the instruments in `telemetry.rs`).

use std::collections::BTreeMap;
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
}
