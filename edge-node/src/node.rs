//! A serving caching node whose config can be replaced while it runs (a reload).
//!
//! What a config decides (sites, origins, upstream client and timeouts, certificates,
//! connection limits, the request path's settings) is one [`Generation`], swapped atomically:
//! every request takes the generation current when it starts and finishes on it, so in-flight
//! requests end on the old config while new ones use the new one. What outlives a generation is
//! here: the cache (resized in place), the fills in flight, the ACME state, the listeners (one
//! task each, stopped or started by a reload when the listen addresses change) and the health
//! checks' stop signals.

use crate::listener::{self, Generation};
use crate::proxy::Proxy;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// What a node keeps from one config to the next.
#[derive(Clone)]
pub(crate) struct Kept {
    pub cache: Arc<crate::cache::Cache>,
    pub inflight: Arc<crate::proxy::collapse::Inflight>,
    pub live: Arc<crate::acme::certs::LiveCerts>,
    pub challenges: Arc<crate::acme::challenges::Challenges>,
    /// Where the node's instruments go.
    pub registry: agent::metrics::Registry,
    /// The access log (none when the config has none) and its config.
    pub access: Option<(
        crate::access_log::AccessLogConfig,
        Arc<crate::access_log::AccessLog>,
    )>,
    /// The live tail of the requests (the console), whatever the access log.
    pub tail: Arc<crate::access_log::Tail>,
    /// Access log records dropped (a full buffer), over every log the node had.
    pub access_dropped: Arc<std::sync::atomic::AtomicU64>,
    /// The purge service for the `PURGE` method, once set.
    pub purge: crate::proxy::PurgeSlot,
    /// The client connections open, in total and per address.
    pub conns: Arc<crate::listener::Conns>,
    /// The config of the current generation (for what a reload may not change).
    pub cfg: crate::config::EdgeConfig,
}

/// One listening socket, by the address the config names (port 0 included).
struct Listening {
    configured: SocketAddr,
    tls: bool,
    stop: watch::Sender<bool>,
}

/// A listener bound for a generation, not serving yet.
pub(crate) struct Bound {
    pub configured: SocketAddr,
    pub tls: bool,
    pub listener: TcpListener,
}

/// A caching node while it serves: the current generation, and what outlives generations.
pub struct Node {
    current: ArcSwap<Generation>,
    /// The client connections open (also in `Kept`, for the metrics).
    conns: Arc<crate::listener::Conns>,
    /// Flipped when the current generation is replaced or the node stops: ends its health
    /// checks.
    retired: Mutex<watch::Sender<bool>>,
    /// What outlives generations, and the config of the current one.
    kept: Mutex<Kept>,
    listening: Mutex<Vec<Listening>>,
    tasks: TaskTracker,
    /// Set once the node stops accepting (SIGTERM): health answers 503 from then on.
    draining: std::sync::atomic::AtomicBool,
    /// Connect probes of its upstreams (`readiness.rs`).
    probes: crate::readiness::Probes,
}

