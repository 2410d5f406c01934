//! Who may use the admin API: `[admin] allow` and `deny` networks, checked on the TCP peer
//! before the token. Deny wins; an empty `allow` lets every address through. `/healthz` and
//! `/livez` are not behind this check: load balancers and geo-DNS probe them from addresses
//! an operator does not always know, and they tell nothing but whether the node serves.

use crate::client_addr::Networks;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use std::net::SocketAddr;
use std::sync::Arc;

/// The TCP peer of an admin connection (axum's connect info, for plain and TLS listeners).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<IncomingStream<'_, tokio::net::TcpListener>>
    for PeerAddr
{
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, crate::tls::TlsListener>>
    for PeerAddr
{
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// The admin API's `allow` and `deny` networks.
#[derive(Debug, Default)]
pub(crate) struct AdminAccess {
    allow: Networks,
    deny: Networks,
}

impl AdminAccess {
    /// The lists of `[admin]` (networks as `check-config` validates them).
    pub(crate) fn new(allow: &[String], deny: &[String]) -> Result<Self, String> {
        Ok(Self {
            allow: Networks::parse(allow).map_err(|e| format!("admin.allow: {e}"))?,
            deny: Networks::parse(deny).map_err(|e| format!("admin.deny: {e}"))?,
        })
    }

    /// Whether either list is set.
    pub(crate) fn is_restricted(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    /// Why `peer` may not use the admin API, if it may not (`None`: unknown peer, refused).
    pub(crate) fn refusal(&self, peer: Option<SocketAddr>) -> Option<String> {
        if !self.is_restricted() {
            return None;
        }
        let Some(peer) = peer else {
            return Some("the admin API cannot tell this connection's address".into());
        };
        let ip = peer.ip().to_canonical();
        if self.deny.contains(ip) {
            return Some(format!("{ip} is refused by [admin] deny"));
        }
        if !self.allow.is_empty() && !self.allow.contains(ip) {
            return Some(format!("{ip} is not in [admin] allow"));
        }
        None
    }
}

/// The middleware: 403 with the reason for a peer the lists refuse, before any token check.
pub(crate) async fn guard(
    State(access): State<Arc<AdminAccess>>,
    req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0);
    match access.refusal(peer) {
        None => next.run(req).await,
        Some(why) => {
            tracing::debug!(client = ?peer, "admin: {why}");
            super::reply::error(StatusCode::FORBIDDEN, &why)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(ip: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(ip.parse().unwrap(), 1234))
    }

    #[test]
    fn deny_wins_and_an_empty_allow_is_everyone() {
        let open = AdminAccess::new(&[], &[]).unwrap();
        assert!(open.refusal(at("203.0.113.1")).is_none());
        assert!(open.refusal(None).is_none());
        let a = AdminAccess::new(
            &["10.0.0.0/8".into(), "127.0.0.1".into()],
            &["10.9.0.0/16".into()],
        )
        .unwrap();
        assert!(a.refusal(at("10.1.2.3")).is_none());
        assert!(a.refusal(at("127.0.0.1")).is_none());
        assert!(a.refusal(at("::ffff:127.0.0.1")).is_none());
        assert!(a.refusal(at("10.9.1.1")).unwrap().contains("deny"));
        assert!(a.refusal(at("192.0.2.1")).unwrap().contains("allow"));
        assert!(a.refusal(None).is_some(), "an unknown peer is refused");
        let deny_only = AdminAccess::new(&[], &["192.0.2.0/24".into()]).unwrap();
        assert!(deny_only.refusal(at("192.0.2.9")).is_some());
        assert!(deny_only.refusal(at("198.51.100.1")).is_none());
        assert!(AdminAccess::new(&["nonsense".into()], &[]).is_err());
    }
}
