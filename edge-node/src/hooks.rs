//! Request-phase hooks: how a role changes what a node does with a request without the
//! request path knowing the role (after pingora's `ProxyHttp`). The shield role plugs in here
//! (admission by secret, the purge-version gate). Site rules and limits are config, evaluated
//! by the request path itself (`rules/`, `limits.rs`). Every method has
//! a no-op default, so `NoHooks` is a plain edge.
//!
//! The phases, in order: route (Host to site; unknown hosts are refused before any hook),
//! [`Hooks::admit`], [`Hooks::before_lookup`] (GET and HEAD), then for every request sent
//! upstream [`Hooks::upstream_request`], and for every answer [`Hooks::response`].

use crate::body::ProxyBody;
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

/// What a hook sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// The method.
    pub method: &'a Method,
    /// The target as sent.
    pub uri: &'a Uri,
    /// The request's fields.
    pub headers: &'a HeaderMap,
    /// The normalised host (lower case, no port).
    pub host: &'a str,
    /// The name of the site it was routed to.
    pub site: &'a str,
    /// The peer address.
    pub client: SocketAddr,
}

/// A request refused by a hook: answered with `status` and `message`, `detail` in the
/// `Cache-Status` of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The status of the answer.
    pub status: StatusCode,
    /// The `detail` parameter of `Cache-Status` (a token: `not-an-edge`).
    pub detail: &'static str,
    /// The body of the answer.
    pub message: &'static str,
}

/// How a GET or HEAD goes on after [`Hooks::before_lookup`].
pub enum Proceed {
    /// Through the cache, as usual.
    Cache,
    /// Through the cache, but answered only with a fresh response: a stale one is revalidated
    /// first, never served within stale-while-revalidate (a shield answering an edge, whose
    /// own stale-while-revalidate already hides the latency).
    CacheFresh,
    /// Straight upstream for this client only, nothing stored; `detail` goes into
    /// `Cache-Status`.
    Bypass(&'static str),
    /// Decided later: the request waits for the future (boxed only when a hook waits).
    Wait(Pin<Box<dyn Future<Output = Proceed> + Send>>),
}

impl std::fmt::Debug for Proceed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proceed::Cache => f.write_str("Cache"),
            Proceed::CacheFresh => f.write_str("CacheFresh"),
            Proceed::Bypass(d) => write!(f, "Bypass({d})"),
            Proceed::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}

/// The request-phase hooks of a node.
///
/// ```
/// use edge_node::body::ProxyBody;
/// use edge_node::hooks::{Hooks, Refusal, RequestInfo};
/// use http::{HeaderValue, Response, StatusCode};
///
/// /// Refuses requests without an API key; marks every answer.
/// struct ApiKey;
///
/// impl Hooks for ApiKey {
///     fn admit(&self, req: &RequestInfo<'_>) -> Result<(), Refusal> {
///         if req.headers.contains_key("x-api-key") {
///             return Ok(());
///         }
///         Err(Refusal { status: StatusCode::UNAUTHORIZED, detail: "no-key", message: "key?\n" })
///     }
///
///     fn response(&self, res: &mut Response<ProxyBody>) {
///         res.headers_mut().insert("x-served-by", HeaderValue::from_static("me"));
///     }
/// }
///
/// let mut res = Response::new(ProxyBody::empty());
/// ApiKey.response(&mut res);
/// assert_eq!(res.headers()["x-served-by"], "me");
/// ```
pub trait Hooks: Send + Sync + 'static {
    /// Whether the request is accepted at all (after routing). `Err` answers it with the
    /// refusal.
    fn admit(&self, _req: &RequestInfo<'_>) -> Result<(), Refusal> {
        Ok(())
    }

    /// Before a GET or HEAD consults the cache.
    fn before_lookup(&self, _req: &RequestInfo<'_>) -> Proceed {
        Proceed::Cache
    }

    /// Every request this node sends upstream (fills, revalidations, passes), before it goes.
    fn upstream_request(&self, _req: &mut http::request::Parts) {}

    /// Every answer, before it goes to the client.
    fn response(&self, _res: &mut Response<ProxyBody>) {}
}

/// The hooks of a plain edge: none.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHooks;

impl Hooks for NoHooks {}
