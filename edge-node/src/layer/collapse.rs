//! Request collapsing for the layer: one call of the inner service per (URL, variant), shared
//! by every request that misses on it meanwhile.
//!
//! The proxy's own registry (`proxy/collapse.rs`) streams an upstream body to its readers as
//! it arrives and knows upstream errors; the layer stores only whole responses up to
//! `max_object_bytes`, so its followers need nothing but the outcome: the stored object, or
//! word that it was not stored (they then call the inner service themselves). The fill runs
//! in its own task, so a leader that goes away never strands its followers (pingora #931),
//! and a follower's wait is bounded.

use crate::cache::{CacheKey, Object, VarySpec, VaryValues};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// A URL's key and the hash of the request's Vary values.
pub(crate) type CollapseKey = (CacheKey, u64);

/// How a fill ended, as its followers see it.
#[derive(Debug)]
pub(crate) enum Done {
    /// Stored: answered from this object when the follower's Vary values are `values`.
    Stored {
        /// The object.
        object: Arc<Object>,
        /// What it varies on.
        vary: Option<VarySpec>,
        /// The Vary values it was stored for.
        values: VaryValues,
        /// The inner service's status.
        status: http::StatusCode,
    },
    /// Not stored (or the call failed): followers call the inner service themselves.
    NotStored,
}

/// The fills under way.
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    fills: Mutex<HashMap<CollapseKey, watch::Receiver<Option<Arc<Done>>>>>,
}

/// A request's part in the fill for its key.
pub(crate) enum Joined {
    /// It leads: it starts the fill, which publishes its end through the sender.
    Leader(FillGuard),
    /// A fill is under way: wait for its end.
    Follower(watch::Receiver<Option<Arc<Done>>>),
}

/// Held by a fill: publishes its end and takes its key out of the registry, also when the
/// fill is dropped unfinished (its followers then call the inner service themselves).
pub(crate) struct FillGuard {
    inflight: Arc<Inflight>,
    key: CollapseKey,
    tx: watch::Sender<Option<Arc<Done>>>,
    /// Set by `finish`: the key has left the registry already (and may belong to a new fill).
    finished: bool,
}

impl Inflight {
    /// Leads the fill for `key`, or follows the one under way.
    pub(crate) fn join(self: &Arc<Self>, key: CollapseKey) -> Joined {
        let Ok(mut fills) = self.fills.lock() else {
            // A poisoned registry collapses nothing; the request still gets an answer.
            let (tx, _) = watch::channel(None);
            return Joined::Leader(FillGuard {
                inflight: self.clone(),
                key,
                tx,
                finished: false,
            });
        };
        if let Some(rx) = fills.get(&key) {
            return Joined::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        fills.insert(key, rx);
        Joined::Leader(FillGuard {
            inflight: self.clone(),
            key,
            tx,
            finished: false,
        })
    }

    fn remove(&self, key: &CollapseKey) {
        if let Ok(mut fills) = self.fills.lock() {
            fills.remove(key);
        }
    }
}

impl FillGuard {
    /// Ends the fill: the key leaves the registry (what was stored is in the cache by now),
    /// then the followers learn the outcome.
    pub(crate) fn finish(mut self, done: Done) {
        self.inflight.remove(&self.key);
        self.finished = true;
        let _ = self.tx.send(Some(Arc::new(done)));
    }
}

impl Drop for FillGuard {
    fn drop(&mut self) {
        // Unfinished, the fill died: its followers see the sender gone.
        if !self.finished {
            self.inflight.remove(&self.key);
        }
    }
}

/// The end of the fill `rx` follows, waiting up to `limit`; `None` when the fill died or the
/// wait timed out.
pub(crate) async fn wait(
    mut rx: watch::Receiver<Option<Arc<Done>>>,
    limit: Duration,
) -> Option<Arc<Done>> {
    let waited = tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await;
    match waited {
        Ok(Ok(done)) => done.clone(),
        _ => None,
    }
}
