//! [`CacheLayer`] and [`CacheService`]: the edge's cache in front of any
//! `tower::Service<http::Request<B>>`. GET and HEAD are looked up (fresh: answered; within
//! stale-while-revalidate: answered and refreshed in the background; stale or missing: one
//! call of the inner service per key, shared by the requests that miss meanwhile); other
//! methods go to the inner service, and a successful unsafe one invalidates the URL and its
//! `Location` and `Content-Location` (RFC 9111 4.4). Every response carries `Cache-Status`.

use super::answer::{self, status_value};
use super::body::CacheBody;
use super::collapse::{self, Done, Joined};
use super::config::CacheConfig;
use super::fill::{self, Filled};
use super::key::{self, Target};
use super::purge::PurgeHandle;
use super::state::Shared;
use crate::body::BoxError;
use crate::cache::policy::unix_ms;
use crate::cache::{Cache, Lookup, Object, PurgeMarks, Request as CacheRequest, Stale};
use bytes::Bytes;
use http::header::{CONTENT_LOCATION, LOCATION, RANGE};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tower_layer::Layer;
use tower_service::Service;

/// A tower [`Layer`] that caches the responses of the service it wraps, by the rules of the
/// Outpost edge (RFC 9111 with `CDN-Cache-Control` and `Surrogate-Control`, `Vary`,
/// stale-while-revalidate and stale-if-error), collapses concurrent misses for one URL into
/// one call, adds `Cache-Status`, and can be purged through a [`PurgeHandle`].
///
/// Clones share one cache. Build it inside a Tokio runtime: fills run as tasks.
///
/// ```
/// use axum::{routing::get, Router};
/// use edge_node::layer::{CacheConfig, CacheLayer};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let cache = CacheLayer::new(CacheConfig::default());
/// let purge = cache.purge_handle();
/// let app: Router = Router::new()
///     .route("/", get(|| async { ([("cache-control", "max-age=60")], "hello") }))
///     .layer(cache);
/// # let _ = (app, purge);
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct CacheLayer {
    shared: Arc<Shared>,
}

impl CacheLayer {
    /// A layer over a new [`Cache`] of `config` (memory tier, and a disk tier if configured).
    pub fn new(config: CacheConfig) -> Self {
        let cache = Arc::new(Cache::new(
            &config.cache_options(),
            Arc::new(PurgeMarks::default()),
        ));
        Self::with_cache(cache, config)
    }

    /// A layer over `cache`, which something else may share (another layer, a program's own
    /// lookups and stores); the tier settings of `config` are then not used.
    pub fn with_cache(cache: Arc<Cache>, config: CacheConfig) -> Self {
        Self {
            shared: Arc::new(Shared::new(cache, config)),
        }
    }

    /// A handle that purges this layer's cache.
    pub fn purge_handle(&self) -> PurgeHandle {
        PurgeHandle {
            shared: self.shared.clone(),
        }
    }

    /// The cache (for its gauges, or lookups of a program's own).
    pub fn cache(&self) -> &Arc<Cache> {
        &self.shared.cache
    }
}

impl<S> Layer<S> for CacheLayer {
    type Service = CacheService<S>;

    fn layer(&self, inner: S) -> CacheService<S> {
        CacheService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service a [`CacheLayer`] makes of `S`.
#[derive(Debug, Clone)]
pub struct CacheService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The future of a [`CacheService`] call.
pub type CacheFuture<E> = Pin<Box<dyn Future<Output = Result<Response<CacheBody>, E>> + Send>>;

impl<S, B, RB> Service<Request<B>> for CacheService<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    type Response = Response<CacheBody>;
    type Error = S::Error;
    type Future = CacheFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The clone made ready by `poll_ready` serves this request (tower's rule).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(handle(self.shared.clone(), inner, req))
    }
}

/// Calls `inner` (made ready first) and passes its answer on with `params` in `Cache-Status`.
async fn forward<S, B, RB>(
    shared: &Shared,
    mut inner: S,
    req: Request<B>,
    params: &str,
) -> Result<Response<CacheBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
    let res = inner.call(req).await?;
    let status = format!("{params}; fwd-status={}", res.status().as_u16());
    Ok(answer::passed(
        res,
        status_value(&shared.config.name, &status),
    ))
}

async fn handle<S, B, RB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<B>,
) -> Result<Response<CacheBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let method = req.method().clone();
    let Some(target) = key::of_request(req.uri(), req.headers(), shared.config.query) else {
        return forward(&shared, inner, req, "fwd=bypass; detail=no-host").await;
    };
    if method != Method::GET && method != Method::HEAD {
        return unsafe_method(&shared, inner, req, &target).await;
    }
    let now = unix_ms(SystemTime::now());
    let verdict = shared
        .cache
        .lookup(
            CacheRequest {
                key: &target.key,
                headers: req.headers(),
                host: &target.host,
                path: &target.path,
            },
            now,
        )
        .await;
    let name = &shared.config.name;
    match verdict {
        Lookup::Fresh { object, .. } => {
            let ttl = object.fresh.fresh_until_ms.saturating_sub(now) / 1000;
            let mut ttl_buf = itoa::Buffer::new();
            let status = status_value(name, &["hit; ttl=", ttl_buf.format(ttl)].concat());
            let age = object.fresh.age_secs(now);
            Ok(answer::object(&object, &method, req.headers(), age, status))
        }
        Lookup::Stale {
            object,
            variant,
            why: Stale::WhileRevalidate,
        } => {
            let ttl = (i128::from(object.fresh.fresh_until_ms) - i128::from(now)).div_euclid(1000);
            let status = status_value(
                name,
                &format!("hit; ttl={ttl}; detail=stale-while-revalidate"),
            );
            let res = answer::object(
                &object,
                &method,
                req.headers(),
                object.fresh.age_secs(now),
                status,
            );
            // The refresh takes this request (its body is not needed for the answer).
            if method == Method::GET {
                if let Joined::Leader(guard) = shared.inflight.join((target.key, variant)) {
                    drop(fill::spawn(shared.clone(), inner, req, target.key, guard));
                }
            }
            Ok(res)
        }
        Lookup::Stale {
            object,
            variant,
            why: Stale::Revalidate { serve_on_error },
        } => {
            let stale = serve_on_error.then_some(object);
            miss(shared, inner, req, target, variant, stale).await
        }
        Lookup::Miss { variant } => miss(shared, inner, req, target, variant, None).await,
        // Written only by the edge's request path (objects too large for memory); the layer
        // fetches such a URL afresh.
        Lookup::FreshLarge(_) => miss(shared, inner, req, target, 0, None).await,
    }
}

