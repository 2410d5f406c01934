//! The live tail of the access log (the console's "live requests"): a bounded broadcast of
//! request summaries, fed from the same place as the access log ([`crate::proxy`]'s finish).
//!
//! Free when nobody watches: the request path reads one relaxed atomic ([`Tail::watched`]) and
//! copies nothing unless a subscriber exists. Sending never blocks: the channel holds
//! [`CAPACITY`] entries and a subscriber that falls behind loses the oldest (it is told how
//! many), so a slow browser can never slow a request.

use super::record::Record;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Entries a subscriber may fall behind before it loses the oldest.
pub(super) const CAPACITY: usize = 1024;

/// Subscribers at most at once (each holds a buffer position; a console tab each).
pub(super) const MAX_SUBSCRIBERS: usize = 64;

/// One request, as the live tail shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct TailEntry {
    /// Milliseconds since the Unix epoch.
    pub(crate) time_ms: u64,
    /// `edge` or `shield`.
    pub(crate) tier: &'static str,
    /// The site's name (`-` when none matched).
    pub(crate) site: String,
    /// The client's IP address.
    pub(crate) client: String,
    /// Method.
    pub(crate) method: String,
    /// The request target as received (bounded to 512 bytes).
    pub(crate) target: String,
    /// Status sent.
    pub(crate) status: u16,
    /// Body bytes, when known.
    pub(crate) bytes: Option<u64>,
    /// Milliseconds until the response head.
    pub(crate) duration_ms: f64,
    /// `hit`, `miss`, `stale`, `pass`, `error`.
    pub(crate) cache: &'static str,
    /// The request id, as in the access log.
    pub(crate) request_id: String,
}

impl TailEntry {
    fn of(r: &Record) -> Self {
        let mut target = r.target.to_string();
        if target.len() > 512 {
            let mut end = 512;
            while !target.is_char_boundary(end) {
                end -= 1;
            }
            target.truncate(end);
        }
        Self {
            time_ms: r
                .time
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            tier: r.tier,
            site: r.site.to_string(),
            client: r.client.ip().to_string(),
            method: r.method.to_string(),
            target,
            status: r.status,
            bytes: r.bytes,
            duration_ms: r.duration.as_secs_f64() * 1000.0,
            cache: r.cache,
            request_id: format!("{:016x}", r.id),
        }
    }
}

/// The tail of one caching node (kept across reloads).
#[derive(Debug)]
pub(crate) struct Tail {
    tx: broadcast::Sender<Arc<TailEntry>>,
    watchers: Arc<AtomicUsize>,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            tx: broadcast::Sender::new(CAPACITY),
            watchers: Arc::default(),
        }
    }
}

/// A subscription; counted until dropped.
pub(crate) struct Watch {
    /// The entries, oldest first; `Lagged(n)` says `n` were lost.
    pub(crate) rx: broadcast::Receiver<Arc<TailEntry>>,
    watchers: Arc<AtomicUsize>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.watchers.fetch_sub(1, Relaxed);
    }
}

impl Tail {
    /// Whether anyone watches (the request path's only cost when nobody does).
    #[inline]
    pub(crate) fn watched(&self) -> bool {
        self.watchers.load(Relaxed) != 0
    }

    /// Subscribes; `None` when `MAX_SUBSCRIBERS` already watch.
    pub(crate) fn subscribe(&self) -> Option<Watch> {
        let n = self.watchers.fetch_add(1, Relaxed);
        if n >= MAX_SUBSCRIBERS {
            self.watchers.fetch_sub(1, Relaxed);
            return None;
        }
        Some(Watch {
            rx: self.tx.subscribe(),
            watchers: self.watchers.clone(),
        })
    }

    /// Offers `r` to the watchers, if any (never waits).
    pub(crate) fn offer(&self, r: &Record) {
        if self.watched() {
            let _ = self.tx.send(Arc::new(TailEntry::of(r)));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn rec(id: u64) -> Record {
        Record::sample(id, "www")
    }

    #[test]
    fn nothing_is_sent_unwatched_and_a_slow_watcher_lags_without_blocking() {
        let t = Tail::default();
        assert!(!t.watched());
        t.offer(&rec(1));
        let mut w = t.subscribe().unwrap();
        assert!(t.watched());
        for i in 0..(CAPACITY as u64 + 10) {
            t.offer(&rec(i));
        }
        match w.rx.try_recv() {
            Err(broadcast::error::TryRecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("{other:?}"),
        }
        assert_eq!(w.rx.try_recv().unwrap().request_id, format!("{:016x}", 10));
        drop(w);
        assert!(!t.watched());
        let all: Vec<_> = (0..MAX_SUBSCRIBERS)
            .map(|_| t.subscribe().unwrap())
            .collect();
        assert!(t.subscribe().is_none(), "bounded");
        drop(all);
        assert!(t.subscribe().is_some());
    }
}
