//! The fill task: one call of the inner service for a key, run in its own task (independent
//! of the request that started it), whose response is decided on by the edge's policy
//! (RFC 9111, `CDN-Cache-Control`, `Surrogate-Control`; see `cache/policy.rs`), read whole
//! up to `max_object_bytes` and stored in every tier of the cache, or passed on unstored.

use super::body::CacheBody;
use super::collapse::{Done, FillGuard};
use super::state::Shared;
use crate::body::BoxError;
use crate::cache::policy::{decide, Decision};
use crate::cache::{CacheKey, Object, VarySpec};
use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{request, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::oneshot;
use tower_service::Service;

/// What the request that started a fill gets.
pub(crate) enum Filled<E> {
    /// The response was stored: answer from the object.
    Stored(Arc<Object>),
    /// Not stored (and why): the inner service's response, passed on.
    Passed(Response<CacheBody>, &'static str),
    /// The inner service failed.
    Failed(E),
}

/// The request as the policy sees it: method, target and fields (no body, no extensions).
pub(crate) fn client_parts<B>(req: &Request<B>) -> request::Parts {
    let mut parts = Request::new(()).into_parts().0;
    parts.method = req.method().clone();
    parts.uri = req.uri().clone();
    parts.headers = req.headers().clone();
    parts
}

/// Starts the fill of `key` with `req` sent to `inner`; the answer for the leader comes on
/// the returned channel (nobody need wait for it: a background refresh).
pub(crate) fn spawn<S, B, RB>(
    shared: Arc<Shared>,
    mut inner: S,
    req: Request<B>,
    key: CacheKey,
    guard: FillGuard,
) -> oneshot::Receiver<Filled<S::Error>>
where
    S: Service<Request<B>, Response = Response<RB>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (tx, rx) = oneshot::channel();
    let client = client_parts(&req);
    tokio::spawn(async move {
        // Purges from here on cover what this fetch brings.
        let purge_version = shared.cache.purge_version();
        let called = match std::future::poll_fn(|cx| inner.poll_ready(cx)).await {
            Ok(()) => inner.call(req).await,
            Err(e) => Err(e),
        };
        let filled = match called {
            Ok(res) => store(&shared, &client, key, res, purge_version, guard).await,
            Err(e) => {
                guard.finish(Done::NotStored);
                Filled::Failed(e)
            }
        };
        let _ = tx.send(filled);
    });
    rx
}

/// Decides on `res`, and stores it whole when it may be.
async fn store<RB, E>(
    shared: &Shared,
    client: &request::Parts,
    key: CacheKey,
    res: Response<RB>,
    purge_version: u64,
    guard: FillGuard,
) -> Filled<E>
where
    RB: Body<Data = Bytes> + Send + 'static,
    RB::Error: Into<BoxError>,
{
    let (parts, body) = res.into_parts();
    let max = shared.config.max_object_bytes;
    let fresh = match decide(client, &parts, SystemTime::now(), &shared.policy) {
        Decision::Store(fresh) => fresh,
        Decision::Pass(why) => {
            // A newer answer that may not be stored replaces what was (not an error, which
            // stale-if-error may still answer with the old one).
            if !parts.status.is_server_error() {
                shared.cache.remove(&key);
            }
            guard.finish(Done::NotStored);
            let res = Response::from_parts(parts, CacheBody::prefixed(VecDeque::new(), body));
            return Filled::Passed(res, why);
        }
    };
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        guard.finish(Done::NotStored);
        let res = Response::from_parts(parts, CacheBody::prefixed(VecDeque::new(), body));
        return Filled::Passed(res, "too large");
    }
    let mut body = body.map_err(Into::into).boxed_unsync();
    let mut chunks = VecDeque::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(f) => match f.into_data() {
                Ok(d) => d,
                // Trailers are not stored.
                Err(_) => continue,
            },
            Err(err) => {
                // A body that breaks is never stored; the leader's client gets what came and
                // then the error.
                guard.finish(Done::NotStored);
                let rest = http_body_util::StreamBody::new(futures_util::stream::once(
                    std::future::ready(Err::<http_body::Frame<Bytes>, BoxError>(err)),
                ));
                let res = Response::from_parts(parts, CacheBody::prefixed(chunks, rest));
                return Filled::Passed(res, "body error");
            }
        };
        total += data.len() as u64;
        chunks.push_back(data);
        if total > max {
            guard.finish(Done::NotStored);
            let res = Response::from_parts(parts, CacheBody::prefixed_boxed(chunks, body));
            return Filled::Passed(res, "too large");
        }
    }
    let mut whole = BytesMut::with_capacity(usize::try_from(total).unwrap_or(0));
    chunks.iter().for_each(|c| whole.extend_from_slice(c));
    let vary = VarySpec::from_response(&parts.headers);
    let values = vary
        .as_ref()
        .map(|v| v.values(&client.headers))
        .unwrap_or_default();
    let object = Arc::new(Object {
        purge_version,
        ..Object::new(parts.status, &parts.headers, whole.freeze(), fresh)
    });
    shared
        .cache
        .insert(key, vary.clone(), values.clone(), object.clone());
    guard.finish(Done::Stored {
        object: object.clone(),
        vary,
        values,
        status: parts.status,
    });
    Filled::Stored(object)
}
