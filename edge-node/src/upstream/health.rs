//! Active health checks of origins: a GET of the site's health path on each origin every
//! interval, fed to the pool (which decides when an origin goes out and comes back).

use super::addr::OriginAddr;
use super::origins::OriginPool;
use super::Upstream;
use crate::body::ProxyBody;
use std::time::Duration;

impl Upstream {
    /// One active health check: GET `path` on `addr` (one of `pool`'s origins, with its
    /// client and Host); healthy when it answers 2xx or 3xx.
    pub(crate) async fn probe(
        &self,
        pool: &OriginPool,
        addr: &OriginAddr,
        path: &str,
        host: &str,
        timeout: Duration,
    ) -> bool {
        let host = match &pool.host {
            Some(h) => h.clone(),
            None => match http::HeaderValue::from_str(host) {
                Ok(h) => h,
                Err(_) => return false,
            },
        };
        let Ok(req) = http::Request::get(format!("{addr}{path}"))
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "outpost-health-check")
            .body(ProxyBody::empty())
        else {
            return false;
        };
        let client = pool.client.as_ref().unwrap_or(&self.client);
        match tokio::time::timeout(timeout, client.request(req)).await {
            Ok(Ok(res)) => {
                let ok = res.status().is_success() || res.status().is_redirection();
                let _ = tokio::time::timeout(
                    timeout,
                    http_body_util::BodyExt::collect(res.into_body()),
                )
                .await;
                ok
            }
            _ => false,
        }
    }
}

/// Runs the active health checks of `pool` until `shutdown` flips.
pub(crate) async fn check_origins(
    pool: std::sync::Arc<OriginPool>,
    upstream: Upstream,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let Some(h) = pool.health.clone() else { return };
    loop {
        for o in pool.origins() {
            let ok = upstream
                .probe(&pool, &o.addr, &h.path, &h.host, h.timeout)
                .await;
            match pool.record_check(o, ok) {
                Some(true) => tracing::info!(origin = %o.addr, "origin is healthy again"),
                Some(false) => {
                    tracing::warn!(origin = %o.addr, path = %h.path, "origin failed its health checks; taken out")
                }
                None => {}
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(h.interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