/// A GET or HEAD that the cache cannot answer: it leads the fill of its key or follows the
/// one under way. `stale` is answered instead of an error from the inner service.
async fn miss<S, B, RB>(
    shared: Arc<Shared>,
    inner: S,
    req: Request<B>,
    target: Target,
    variant: u64,
    stale: Option<Arc<Object>>,
) -> Result<Response<CacheBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let fwd = if stale.is_some() {
        "fwd=stale"
    } else {
        "fwd=miss"
    };
    // The layer stores whole responses only: ranges and HEAD misses go through unstored.
    if req.method() == Method::HEAD || req.headers().contains_key(RANGE) {
        return forward(&shared, inner, req, fwd).await;
    }
    let name = shared.config.name.clone();
    let rx = match shared.inflight.join((target.key, variant)) {
        Joined::Leader(guard) => fill::spawn(shared.clone(), inner, req, target.key, guard),
        Joined::Follower(rx) => {
            let limit = shared.config.collapse_timeout;
            let mine = req.headers().clone();
            return match collapse::wait(rx, limit).await.as_deref() {
                Some(Done::Stored {
                    object,
                    vary,
                    values,
                    status,
                }) => {
                    let vary_ok = vary
                        .as_ref()
                        .is_none_or(|spec| spec.values(&mine) == *values);
                    if !vary_ok {
                        return forward(&shared, inner, req, "fwd=vary-miss").await;
                    }
                    let params =
                        format!("{fwd}; fwd-status={}; stored; collapsed", status.as_u16());
                    let now = unix_ms(SystemTime::now());
                    let age = object.fresh.age_secs(now);
                    let st = status_value(&name, &params);
                    Ok(answer::object(object, req.method(), &mine, age, st))
                }
                Some(Done::NotStored) => forward(&shared, inner, req, fwd).await,
                None => {
                    let params = format!("{fwd}; detail=collapse-timeout");
                    forward(&shared, inner, req, &params).await
                }
            };
        }
    };
    // The request went into the fill: what the answer needs of it was taken before.
    let Ok(filled) = rx.await else {
        let st = status_value(&name, &format!("{fwd}; detail=fill-failed"));
        return Ok(answer::own(
            StatusCode::BAD_GATEWAY,
            "cache fill failed\n",
            st,
        ));
    };
    let now = unix_ms(SystemTime::now());
    let stale_answer = |why: &str| {
        stale.as_ref().map(|obj| {
            let st = status_value(&name, &format!("fwd=stale; {why}; detail=stale-if-error"));
            answer::object(
                obj,
                &Method::GET,
                &http::HeaderMap::new(),
                obj.fresh.age_secs(now),
                st,
            )
        })
    };
    match filled {
        Filled::Stored(object) => {
            let params = format!("{fwd}; fwd-status={}; stored", object.status.as_u16());
            let st = status_value(&name, &params);
            let age = object.fresh.age_secs(now);
            Ok(answer::object(
                &object,
                &Method::GET,
                &http::HeaderMap::new(),
                age,
                st,
            ))
        }
        Filled::Passed(res, why) => {
            let code = res.status().as_u16();
            if res.status().is_server_error() {
                if let Some(a) = stale_answer(&format!("fwd-status={code}")) {
                    return Ok(a);
                }
            }
            let detail = why.replace(' ', "-");
            let st = status_value(&name, &format!("{fwd}; fwd-status={code}; detail={detail}"));
            Ok(answer::passed(res, st))
        }
        Filled::Failed(e) => match stale_answer("detail=error") {
            Some(a) => Ok(a),
            None => Err(e),
        },
    }
}

/// Methods other than GET and HEAD go to the inner service; a 2xx or 3xx answer to an unsafe
/// one removes the URL, and its `Location` and `Content-Location` on the same host, from
/// every tier (RFC 9111 4.4).
async fn unsafe_method<S, B, RB>(
    shared: &Shared,
    inner: S,
    req: Request<B>,
    target: &Target,
) -> Result<Response<CacheBody>, S::Error>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let safe = matches!(*req.method(), Method::OPTIONS | Method::TRACE);
    let scheme = req.uri().scheme_str().unwrap_or("http").to_string();
    let res = forward(shared, inner, req, "fwd=method").await?;
    let s = res.status();
    if !safe && (s.is_success() || s.is_redirection()) {
        let cache = &shared.cache;
        cache.remove(&target.key);
        for name in [LOCATION, CONTENT_LOCATION] {
            let named = res.headers().get(name).and_then(|v| v.to_str().ok());
            if let Some(k) =
                named.and_then(|v| key::of_location(v, &scheme, &target.host, shared.config.query))
            {
                cache.remove(&k);
            }
        }
    }
    Ok(res)
}
