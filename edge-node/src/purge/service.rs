//! The purge service of a process: accepts purges, applies them in version order to every
//! role's cache, persists what it has applied, and propagates.
//!
//! Embedded propagation: one node is the hub and owns the log (`log.rs`); every other node
//! long-polls the hub's `GET /purge/log?since=N&wait=MS` and applies what comes back in order,
//! resuming from its persisted applied version after a restart or partition. A purge POSTed to
//! a follower is forwarded to the hub, and answered once the follower has applied it too.

use super::event::{PurgeEvent, PurgeRequest};
use super::fleet::{Fleet, FleetReport};
use super::log::{LogError, PurgeLog, SinceError};
use crate::cache::marks::{GenState, PurgeMarks};
use agent::throttle::RepeatedWarning;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Longest long-poll the hub holds a request.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(30);

/// Where purges come from.
#[derive(Debug, Clone)]
pub enum Role {
    /// This node owns the log.
    Hub,
    /// Purges travel over a NATS JetStream stream (see `nats.rs`).
    Nats(Arc<super::nats::NatsBus>),
    /// This node follows the hub at this admin URL, with this token.
    Follower {
        /// Base URL of the hub's admin API (`http://127.0.0.1:9900`, or `https://` when the
        /// hub's admin API is on TLS).
        hub: String,
        /// Bearer token for the hub.
        token: String,
        /// PEM file of the CAs that sign an https:// hub's certificate (the fleet CA);
        /// absent: the system's roots.
        ca: Option<PathBuf>,
    },
}

/// Why a purge could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    /// The request is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// The log could not be written (503).
    #[error("{0}")]
    Log(#[from] LogError),
    /// The hub could not be reached or refused (502).
    #[error("purge hub: {0}")]
    Hub(String),
}

/// What purges are applied to: the cache of each role of the process.
pub trait PurgeSink: Send + Sync {
    /// Applies `ev` (the next version) to this cache: its marks, and for hard purges the
    /// removal of what it names.
    fn apply_purge(&self, ev: &PurgeEvent);

    /// Publishes `version` as applied to this cache; called once every sink of the process
    /// has applied it (so no cache stores an object as newer than a purge another cache of
    /// the process has not recorded yet).
    fn purged_up_to(&self, version: u64);
}

/// Purge state and propagation for one process.
pub struct PurgeService {
    role: Role,
    log: Arc<PurgeLog>,
    marks: Arc<PurgeMarks>,
    sinks: Vec<Arc<dyn PurgeSink>>,
    state_path: Option<PathBuf>,
    applied: watch::Sender<u64>,
    apply_lock: Mutex<()>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// On the hub: the nodes reporting to it.
    fleet: Fleet,
}

