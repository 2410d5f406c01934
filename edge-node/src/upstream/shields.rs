//! The parent tier as an edge sees it: shields ranked per key by rendezvous (highest random
//! weight) hashing, so each object has one home shield and adding or removing a shield moves
//! only that shield's share of keys; a shield that refuses a connection is skipped for
//! `SHIELD_RETRY`. Requests to a shield carry the shared secret and the purge version this
//! node has applied.

use super::addr::OriginAddr;
use agent::throttle::RepeatedWarning;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Request field carrying the edge-to-shield shared secret.
pub static SHIELD_SECRET: http::HeaderName = http::HeaderName::from_static("outpost-shield-secret");
/// Request field carrying the purge version the edge has applied.
pub static PURGE_VERSION: http::HeaderName = http::HeaderName::from_static("outpost-purge-version");
/// How long a shield that refused a connection is skipped.
pub const SHIELD_RETRY: Duration = Duration::from_secs(5);

/// A parent-tier node.
#[derive(Debug)]
pub(crate) struct Shield {
    /// Its address.
    pub addr: OriginAddr,
    id: u64,
    down_until_ms: AtomicU64,
    /// Failed requests to it, said once per interval.
    pub failing: RepeatedWarning,
}

impl Shield {
    /// A shield at `addr`.
    pub(crate) fn new(addr: OriginAddr) -> Self {
        let id = xxhash_rust::xxh3::xxh3_64(addr.to_string().as_bytes());
        Self {
            failing: RepeatedWarning::new(
                format!("requests to shield {addr} fail"),
                format!("shield {addr} answers again"),
            ),
            addr,
            id,
            down_until_ms: AtomicU64::new(0),
        }
    }

    /// Whether requests go to it now (it has not refused a connection lately).
    pub(crate) fn is_up(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Relaxed) <= now_ms
    }

    pub(crate) fn mark_down(&self, now_ms: u64) {
        self.down_until_ms
            .store(now_ms + SHIELD_RETRY.as_millis() as u64, Ordering::Relaxed);
    }
}

/// Ranks shields for a key by rendezvous hashing: highest `hash(key, shield)` first.
pub(crate) fn rank(shields: &[Shield], key: u128) -> Vec<&Shield> {
    let mut scored: Vec<(u64, &Shield)> = shields
        .iter()
        .map(|s| {
            let mut buf = [0u8; 24];
            buf[..16].copy_from_slice(&key.to_le_bytes());
            buf[16..].copy_from_slice(&s.id.to_le_bytes());
            (xxhash_rust::xxh3::xxh3_64(&buf), s)
        })
        .collect();
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    scored.into_iter().map(|(_, s)| s).collect()
}

/// The parent tier of an edge: shields and the secret they expect.
#[derive(Debug, Default)]
pub(crate) struct ParentTier {
    /// The shields.
    pub shields: Vec<Shield>,
    /// The shared secret sent to them.
    pub secret: Option<http::HeaderValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shields(n: usize) -> Vec<Shield> {
        (0..n)
            .map(|i| Shield::new(OriginAddr::parse(&format!("http://10.0.0.{i}:8090")).unwrap()))
            .collect()
    }

    #[test]
    fn rendezvous_moves_only_the_new_shields_share() {
        let three = shields(3);
        let four = shields(4);
        let keys = 20_000u128;
        let mut moved = 0;
        let mut per_shield = [0usize; 3];
        for k in 0..keys {
            let key = (k * 0x9E37_79B9_7F4A_7C15) ^ (k << 64);
            let a = rank(&three, key)[0].id;
            let b = rank(&four, key)[0].id;
            if a != b {
                moved += 1;
                assert_eq!(b, four[3].id, "keys only move to the new shield");
            }
            per_shield[three.iter().position(|s| s.id == a).unwrap()] += 1;
        }
        let share = moved as f64 / keys as f64;
        eprintln!(
            "rendezvous: adding a 4th shield moved {moved} of {keys} keys ({:.1}%)",
            share * 100.0
        );
        assert!((0.22..0.28).contains(&share), "moved {share}");
        for c in per_shield {
            assert!(
                (c as f64 / keys as f64 - 1.0 / 3.0).abs() < 0.03,
                "unbalanced: {per_shield:?}"
            );
        }
    }

    #[test]
    fn the_next_shield_takes_over_when_the_home_one_is_down() {
        let s = shields(3);
        let order: Vec<u64> = rank(&s, 42).iter().map(|x| x.id).collect();
        assert_eq!(order.len(), 3);
        let home = rank(&s, 42)[0];
        home.mark_down(1000);
        assert!(!home.is_up(1000));
        assert!(home.is_up(1000 + SHIELD_RETRY.as_millis() as u64));
    }
}
