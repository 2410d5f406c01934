//! Sharing ACME work across the fleet: one node orders (the purge hub), the others follow it.
//! A follower long-polls the hub's admin API (`GET /acme/state?since=V&wait=MS`, the fleet
//! token, over TLS when the hub's admin API is on TLS) and gets what the hub has: its HTTP-01
//! tokens and TLS-ALPN-01 digests while an order waits (so whichever node the CA's validator
//! reaches can answer: geo-DNS sends it to the nearest), and its certificates with their keys
//! (installed, and saved under the follower's own `state_dir`).

use super::{AcmeHub, AcmeService};
use agent::throttle::RepeatedWarning;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A follower not heard from for this long is not waited for.
const FOLLOWER_GONE: Duration = Duration::from_secs(60);
/// Longest wait for the followers to take a new challenge before the CA is told.
const PROPAGATION_WAIT: Duration = Duration::from_secs(5);

/// What a hub shares, as JSON.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FleetState {
    /// Goes up at every change.
    pub version: u64,
    /// HTTP-01: token -> key authorization.
    pub challenges: HashMap<String, String>,
    /// TLS-ALPN-01: name -> key authorization digest (base64url).
    pub alpn: HashMap<String, String>,
    /// The certificates, with their keys.
    pub certificates: Vec<SharedCert>,
}

/// One certificate of the hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SharedCert {
    pub names: Vec<String>,
    pub chain: String,
    pub key: String,
}

impl AcmeService {
    /// What this node shares now.
    pub(crate) fn fleet_state(&self) -> FleetState {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let alpn = match self.alpn_digests.lock() {
            Ok(m) => m.iter().map(|(n, d)| (n.clone(), b64.encode(d))).collect(),
            Err(_) => HashMap::new(),
        };
        let certificates = self
            .orders
            .iter()
            .filter_map(|names| {
                let (chain, key) = self.store.cert(&names[0]).ok()??;
                Some(SharedCert {
                    names: names.clone(),
                    chain,
                    key,
                })
            })
            .collect();
        FleetState {
            version: *self.version.borrow(),
            challenges: self.challenges.all(),
            alpn,
            certificates,
        }
    }

    /// The shared state once its version is above `since`, or after `wait`. A follower that
    /// names itself (`node`) is remembered with `since`, the version it has applied.
    pub(crate) async fn fleet_state_since(
        &self,
        since: u64,
        wait: Duration,
        node: Option<&str>,
    ) -> FleetState {
        if let (Some(node), Ok(mut f)) = (node, self.followers.lock()) {
            let now = std::time::Instant::now();
            f.retain(|_, (seen, _)| now.duration_since(*seen) < FOLLOWER_GONE);
            if f.len() < 1024 || f.contains_key(node) {
                f.insert(node.to_string(), (now, since));
            }
        }
        let mut rx = self.version.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|v| *v > since)).await;
        self.fleet_state()
    }

    /// Something followers should see changed.
    pub(crate) fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Waits (up to [`PROPAGATION_WAIT`]) until every follower seen lately has applied the
    /// current version: a challenge is only announced to the CA once every edge can answer it.
    pub(crate) async fn wait_for_followers(&self) {
        let wanted = *self.version.borrow();
        let deadline = std::time::Instant::now() + PROPAGATION_WAIT;
        loop {
            let behind = match self.followers.lock() {
                Ok(f) => {
                    let now = std::time::Instant::now();
                    f.values()
                        .filter(|(seen, v)| {
                            now.duration_since(*seen) < FOLLOWER_GONE && *v < wanted
                        })
                        .count()
                }
                Err(_) => 0,
            };
            if behind == 0 {
                return;
            }
            if std::time::Instant::now() >= deadline {
                tracing::warn!(
                    behind,
                    "ACME: followers did not take the challenge in time; going on"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Takes the hub's state: exactly its challenges, and its certificates where they differ
    /// from ours (saved, then served).
    fn apply(&self, state: &FleetState) {
        self.challenges.replace_all(&state.challenges);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        if let Ok(mut mine) = self.alpn_digests.lock() {
            for name in mine.keys() {
                if !state.alpn.contains_key(name) {
                    self.live.remove_challenge(name);
                }
            }
            mine.clear();
            for (name, digest) in &state.alpn {
                let Ok(d) = b64.decode(digest) else {
                    continue;
                };
                match self.live.put_challenge(name, &d) {
                    Ok(()) => {
                        mine.insert(name.clone(), d);
                    }
                    Err(e) => {
                        tracing::warn!(name = %name, error = %e, "hub's TLS-ALPN-01 challenge unusable")
                    }
                }
            }
        }
        for c in &state.certificates {
            let Some(first) = c.names.first() else {
                continue;
            };
            if !self.orders.iter().any(|o| o == &c.names) {
                // A site this node does not serve.
                continue;
            }
            let same = matches!(self.store.cert(first), Ok(Some((chain, _))) if chain == c.chain);
            if same {
                continue;
            }
            match self.live.install(&c.names, &c.chain, &c.key) {
                Ok(_) => {
                    if let Err(e) = self.store.save_cert(first, &c.chain, &c.key) {
                        tracing::warn!(names = ?c.names, error = %e, "cannot save the hub's certificate");
                    }
                    tracing::info!(names = ?c.names, "ACME certificate received from the hub");
                }
                Err(e) => {
                    tracing::warn!(names = ?c.names, error = %e, "the hub's certificate is unusable")
                }
            }
        }
    }

    /// Follows `hub` until `shutdown` flips; the current state stays while the hub is away.
    pub(crate) async fn follow(self: Arc<Self>, hub: AcmeHub, mut shutdown: watch::Receiver<bool>) {
        let client = match crate::upstream::tls::admin_client::<Empty<Bytes>>(hub.ca.as_deref()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot follow the hub's ACME state");
                return;
            }
        };
        let base = hub.url.trim_end_matches('/').to_string();
        let node = format!("{:016x}", {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(std::process::id())
        });
        let mut since = 0u64;
        let mut backoff = Duration::from_secs(1);
        let unreachable = RepeatedWarning::new(
            format!("cannot get the ACME state of the hub {base}"),
            format!("ACME state of the hub {base} reachable again"),
        );
        loop {
            // After a failure, a quick poll first, so the hub's return is noticed at once.
            let wait = if unreachable.is_failing() { 0 } else { 25000 };
            let url = format!("{base}/acme/state?since={since}&wait={wait}&node={node}");
            let got = async {
                let req = http::Request::get(&url)
                    .header(http::header::AUTHORIZATION, format!("Bearer {}", hub.token))
                    .body(Empty::new())
                    .map_err(|e| e.to_string())?;
                let res = tokio::time::timeout(Duration::from_secs(35), client.request(req))
                    .await
                    .map_err(|_| "no answer within 35 s".to_string())?
                    .map_err(|e| crate::upstream::error_chain(&e))?;
                let status = res.status();
                let body = res
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if !status.is_success() {
                    return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
                }
                serde_json::from_slice::<FleetState>(&body).map_err(|e| e.to_string())
            };
            let got = tokio::select! {
                g = got => g,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            match got {
                Ok(state) => {
                    agent::log_report!(unreachable.succeeded());
                    self.apply(&state);
                    since = state.version;
                    backoff = Duration::from_secs(1);
                }
                Err(e) => {
                    agent::log_report!(unreachable.failed(&e));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.wait_for(|s| *s) => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
