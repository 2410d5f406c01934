//! Talking to origins: address parsing, the pooled HTTP client, timeouts and failover.
//!
//! Each site lists origin base URLs; a request goes to the first, and on a connect error to the
//! next (nothing was sent, so this is safe for any method without a body). Health checks, load
//! balancing and DNS resolution with hickory arrive with the origin-shield work.

use super::body::ProxyBody;
use super::error::UpstreamError;
use http::uri::{Authority, Scheme};
use http::{request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// An origin base URL: `http://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginAddr {
    /// Scheme (http).
    pub scheme: Scheme,
    /// host:port.
    pub authority: Authority,
}

impl OriginAddr {
    /// Parses an origin URL; only `http://host[:port]` without a path is accepted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{s:?} needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP {
            return Err(format!("{s:?}: only http:// origins are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{s:?}: an origin URL must not have a path or query"
            ));
        }
        Ok(Self { scheme, authority })
    }
}

impl std::fmt::Display for OriginAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

/// Timeouts for upstream fetches.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// From request sent to response head.
    pub first_byte: Duration,
    /// Longest gap between body chunks.
    pub body_idle: Duration,
}

/// The pooled upstream client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpConnector, ProxyBody>,
    /// Timeouts applied to every fetch.
    pub timeouts: Timeouts,
}

impl Upstream {
    /// A client with these timeouts.
    pub fn new(timeouts: Timeouts) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_connect_timeout(Some(timeouts.connect));
        conn.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .build(conn);
        Self { client, timeouts }
    }

    /// Sends `parts` (path and query in its URI) to the first origin that accepts a connection.
    /// `body` is only sent to the first origin; with a body, no failover happens.
    pub async fn send(
        &self,
        origins: &[OriginAddr],
        parts: request::Parts,
        body: ProxyBody,
        may_retry: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut last = None;
        let mut body = Some(body);
        for origin in origins {
            let Some(b) = body.take().or_else(|| may_retry.then(ProxyBody::empty)) else {
                break;
            };
            let mut p = parts.clone();
            let pq = parts.uri.path_and_query().cloned();
            let mut u = http::uri::Parts::default();
            u.scheme = Some(origin.scheme.clone());
            u.authority = Some(origin.authority.clone());
            u.path_and_query = pq.or_else(|| Some(http::uri::PathAndQuery::from_static("/")));
            p.uri = match Uri::from_parts(u) {
                Ok(u) => u,
                Err(e) => {
                    return Err(UpstreamError::Protocol {
                        origin: origin.to_string(),
                        detail: e.to_string(),
                    })
                }
            };
            let req = http::Request::from_parts(p, b);
            match tokio::time::timeout(self.timeouts.first_byte, self.client.request(req)).await {
                Err(_) => {
                    return Err(UpstreamError::Timeout {
                        origin: origin.to_string(),
                        phase: "response head",
                    })
                }
                Ok(Ok(res)) => return Ok(res),
                Ok(Err(e)) if e.is_connect() => {
                    last = Some(UpstreamError::Connect {
                        origin: origin.to_string(),
                        detail: error_chain(&e),
                    });
                    continue;
                }
                Ok(Err(e)) => {
                    return Err(UpstreamError::Protocol {
                        origin: origin.to_string(),
                        detail: error_chain(&e),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| UpstreamError::Connect {
            origin: "-".into(),
            detail: "no origin configured".into(),
        }))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
