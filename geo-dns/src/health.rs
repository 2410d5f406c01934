//! Active health checks of region endpoints: an HTTP GET of each URL every interval (https://
//! ones verified against the system's roots or `[dns.health] ca`, the fleet CA); an endpoint
//! goes down after `unhealthy_after` failed probes in a row and comes back after `healthy_after`
//! good ones. Endpoints are shared by URL and outlive reloads, so a reload neither forgets that a
//! region is down nor probes one URL twice.

use crate::config::HealthConfig;
use agent::throttle::RepeatedWarning;
use http_body_util::Empty;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// One probed URL.
#[derive(Debug)]
pub struct Endpoint {
    /// The URL probed.
    pub url: String,
    up: AtomicBool,
    /// Probes that failed.
    pub failures: AtomicU64,
    /// Times the endpoint changed state.
    pub transitions: AtomicU64,
}

impl Endpoint {
    /// Whether the endpoint is up now. Endpoints start up, so a new server answers at once.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// A probed endpoint and the task probing it.
type Probe = (Arc<Endpoint>, JoinHandle<()>);

/// The probes of a server.
#[derive(Default)]
pub struct HealthBoard {
    probes: Mutex<HashMap<String, Probe>>,
}

impl HealthBoard {
    /// The endpoint for `url`, started if new. Must be called inside a tokio runtime.
    pub fn endpoint(&self, url: &str, cfg: &HealthConfig) -> Arc<Endpoint> {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((ep, _)) = probes.get(url) {
            return ep.clone();
        }
        let ep = Arc::new(Endpoint {
            url: url.to_string(),
            up: AtomicBool::new(true),
            failures: AtomicU64::new(0),
            transitions: AtomicU64::new(0),
        });
        let task = tokio::spawn(probe(ep.clone(), cfg.clone()));
        probes.insert(url.to_string(), (ep.clone(), task));
        ep
    }

    /// Stops probing every URL not in `keep`.
    pub fn retain(&self, keep: &[String]) {
        let mut probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.retain(|url, (_, task)| {
            let k = keep.contains(url);
            if !k {
                task.abort();
            }
            k
        });
    }

    /// Every endpoint, for metrics.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        let probes = self.probes.lock().unwrap_or_else(|p| p.into_inner());
        probes.values().map(|(e, _)| e.clone()).collect()
    }

    /// Stops every probe.
    pub fn stop(&self) {
        self.retain(&[]);
    }
}

async fn probe(ep: Arc<Endpoint>, cfg: HealthConfig) {
    let client = match crate::tls::client(cfg.ca.as_deref(), cfg.timeout.0) {
        Ok(c) => c,
        Err(e) => {
            // validate() has read the CA file; it went away since. The endpoint stays as it is.
            tracing::error!(url = %ep.url, error = %e, "health checks cannot start");
            return;
        }
    };
    let uri: Option<hyper::Uri> = ep.url.parse().ok();
    let mut tick = tokio::time::interval(cfg.interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut good, mut bad) = (0u32, 0u32);
    // Said when the region leaves, once per interval while it stays out, and when it returns.
    let out = RepeatedWarning::new(
        format!(
            "health endpoint {} is down, its region out of DNS answers",
            ep.url
        ),
        format!(
            "health endpoint {} is up again, its region back in DNS answers",
            ep.url
        ),
    );
    loop {
        tick.tick().await;
        let checked = match &uri {
            Some(uri) => check(&client, uri, cfg.timeout.0).await,
            None => Err("not a URL".to_string()),
        };
        if checked.is_ok() {
            good += 1;
            bad = 0;
        } else {
            bad += 1;
            good = 0;
            ep.failures.fetch_add(1, Ordering::Relaxed);
        }
        let up = ep.is_up();
        if up && bad >= cfg.unhealthy_after {
            ep.up.store(false, Ordering::Relaxed);
            ep.transitions.fetch_add(1, Ordering::Relaxed);
        } else if !up && good >= cfg.healthy_after {
            ep.up.store(true, Ordering::Relaxed);
            ep.transitions.fetch_add(1, Ordering::Relaxed);
            agent::log_report!(out.succeeded());
        }
        // Failures count from the one that takes the region out.
        if let (Err(e), false) = (checked, ep.is_up()) {
            agent::log_report!(out.failed(e));
        }
    }
}

/// One probe: a GET of `uri` answered 2xx within `timeout`, or why not.
async fn check(
    client: &crate::tls::ProbeClient,
    uri: &hyper::Uri,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let req = hyper::Request::get(uri.clone())
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(timeout, client.request(req))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
        .map_err(|e| agent::errors::chain(&e))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("answered {}", resp.status()))
    }
}