impl Node {
    pub(crate) fn new(first: Generation, kept: Kept) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::from_pointee(first),
            conns: kept.conns.clone(),
            retired: Mutex::new(watch::channel(false).0),
            kept: Mutex::new(kept),
            listening: Mutex::new(Vec::new()),
            tasks: TaskTracker::new(),
            draining: Default::default(),
            probes: Default::default(),
        })
    }

    /// What outlives generations, with the current config.
    pub(crate) fn kept(&self) -> Kept {
        self.with_kept(Kept::clone)
    }

    /// `f` of what outlives generations (without copying it).
    fn with_kept<R>(&self, f: impl FnOnce(&Kept) -> R) -> R {
        match self.kept.lock() {
            Ok(k) => f(&k),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Longest wait for the requests under way when a listener stops.
    fn drain_timeout(&self) -> Duration {
        self.with_kept(|k| k.cfg.drain_timeout.0)
    }

    /// Runs `task` as part of the node: stopping waits for it.
    pub(crate) fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(task);
    }

    /// The request path of the current generation (what a request starting now uses).
    pub fn proxy(&self) -> Arc<Proxy> {
        self.current.load().proxy.clone()
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    /// `edge` or `shield`.
    pub fn tier(&self) -> &'static str {
        self.current.load().proxy.tier()
    }

    /// Hands the node's purge service to the `PURGE` method, for every generation to come.
    pub fn set_purge_submitter(&self, purge: &Arc<dyn crate::purge::PurgeSubmitter>) {
        self.proxy().set_purge_submitter(purge);
    }

    /// Asks the access log, if any, to reopen its file (SIGUSR1, after logrotate).
    pub fn reopen_access_log(&self) {
        if let Some(log) = self.with_kept(|k| k.access.as_ref().map(|(_, log)| log.clone())) {
            log.reopen();
        }
    }

    /// The live tail of its requests (the console's live view).
    pub(crate) fn access_tail(&self) -> Arc<crate::access_log::Tail> {
        self.with_kept(|k| k.tail.clone())
    }

    /// Why it cannot serve now, or `None` when it can (see `readiness.rs`).
    pub async fn unready(&self) -> Option<String> {
        crate::readiness::unready(self.tier(), self.is_draining(), &self.proxy(), &self.probes)
            .await
    }

    /// What limits it while it can still serve (a full disk): one line each, none when it
    /// runs as configured (see the `readiness` module).
    pub fn degraded(&self) -> Vec<String> {
        crate::readiness::degraded(self.tier(), &self.proxy())
    }

    /// Whether the node has begun to stop (no longer accepting).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The configured addresses listened on now, and whether each is TLS.
    pub(crate) fn listening(&self) -> Vec<(SocketAddr, bool)> {
        self.listening
            .lock()
            .map(|l| l.iter().map(|x| (x.configured, x.tls)).collect())
            .unwrap_or_default()
    }

    /// Starts serving `bound` and the health checks of the current generation.
    pub(crate) fn start(self: &Arc<Self>, bound: Vec<Bound>) {
        let generation = self.generation();
        if let Ok(r) = self.retired.lock() {
            self.start_health_checks(&generation, &r);
        }
        for b in bound {
            self.start_listener(b);
        }
    }

    /// Starts `g`'s health checks, until `retired` flips.
    fn start_health_checks(&self, g: &Generation, retired: &watch::Sender<bool>) {
        g.proxy
            .spawn_health_checks(&retired.subscribe(), &self.tasks);
    }

    /// Flips the current generation's `retired`, and makes `next` the one to flip next time.
    fn retire(&self, next: watch::Sender<bool>) {
        if let Ok(mut r) = self.retired.lock() {
            let _ = r.send(true);
            *r = next;
        }
    }

    fn start_listener(self: &Arc<Self>, b: Bound) {
        let (stop, rx) = watch::channel(false);
        let drain = self.drain_timeout();
        self.tasks
            .spawn(listener::serve(b.listener, b.tls, self.clone(), rx, drain));
        if let Ok(mut l) = self.listening.lock() {
            l.push(Listening {
                configured: b.configured,
                tls: b.tls,
                stop,
            });
        }
    }

    /// Makes `next` current: requests from now on use it (those under way finish on the old
    /// one); the old generation's health checks stop and the new one's start; listeners whose
    /// address is not in `listen` stop accepting and drain, and those in `bound` start.
    pub(crate) fn replace(
        self: &Arc<Self>,
        next: Generation,
        kept: Kept,
        listen: &[(SocketAddr, bool)],
        bound: Vec<Bound>,
    ) {
        if let Ok(mut k) = self.kept.lock() {
            *k = kept;
        }
        let next = Arc::new(next);
        let retired = watch::channel(false).0;
        self.start_health_checks(&next, &retired);
        self.current.swap(next);
        self.retire(retired);
        if let Ok(mut l) = self.listening.lock() {
            l.retain(|x| {
                let keep = listen.contains(&(x.configured, x.tls));
                if !keep {
                    let _ = x.stop.send(true);
                }
                keep
            });
        }
        for b in bound {
            if let Ok(a) = b.listener.local_addr() {
                let scheme = if b.tls { "https" } else { "http" };
                tracing::info!(role = self.tier(), "listening on {scheme}://{a}");
            }
            self.start_listener(b);
        }
    }

    /// Stops accepting on every listener and waits, up to the drain timeout, for the
    /// requests under way; returns whether they all finished. Health answers 503 from the
    /// start (the admin API still answers while the node drains). Calling it again waits for
    /// nothing new.
    pub async fn drain(&self) -> bool {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Ok(l) = self.listening.lock() {
            for x in l.iter() {
                let _ = x.stop.send(true);
            }
        }
        self.retire(watch::channel(true).0);
        self.tasks.close();
        let timeout = self.drain_timeout();
        // The listeners bound their own drains by the same timeout; a little more here
        // covers their last steps.
        tokio::time::timeout(timeout + Duration::from_secs(1), self.tasks.wait())
            .await
            .is_ok()
    }
}

impl crate::purge::service::PurgeSink for Node {
    fn apply_purge(&self, ev: &crate::purge::event::PurgeEvent) {
        self.proxy().apply_purge(ev);
    }

    fn purged_up_to(&self, version: u64) {
        self.proxy().purged_up_to(version);
    }
}

impl listener::Source for Node {
    fn generation(&self) -> Arc<Generation> {
        self.current.load_full()
    }

    fn proxy(&self) -> Arc<Proxy> {
        self.current.load().proxy.clone()
    }

    fn conns(&self) -> &Arc<crate::listener::Conns> {
        &self.conns
    }
}