impl PurgeService {
    /// The purge marks saved in `state_dir` (`purge-state.json`), or none: build the caches
    /// of the process with them, then [`PurgeService::open`] the service over those caches.
    pub fn restore_marks(state_dir: Option<&std::path::Path>) -> Result<Arc<PurgeMarks>, String> {
        let state: GenState = match state_dir.map(|d| d.join("purge-state.json")) {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not a purge state file: {e}", p.display()))?
            }
            _ => GenState::default(),
        };
        Ok(Arc::new(PurgeMarks::from_state(state)))
    }

    /// Opens the service applying purges to `sinks`, whose caches check `marks` (from
    /// [`PurgeService::restore_marks`]). With a `state_dir`, the hub's log lives in
    /// `purge.log` and the applied version and marks in `purge-state.json`; a hub applies the
    /// logged events its state has not seen (a crash between logging and applying).
    pub fn open(
        role: Role,
        state_dir: Option<PathBuf>,
        marks: Arc<PurgeMarks>,
        sinks: Vec<Arc<dyn PurgeSink>>,
    ) -> Result<Arc<Self>, String> {
        let applied = marks.applied();
        let log = match (&role, &state_dir) {
            (Role::Hub, Some(d)) => {
                agent::files::create_dir_all(d)
                    .map_err(|e| format!("state_dir {}: {e}", d.display()))?;
                PurgeLog::open(&d.join("purge.log")).map_err(|e| e.to_string())?
            }
            (Role::Hub, None) => PurgeLog::in_memory(),
            _ => PurgeLog::in_memory_from(applied),
        };
        if let Some(d) = &state_dir {
            agent::files::create_dir_all(d)
                .map_err(|e| format!("state_dir {}: {e}", d.display()))?;
        }
        let hub_tls = crate::upstream::tls::OriginTls {
            ca_file: match &role {
                Role::Follower { ca, .. } => ca.clone(),
                _ => None,
            },
            http1_only: true,
            ..Default::default()
        };
        let client = crate::upstream::tls::system_client(&hub_tls, Duration::from_secs(3))
            .map_err(|e| format!("purge hub: {e}"))?;
        let svc = Arc::new(Self {
            role,
            log: Arc::new(log),
            marks,
            sinks,
            state_path: state_dir.map(|d| d.join("purge-state.json")),
            applied: watch::Sender::new(applied),
            apply_lock: Mutex::new(()),
            client,
            fleet: Fleet::default(),
        });
        if matches!(svc.role, Role::Hub) {
            // Logged but not applied (a crash between the two): apply them now, in batches.
            loop {
                let from = svc.applied();
                let batch = svc.log.since(from).map_err(|e| e.to_string())?;
                if batch.is_empty() || !batch.iter().all(|ev| svc.apply(ev)) {
                    break;
                }
            }
        }
        Ok(svc)
    }

    /// Registers the purge gauges (`outpost.purge.*`) on `meter`.
    pub fn register_metrics(self: &Arc<Self>, meter: &opentelemetry::metrics::Meter) {
        let s = Arc::downgrade(self);
        let _ = meter
            .u64_observable_gauge("outpost.purge.applied_version")
            .with_description("Newest purge version applied on this node.")
            .with_callback(move |o| {
                if let Some(s) = s.upgrade() {
                    o.observe(s.applied(), &[]);
                }
            })
            .build();
        let s = Arc::downgrade(self);
        let _ = meter
            .u64_observable_gauge("outpost.purge.log_version")
            .with_description("Newest purge version in this node's log.")
            .with_callback(move |o| {
                if let Some(s) = s.upgrade() {
                    o.observe(s.latest(), &[]);
                }
            })
            .build();
        let s = Arc::downgrade(self);
        let _ = meter
            .u64_observable_gauge("outpost.purge.lag")
            .with_description("Purge versions in this node's log not applied yet.")
            .with_callback(move |o| {
                if let Some(s) = s.upgrade() {
                    o.observe(s.latest().saturating_sub(s.applied()), &[]);
                }
            })
            .build();
    }

    /// The newest version applied here.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The newest version in this node's log (the hub's: every accepted purge).
    pub fn latest(&self) -> u64 {
        self.log.latest()
    }

    /// Whether this node is the hub.
    pub fn is_hub(&self) -> bool {
        matches!(self.role, Role::Hub)
    }

    /// Applies `ev` if it is the next version; returns whether it was applied (or already was).
    pub fn apply(&self, ev: &PurgeEvent) -> bool {
        let Ok(_guard) = self.apply_lock.lock() else {
            return false;
        };
        let applied = self.applied();
        if ev.version <= applied {
            return true;
        }
        if ev.version != applied + 1 {
            tracing::warn!(
                have = applied,
                got = ev.version,
                "purge event out of order; not applied"
            );
            return false;
        }
        self.commit(ev, || {
            if !self.is_hub() {
                self.log.record(ev);
            }
        });
        tracing::info!(version = ev.version, soft = ev.soft, "purge applied");
        true
    }

    /// Applies `ev` to every cache and publishes its version as applied (`log` keeps this
    /// node's copy of the log in step); the caller holds `apply_lock`.
    fn commit(&self, ev: &PurgeEvent, log: impl FnOnce()) {
        for sink in &self.sinks {
            sink.apply_purge(ev);
        }
        // Published once every cache of the process has it: objects fetched from now on carry
        // this version, and a shield gates on it.
        for sink in &self.sinks {
            sink.purged_up_to(ev.version);
        }
        self.marks.applied_up_to(ev.version);
        log();
        self.persist(ev.version);
        self.applied.send_replace(ev.version);
    }

    /// On a follower the hub no longer holds the events after its applied version for (an
    /// in-memory hub keeps the newest few thousand): purges everything (hard) as of version
    /// `v`, then follows on from there. Nothing purged in between can be served.
    fn skip_to(&self, v: u64) {
        let Ok(_guard) = self.apply_lock.lock() else {
            return;
        };
        let applied = self.applied();
        if v <= applied {
            return;
        }
        let ev = PurgeEvent {
            version: v,
            at_ms: crate::cache::clock::now_ms(),
            soft: false,
            target: super::event::PurgeTarget::All,
        };
        self.commit(&ev, || self.log.restart_at(v));
        tracing::warn!(
            had = applied,
            now = v,
            "the purge hub no longer holds the purges this node missed; purged everything and resumed after them"
        );
    }

    fn persist(&self, applied: u64) {
        let Some(path) = &self.state_path else { return };
        let mut snap = self.marks.snapshot();
        snap.applied = applied;
        let tmp = path.with_extension("json.tmp");
        let res = serde_json::to_vec(&snap)
            .map_err(std::io::Error::other)
            .and_then(|b| agent::files::write(&tmp, &b))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::error!(error = %e, path = %path.display(), "cannot persist purge state");
        }
    }

    /// Waits until version `v` is applied here, or `timeout` passes; returns whether it was.
    pub async fn wait_applied(&self, v: u64, timeout: Duration) -> bool {
        let mut rx = self.applied.subscribe();
        let wait = async move { rx.wait_for(|a| *a >= v).await.is_ok() };
        tokio::time::timeout(timeout, wait).await.unwrap_or(false)
    }

    /// Accepts a purge: on the hub, logs and applies it; on a follower, forwards it to the hub
    /// and waits (briefly) until it is applied here too. Returns its version.
    pub async fn submit(&self, req: &PurgeRequest) -> Result<u64, PurgeError> {
        let target = req.target().map_err(PurgeError::BadRequest)?;
        match &self.role {
            Role::Hub => {
                let ev = self
                    .log
                    .append(target, req.soft, crate::cache::clock::now_ms())?;
                self.apply(&ev);
                Ok(ev.version)
            }
            Role::Nats(bus) => {
                let v = bus
                    .publish(target, req.soft, crate::cache::clock::now_ms())
                    .await
                    .map_err(PurgeError::Hub)?;
                self.wait_applied(v, Duration::from_secs(2)).await;
                Ok(v)
            }
            Role::Follower { hub, token, .. } => {
                let body = serde_json::to_vec(req).map_err(|e| PurgeError::Hub(e.to_string()))?;
                let v = self.post_hub(hub, token, body).await?;
                self.wait_applied(v, Duration::from_secs(2)).await;
                Ok(v)
            }
        }
    }

    async fn post_hub(&self, hub: &str, token: &str, body: Vec<u8>) -> Result<u64, PurgeError> {
        let req = http::Request::post(format!("{hub}/purge"))
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PurgeError::Hub(e.to_string()))?;
        let (status, json) = self
            .send(req, Duration::from_secs(10))
            .await
            .map_err(PurgeError::Hub)?;
        if !status.is_success() {
            let msg = json
                .get("error")
                .and_then(|e| e.as_str())
                .unwrap_or("refused")
                .to_string();
            return Err(PurgeError::Hub(format!("{status}: {msg}")));
        }
        json.get("version")
            .and_then(|v| v.as_u64())
            .ok_or_else(|| PurgeError::Hub("answer has no version".into()))
    }

    async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(http::StatusCode, serde_json::Value), String> {
        let res = tokio::time::timeout(timeout, self.client.request(req))
            .await
            .map_err(|_| "timed out".to_string())?
            .map_err(|e| crate::upstream::error_chain(&e))?;
        let status = res.status();
        let body = tokio::time::timeout(timeout, res.into_body().collect())
            .await
            .map_err(|_| "timed out reading the answer".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = serde_json::from_slice(&body).map_err(|e| format!("answer is not JSON: {e}"))?;
        Ok((status, json))
    }

    /// On the hub: the nodes that report to it (`POST /fleet/report`).
    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// On a follower: sends `report` to the hub's `POST /fleet/report` (an error says why it
    /// did not arrive; a hub or NATS node has nowhere to report to).
    pub async fn report_to_hub(&self, report: &FleetReport) -> Result<(), String> {
        let Role::Follower { hub, token, .. } = &self.role else {
            return Ok(());
        };
        let body = serde_json::to_vec(report).map_err(|e| e.to_string())?;
        let req = http::Request::post(format!("{hub}/fleet/report"))
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        match self.send(req, Duration::from_secs(5)).await? {
            (s, _) if s.is_success() => Ok(()),
            (s, json) => Err(format!(
                "{s}: {}",
                json.get("error").and_then(|e| e.as_str()).unwrap_or("")
            )),
        }
    }

    /// Events after `since` (for `GET /purge/log`), waiting up to `wait` for one.
    pub(crate) async fn log_since(
        &self,
        since: u64,
        wait: Duration,
    ) -> Result<Vec<PurgeEvent>, SinceError> {
        if self.log.latest() <= since && !wait.is_zero() {
            self.log.wait_beyond(since, wait.min(MAX_WAIT)).await;
        }
        self.log.since(since)
    }

    /// On a follower: long-polls the hub and applies what it sends, until `shutdown` flips.
    pub async fn follow(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        if let Role::Nats(bus) = &self.role {
            return bus.clone().consume(self.clone(), shutdown).await;
        }
        let Role::Follower { hub, token, .. } = self.role.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(100);
        let unreachable = RepeatedWarning::new(
            format!("cannot reach the purge hub {hub}"),
            format!("purge hub {hub} reachable again"),
        );
        let malformed = RepeatedWarning::new(
            format!("purge hub {hub} sent malformed events"),
            format!("purge hub {hub} sends well-formed events again"),
        );
        loop {
            if *shutdown.borrow() {
                return;
            }
            let since = self.applied();
            // After a failure, a quick poll first: the hub's return is noticed (and said) at
            // once, not when a long poll ends.
            let wait = if unreachable.is_failing() { 0 } else { 25000 };
            let req = match http::Request::get(format!("{hub}/purge/log?since={since}&wait={wait}"))
                .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "bad purge hub URL");
                    return;
                }
            };
            let got = tokio::select! {
                r = self.send(req, MAX_WAIT + Duration::from_secs(5)) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match got {
                Ok((status, json)) if status.is_success() => {
                    backoff = Duration::from_millis(100);
                    agent::log_report!(unreachable.succeeded());
                    let events = serde_json::from_value::<Vec<PurgeEvent>>(json["events"].clone());
                    agent::log_report!(malformed.record(&events));
                    let events = events.unwrap_or_default();
                    for ev in &events {
                        if !self.apply(ev) {
                            break;
                        }
                    }
                }
                // The hub no longer holds what this node missed (a 410 without a usable
                // `oldest` is a failure like any other, below).
                Ok((status, json))
                    if status == http::StatusCode::GONE
                        && json["oldest"].as_u64().is_some_and(|o| o > since + 1) =>
                {
                    self.skip_to(json["oldest"].as_u64().unwrap_or(since + 1) - 1);
                }
                other => {
                    let why = match other {
                        Ok((s, j)) => format!(
                            "{s}: {}",
                            j.get("error").and_then(|e| e.as_str()).unwrap_or("")
                        ),
                        Err(e) => e,
                    };
                    agent::log_report!(unreachable.failed(&why));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

impl super::nats::Apply for PurgeService {
    fn applied(&self) -> u64 {
        PurgeService::applied(self)
    }
    fn apply(&self, ev: &PurgeEvent) -> bool {
        PurgeService::apply(self, ev)
    }
}
