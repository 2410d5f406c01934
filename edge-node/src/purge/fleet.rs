//! The fleet as the purge hub sees it: every node that follows the hub reports itself every
//! [`REPORT_EVERY`] (`POST /fleet/report`: role, region, version, purge version applied,
//! health), and the hub keeps the last report of each in a bounded table. A node whose last
//! report is older than [`STALE_AFTER`] is shown stale; one silent for [`FORGET_AFTER`] is
//! forgotten.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// How often a follower reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(5);
/// A node is stale after missing this long (three reports).
pub const STALE_AFTER: Duration = Duration::from_secs(15);
/// A node silent this long is dropped from the table.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Nodes kept at most (the oldest report makes room).
pub const MAX_NODES: usize = 1024;

/// What a node says of itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FleetReport {
    /// The node's name (`node_id`, else region and admin address).
    pub node: String,
    /// Its roles (`edge`, `shield`, `dns`).
    pub roles: Vec<String>,
    /// Its region, if it has one.
    #[serde(default)]
    pub region: Option<String>,
    /// The Outpost version it runs.
    pub version: String,
    /// The purge version its caches have applied.
    pub applied: u64,
    /// Whether every caching role can serve (`/healthz`).
    pub healthy: bool,
    /// Why not, when not.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Its admin API's address, for the console's links.
    #[serde(default)]
    pub admin: Option<String>,
}

impl FleetReport {
    /// Why the report is refused (too long fields), if it is.
    pub fn problem(&self) -> Option<String> {
        let short = |s: &str| s.len() <= 128;
        if self.node.is_empty() || !short(&self.node) {
            return Some("node: 1 to 128 bytes".into());
        }
        if self.roles.len() > 8 || !self.roles.iter().all(|r| short(r)) {
            return Some("roles: at most 8 short names".into());
        }
        if !self.region.as_deref().is_none_or(short)
            || !short(&self.version)
            || !self.admin.as_deref().is_none_or(short)
        {
            return Some("region, version and admin: at most 128 bytes".into());
        }
        if self.reasons.len() > 8 || !self.reasons.iter().all(|r| r.len() <= 512) {
            return Some("reasons: at most 8 of 512 bytes".into());
        }
        None
    }
}

/// A node's line in the fleet view.
#[derive(Debug, Clone, Serialize)]
pub struct FleetEntry {
    /// Its last report.
    #[serde(flatten)]
    pub report: FleetReport,
    /// Purge versions it is behind the hub.
    pub lag: u64,
    /// Seconds since its last report.
    pub last_seen_secs: u64,
    /// No report for [`STALE_AFTER`].
    pub stale: bool,
}

/// The hub's table of reports.
#[derive(Debug, Default)]
pub struct Fleet {
    nodes: Mutex<HashMap<String, (FleetReport, SystemTime)>>,
}

impl Fleet {
    /// Keeps `r` as its node's latest report (at `now`).
    pub fn record(&self, r: FleetReport, now: SystemTime) {
        let Ok(mut nodes) = self.nodes.lock() else {
            return;
        };
        nodes.retain(|_, (_, at)| age(*at, now) < FORGET_AFTER);
        if !nodes.contains_key(&r.node) && nodes.len() >= MAX_NODES {
            let oldest = nodes
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                nodes.remove(&k);
            }
        }
        nodes.insert(r.node.clone(), (r, now));
    }

    /// Every node known, by name, with its lag behind `latest` and staleness at `now`.
    pub fn view(&self, latest: u64, now: SystemTime) -> Vec<FleetEntry> {
        let Ok(nodes) = self.nodes.lock() else {
            return Vec::new();
        };
        let mut out: Vec<FleetEntry> = nodes
            .values()
            .filter(|(_, at)| age(*at, now) < FORGET_AFTER)
            .map(|(r, at)| FleetEntry {
                report: r.clone(),
                lag: latest.saturating_sub(r.applied),
                last_seen_secs: age(*at, now).as_secs(),
                stale: age(*at, now) >= STALE_AFTER,
            })
            .collect();
        out.sort_by(|a, b| a.report.node.cmp(&b.report.node));
        out
    }
}

fn age(at: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(at).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn report(node: &str, applied: u64) -> FleetReport {
        FleetReport {
            node: node.into(),
            roles: vec!["edge".into()],
            region: Some("eu".into()),
            version: "0.1.0".into(),
            applied,
            healthy: true,
            reasons: vec![],
            admin: None,
        }
    }

    #[test]
    fn lag_staleness_forgetting_and_the_bound() {
        let f = Fleet::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        f.record(report("a", 3), t0);
        f.record(report("b", 5), t0 + Duration::from_secs(10));
        let v = f.view(5, t0 + Duration::from_secs(16));
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].lag, v[0].stale, v[0].last_seen_secs), (2, true, 16));
        assert_eq!((v[1].lag, v[1].stale, v[1].last_seen_secs), (0, false, 6));
        assert!(f.view(5, t0 + FORGET_AFTER + Duration::from_secs(5)).len() == 1);
        for i in 0..MAX_NODES + 5 {
            f.record(
                report(&format!("n{i}"), 0),
                t0 + Duration::from_secs(20 + i as u64),
            );
        }
        assert_eq!(f.nodes.lock().unwrap().len(), MAX_NODES);
        assert!(report(&"x".repeat(200), 0).problem().is_some());
        assert!(report("ok", 0).problem().is_none());
    }
}
