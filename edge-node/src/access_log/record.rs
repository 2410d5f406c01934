//! One access log record, and what travels to the writer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the log says of one request.
pub(crate) struct Record {
    /// When it arrived.
    pub(crate) time: SystemTime,
    /// The client's address.
    pub(crate) client: SocketAddr,
    /// The site's name (`-` when none matched).
    pub(crate) site: Arc<str>,
    /// Method.
    pub(crate) method: http::Method,
    /// The request target as received.
    pub(crate) target: Box<str>,
    /// HTTP version.
    pub(crate) version: http::Version,
    /// `Referer` and `User-Agent`, for the combined format.
    pub(crate) referer: Option<Box<[u8]>>,
    /// See `referer`.
    pub(crate) user_agent: Option<Box<[u8]>>,
    /// Status sent.
    pub(crate) status: u16,
    /// Body bytes, when known at the head.
    pub(crate) bytes: Option<u64>,
    /// Time until the response head was ready.
    pub(crate) duration: Duration,
    /// For answers that went upstream (not hits): the same time, spent waiting on it.
    pub(crate) upstream: Option<Duration>,
    /// `hit`, `miss`, `stale`, `pass`, `error`.
    pub(crate) cache: &'static str,
    /// `edge` or `shield`.
    pub(crate) tier: &'static str,
    /// The request id (also in error pages).
    pub(crate) id: u64,
    /// The trace it belongs to, if any.
    pub(crate) trace: Option<[u8; 32]>,
}

#[cfg(test)]
impl Record {
    /// A record for tests: a GET of `/` on `site`, answered 200 from the cache.
    #[allow(clippy::unwrap_used)]
    pub(crate) fn sample(id: u64, site: &str) -> Self {
        Record {
            time: std::time::SystemTime::UNIX_EPOCH,
            client: "127.0.0.1:1".parse().unwrap(),
            site: site.into(),
            method: http::Method::GET,
            target: "/".into(),
            version: http::Version::HTTP_11,
            referer: None,
            user_agent: None,
            status: 200,
            bytes: None,
            duration: std::time::Duration::ZERO,
            upstream: None,
            cache: "hit",
            tier: "edge",
            id,
            trace: None,
        }
    }
}
