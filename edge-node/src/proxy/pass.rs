//! What the cache does not keep: a GET or HEAD passed upstream for one client (not storable,
//! collapse timeout, a hook's bypass), and the methods the cache does not answer, forwarded
//! with their bodies. A successful unsafe request invalidates the target URI, and `Location`
//! and `Content-Location` on the same host, in every tier (RFC 9111 section 4.4); a POST
//! response that names itself may then be stored (`post.rs`).

use super::ctx::{Ctx, Purpose};
use super::post::Posted;
use super::{headers, respond, Answer, Proxy};
use crate::body::ProxyBody;
use crate::metrics::Outcome;
use crate::upstream::Retry;
use http::header;
use http::{Method, Response};

impl Proxy {
    /// Sends a GET/HEAD upstream for this client alone, storing nothing.
    pub(super) async fn pass(&self, ctx: Ctx, params: &str) -> Answer {
        match self
            .send_forward(&ctx, ProxyBody::empty(), Retry::Idempotent)
            .await
        {
            Ok(res) => {
                let p = format!("{params}; fwd-status={}", res.status().as_u16());
                self.relay(res, &ctx, &p)
            }
            Err(e) => self.upstream_failed(&ctx, params, &e),
        }
    }

    /// Sends the client's own request upstream (shields, then origins) with `body`.
    async fn send_forward(
        &self,
        ctx: &Ctx,
        body: ProxyBody,
        retry: Retry,
    ) -> Result<Response<hyper::body::Incoming>, crate::upstream::error::UpstreamError> {
        let up = self.upstream_parts_relaying(ctx, Purpose::Forward).await;
        let (origins, key) = (ctx.origins(), ctx.key.0);
        let version = self.cache.purge_version();
        self.upstream
            .send(origins, key, up, body, retry, version)
            .await
    }

    /// Relays an upstream response untouched but for hop-by-hop fields and our own.
    pub(super) fn relay(
        &self,
        res: Response<hyper::body::Incoming>,
        ctx: &Ctx,
        params: &str,
    ) -> Answer {
        let (mut parts, body) = res.into_parts();
        headers::for_client(&mut parts.headers);
        parts
            .headers
            .append(respond::CACHE_STATUS.clone(), self.status_value(params));
        headers::append_via(&mut parts.headers, &self.via);
        let len = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = if ctx.parts.method == Method::HEAD {
            ProxyBody::empty()
        } else {
            ProxyBody::Incoming(body)
        };
        Answer::new(Response::from_parts(parts, body), Outcome::Pass, len)
    }

    /// 400 for a request whose own body was malformed, cut short or longer than declared.
    pub(super) fn bad_request_body(&self) -> Answer {
        let st = self.status_value("fwd=method; detail=bad-request-body");
        let msg = "outpost: the request body was malformed or cut short";
        Answer::new(
            respond::plain(http::StatusCode::BAD_REQUEST, st, msg),
            Outcome::Error,
            None,
        )
    }

    /// Methods other than GET and HEAD: forwarded with their body; a successful unsafe one
    /// invalidates what it names. `body_broke` is set when the client's own body failed (bad
    /// chunked framing, cut short): the answer is then 400, not the upstream's failure.
    pub(super) async fn forward(
        &self,
        ctx: Ctx,
        body: ProxyBody,
        body_broke: &std::sync::atomic::AtomicBool,
    ) -> Answer {
        let res = match self.send_forward(&ctx, body, Retry::ConnectOnly).await {
            Ok(r) => r,
            Err(_) if body_broke.load(std::sync::atomic::Ordering::Relaxed) => {
                return self.bad_request_body();
            }
            Err(e) => return self.upstream_failed(&ctx, "fwd=method", &e),
        };
        let is_unsafe = !matches!(ctx.parts.method, Method::OPTIONS);
        if is_unsafe && (res.status().is_success() || res.status().is_redirection()) {
            self.cache.remove(&ctx.key);
            for h in [header::LOCATION, header::CONTENT_LOCATION] {
                if let Some(k) = res
                    .headers()
                    .get(&h)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| ctx.key_for_reference(v))
                {
                    self.cache.remove(&k);
                }
            }
        }
        let res = match self.store_post_response(&ctx, res).await {
            Posted::Stored(answer) => return answer,
            Posted::Relay(res) => res,
        };
        let p = format!("fwd=method; fwd-status={}", res.status().as_u16());
        self.relay(res, &ctx, &p)
    }
}
