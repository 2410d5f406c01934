//! Active health checks of origins: a GET of the site's health path on each origin every
//! interval, fed to the pool (which decides when an origin goes out and comes back).

use super::addr::OriginAddr;
use super::origins::OriginPool;
use super::Upstream;
use crate::body::ProxyBody;
use agent::throttle::RepeatedWarning;
use std::time::Duration;

impl Upstream {
    /// One active health check: GET `path` on `addr` (one of `pool`'s origins, with its
    /// client and Host); healthy when it answers 2xx or 3xx, otherwise why not.
    pub(crate) async fn probe(
        &self,
        pool: &OriginPool,
        addr: &OriginAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let host = match &pool.host {
            Some(h) => h.clone(),
            None => http::HeaderValue::from_str(host)
                .map_err(|_| format!("{host:?} is not a Host header value"))?,
        };
        let req = http::Request::get(format!("{addr}{path}"))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "outpost-health-check")
            .body(ProxyBody::empty())
            .map_err(|e| e.to_string())?;
        let client = pool.client.as_ref().unwrap_or(&self.client);
        let res = tokio::time::timeout(timeout, client.request(req))
            .await
            .map_err(|_| format!("no answer within {timeout:?}"))?
            .map_err(|e| super::error_chain(&e))?;
        let status = res.status();
        let _ =
            tokio::time::timeout(timeout, http_body_util::BodyExt::collect(res.into_body())).await;
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("answered {status}"))
        }
    }
}

/// Runs the active health checks of `pool` until `shutdown` flips. An origin taken out is
/// logged when it goes, its failed checks once per interval while it is out, and its return.
pub(crate) async fn check_origins(
    pool: std::sync::Arc<OriginPool>,
    upstream: Upstream,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(h) = pool.health.clone() else { return };
    let out: Vec<RepeatedWarning> = pool
        .origins()
        .iter()
        .map(|o| {
            RepeatedWarning::new(
                format!(
                    "origin {} taken out, failing its health checks ({})",
                    o.addr, h.path
                ),
                format!("origin {} healthy again", o.addr),
            )
        })
        .collect();
    loop {
        for (o, out) in pool.origins().iter().zip(&out) {
            let checked = upstream
                .probe(&pool, &o.addr, &h.path, &h.host, h.timeout)
                .await;
            let changed = pool.record_check(o, checked.is_ok());
            match (checked, changed) {
                (_, Some(true)) => agent::log_report!(out.succeeded()),
                // Failures count from the one that takes the origin out.
                (Err(e), _) if changed == Some(false) || out.is_failing() => {
                    agent::log_report!(out.failed(e))
                }
                _ => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(h.interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
