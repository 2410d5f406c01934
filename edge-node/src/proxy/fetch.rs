//! The fill task: one upstream fetch per collapse key, run independently of the client that
//! started it. It sends the request ([`Proxy::run_fill`]), decides storability
//! ([`Proxy::plan_store`]), publishes the head to every waiting reader, streams the body into
//! the fill ([`Proxy::receive_body`]), and stores the object once it is whole
//! ([`Proxy::complete`]). A body that ends early or stalls is never stored.

use super::collapse::{CollapseKey, Fill, FillEnd, FillHead, StoringHead};
use super::ctx::{Ctx, Purpose};
use super::headers;
use super::Proxy;
use crate::body::ProxyBody;
use crate::cache::disk::format::Meta;
use crate::cache::disk::DiskWriter;
use crate::cache::headers::StoredHeaders;
use crate::cache::key::CacheKey;
use crate::cache::object::{Extras, Object};
use crate::cache::policy::{decide, Decision, Freshness, PolicyOptions};
use crate::cache::vary::{VarySpec, VaryValues};
use crate::upstream::origins::OriginPool;
use crate::upstream::Retry;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{request, response, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::Instrument;

/// One fill: what to fetch, for whom, and where it goes.
pub(super) struct FillJob {
    pub key: CacheKey,
    ck: CollapseKey,
    pub fill: Arc<Fill>,
    origins: Arc<OriginPool>,
    upstream: request::Parts,
    /// The client's request as the policy sees it (method, URI, fields).
    pub client: request::Parts,
    stale: Option<Arc<Object>>,
    /// The purge version applied when the fetch started.
    pub purge_version: u64,
    /// The freshness rules of its site.
    pub policy: PolicyOptions,
    /// Names the site's rules add to the stored response's Vary (their key additions).
    pub key_vary: Vec<http::HeaderName>,
    /// What the rules say of compression.
    compress: Option<bool>,
    /// How it starts.
    start: Option<FillStart>,
}

/// How a fill starts.
pub(super) enum FillStart {
    /// Sending its request, 1xx responses relayed to the leader's client when it has a channel.
    Send(Option<crate::interim::InterimSender>),
    /// With a response already received (a range request's whole answer).
    Sent(Response<hyper::body::Incoming>),
}

/// How a storable response will be kept, decided from its head.
struct StorePlan {
    fresh: Freshness,
    content_length: Option<u64>,
    vary: Option<VarySpec>,
    values: VaryValues,
    stored_headers: StoredHeaders,
    tags: Box<[Box<str>]>,
    /// For an object too large for memory: the disk file it streams into.
    spool: Option<DiskWriter>,
    /// Whether compressed forms are made for clients.
    compressible: bool,
}

/// The body as received: its chunks (while it may still be stored in memory) and length.
struct Received {
    chunks: Vec<Bytes>,
    total: u64,
    /// Still storable in memory (it did not outgrow `max_object_bytes`).
    keep: bool,
}

impl Proxy {
    /// Starts the fill task for `ck`, whose leader is the request in `ctx`.
    pub(super) fn spawn_fill(
        self: &Arc<Self>,
        ctx: &Ctx,
        ck: CollapseKey,
        fill: Arc<Fill>,
        stale: Option<Arc<Object>>,
        start: FillStart,
    ) {
        let (start, interim) = match start {
            FillStart::Send(interim) => (None, interim),
            sent => (Some(sent), None),
        };
        let mut upstream = self.upstream_parts(ctx, Purpose::Fill);
        if let Some(old) = &stale {
            if let Some(etag) = old.etag().and_then(|e| HeaderValue::from_str(&e).ok()) {
                upstream.headers.insert(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = old
                .last_modified()
                .and_then(|e| HeaderValue::from_str(&e).ok())
            {
                upstream.headers.insert(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let upstream = super::ctx::relaying_interim(upstream, interim);
        let mut client = http::Request::new(()).into_parts().0;
        client.method = http::Method::GET;
        client.uri = ctx.parts.uri.clone();
        client.headers = ctx.parts.headers.clone();
        let job = FillJob {
            key: ctx.key,
            ck,
            fill,
            origins: ctx.origins().clone(),
            upstream,
            client,
            stale,
            purge_version: self.cache.purge_version(),
            policy: self.policy(ctx),
            key_vary: ctx.key_vary(),
            compress: ctx.compress(),
            start,
        };
        let me = self.clone();
        // The fill outlives any one client; its span is a child of the request that led it.
        let span = if self.traced && !tracing::Span::current().is_none() {
            tracing::info_span!(
                target: "edge_node::fill",
                "fill",
                otel.name = "cache fill",
                cdn.tier = self.tier(),
                cdn.cache.key = %format_args!("{:032x}", ctx.key.0),
                cdn.revalidate = job.stale.is_some(),
            )
        } else {
            tracing::Span::none()
        };
        tokio::spawn(
            async move {
                let (ck, fill) = (job.ck, job.fill.clone());
                me.run_fill(job).await;
                me.inflight.remove(&ck, &fill);
            }
            .instrument(span),
        );
    }

    /// The whole fill: fetch, then refresh (304), pass (not storable) or store.
    async fn run_fill(&self, mut job: FillJob) {
        let sent = match job.start.take() {
            Some(FillStart::Sent(res)) => Ok(res),
            _ => {
                self.upstream
                    .send(
                        &job.origins,
                        job.key.0,
                        job.upstream.clone(),
                        ProxyBody::empty(),
                        Retry::Idempotent,
                        job.purge_version,
                    )
                    .await
            }
        };
        let res = match sent {
            Ok(r) => r,
            Err(e) => {
                // The upstream's own warning (once per interval) has said why.
                tracing::debug!(error = %e, "upstream fetch failed");
                job.fill.set_head(FillHead::Failed(e));
                return;
            }
        };
        let now = crate::cache::clock::now();
        if res.status() == StatusCode::NOT_MODIFIED {
            match &job.stale {
                Some(old) => self.refresh(&job, old, res.headers(), now),
                None => job.fill.set_pass(res),
            }
            return;
        }
        let (mut parts, body) = res.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        super::buffered::complete_if_whole(&mut parts);
        let Some(mut plan) = self.plan_store(&job, &parts, now) else {
            // Not storable (or too large): an older copy is superseded, unless this is an
            // error that stale-if-error may still paper over.
            if job.stale.is_some() && !parts.status.is_server_error() {
                self.cache.remove(&job.key);
            }
            job.fill.set_pass(Response::from_parts(parts, body));
            return;
        };
        let status = parts.status;
        self.publish_head(&job, &plan, status, parts.headers);
        let received = self.receive_body(&job, body, &mut plan).await;
        self.complete(job, plan, status, received).await;
    }

    /// Whether and how the response with head `parts` is stored; `None`: passed through.
    fn plan_store(
        &self,
        job: &FillJob,
        parts: &response::Parts,
        now: SystemTime,
    ) -> Option<StorePlan> {
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let Decision::Store(fresh) = decide(&job.client, parts, now, &job.policy) else {
            return None;
        };
        // A part (a 206 to a request without Range) is stored only with its exact length,
        // and only in memory.
        if let Some(span) = crate::cache::parts::Span::of(&parts.headers) {
            if parts.status == StatusCode::PARTIAL_CONTENT
                && (content_length != Some(span.len()) || span.len() > self.cache.max_object())
            {
                return None;
            }
        }
        let vary = VarySpec::adding(VarySpec::from_response(&parts.headers), &job.key_vary);
        let values = vary
            .as_ref()
            .map(|s| s.values(&job.client.headers))
            .unwrap_or_default();
        let stored_headers = StoredHeaders::from_map(&parts.headers, headers::stored);
        let tags: Box<[Box<str>]> = crate::purge::event::response_tags(&parts.headers)
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        let max = self.cache.max_object();
        // Too large for memory but of known length: written straight to the disk tier while
        // readers stream it from there.
        let spool = match content_length {
            Some(len) if len > max => self.cache.begin_large(
                Meta {
                    key: job.key,
                    status: parts.status,
                    fresh,
                    purge_version: job.purge_version,
                    vary: vary.clone(),
                    values: values.clone(),
                    tags: tags.clone(),
                    headers: stored_headers.clone(),
                },
                len,
            ),
            _ => None,
        };
        if content_length.is_some_and(|l| l > max) && spool.is_none() {
            return None;
        }
        let compressible = job.compress != Some(false) && {
            let h = &parts.headers;
            let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
            let rules = match job.compress {
                Some(true) => &self.settings.compress_forced,
                _ => &self.settings.compress,
            };
            rules.applies(
                get(header::CONTENT_TYPE),
                get(header::CONTENT_ENCODING),
                get(header::CACHE_CONTROL),
                content_length.unwrap_or(u64::MAX),
            )
        };
        Some(StorePlan {
            fresh,
            content_length,
            vary,
            values,
            stored_headers,
            tags,
            spool,
            compressible,
        })
    }

    /// Publishes the head of a storable response to the fill's readers.
    fn publish_head(
        &self,
        job: &FillJob,
        plan: &StorePlan,
        status: StatusCode,
        mut client_headers: HeaderMap,
    ) {
        if let Some(w) = &plan.spool {
            job.fill.set_spool(w.path().to_path_buf(), w.body_offset());
        }
        headers::for_client(&mut client_headers);
        if plan.compressible {
            // Later hits may be compressed: caches downstream must key on Accept-Encoding.
            super::respond::ensure_vary_accept_encoding(&mut client_headers);
        }
        // The upstream's Cache-Status members stay for this first answer (RFC 9211 chain).
        job.fill.set_head(FillHead::Storing(StoringHead {
            status,
            headers: client_headers,
            content_length: plan.content_length,
            vary: plan.vary.clone(),
            values: plan.values.clone(),
            fresh: plan.fresh,
        }));
    }

    /// Streams the body into the fill (or the spool file), bounded by the idle and total
    /// timeouts and by the slowest reader; `Err` names why it ended early.
    async fn receive_body(
        &self,
        job: &FillJob,
        mut body: hyper::body::Incoming,
        plan: &mut StorePlan,
    ) -> Result<Received, &'static str> {
        let timeouts = self.upstream.timeouts;
        let deadline = timeouts.body_total.map(|d| tokio::time::Instant::now() + d);
        let max = self.cache.max_object();
        let mut got = Received {
            chunks: Vec::new(),
            total: 0,
            keep: true,
        };
        loop {
            let wait = match deadline {
                Some(end) => timeouts
                    .body_idle
                    .min(end.saturating_duration_since(tokio::time::Instant::now())),
                None => timeouts.body_idle,
            };
            let frame = match tokio::time::timeout(wait, body.frame()).await {
                Err(_) => return Err("timeout"),
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream body failed");
                    return Err("truncated");
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            got.total += data.len() as u64;
            if let Some(w) = plan.spool.as_mut() {
                match w.write(&data) {
                    Ok(written) => job.fill.spooled(written),
                    Err(e) => {
                        tracing::warn!(error = %e, "writing a large object to disk failed");
                        return Err("disk");
                    }
                }
                continue;
            }
            if got.keep && got.total > max {
                // Too large to store after all: stream it with bounded memory, and let new
                // requests start their own fetch.
                got.keep = false;
                got.chunks.clear();
                job.fill.stream_only();
                self.inflight.remove(&job.ck, &job.fill);
            }
            if got.keep {
                got.chunks.push(data.clone());
            }
            job.fill.push(data);
            let paced = tokio::time::timeout(timeouts.body_idle, job.fill.release_and_pace()).await;
            if paced.is_err() {
                return Err("slow-reader");
            }
        }
        match plan.content_length {
            Some(l) if l != got.total => Err("truncated"),
            _ => Ok(got),
        }
    }

    /// Ends the fill: a whole body is stored (memory and disk, or the finished disk file); a
    /// body that ended early is not, and readers see the truncation.
    async fn complete(
        &self,
        job: FillJob,
        mut plan: StorePlan,
        status: StatusCode,
        received: Result<Received, &'static str>,
    ) {
        let got = match received {
            Ok(got) => got,
            Err(kind) => {
                tracing::warn!(kind, "upstream body ended early; not stored");
                self.metrics.body_error(kind);
                job.fill.finish(FillEnd::Truncated);
                return;
            }
        };
        if let Some(w) = plan.spool.take() {
            let (dest, offset) = (w.dest(), w.body_offset());
            match w.finish() {
                Ok(true) => {
                    job.fill.set_spool(dest, offset);
                    self.metrics.stored();
                }
                // Removed (purged, invalidated) while it streamed: readers that opened the
                // file read it to the end; it is not stored.
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "completing a large disk object failed"),
            }
            job.fill.finish(FillEnd::Complete);
            return;
        }
        job.fill.finish(FillEnd::Complete);
        if !got.keep {
            return;
        }
        let body = concat(&got.chunks, got.total);
        let encoded = if plan.compressible {
            let codings = match job.compress {
                Some(true) => &self.settings.compress_forced.codings,
                _ => &self.settings.compress.codings,
            };
            self.encode(codings.clone(), &body).await
        } else {
            Box::default()
        };
        let obj = Arc::new(Object {
            status,
            headers: plan.stored_headers,
            body,
            fresh: plan.fresh,
            extras: Extras::new(encoded, plan.tags),
            purge_version: job.purge_version,
        });
        self.cache.insert(job.key, plan.vary, plan.values, obj);
        self.metrics.stored();
    }

    /// The freshness rules for the response to `ctx`: the node's, with its site's own window
    /// for serving stale when unreachable, and what its rules say.
    pub(super) fn policy(&self, ctx: &Ctx) -> PolicyOptions {
        let mut p = self.settings.policy;
        if let Some(w) = ctx.site.stale_if_unreachable {
            p.stale_if_unreachable = w;
        }
        if !ctx.rules.is_empty() {
            p.rule = ctx.site.rules.freshness(ctx.rules);
        }
        p
    }

    /// The configured compressed forms of `body`, made off the async workers; forms that do
    /// not save at least 10% are dropped.
    async fn encode(
        &self,
        codings: Vec<crate::cache::compress::Coding>,
        body: &Bytes,
    ) -> Box<[(crate::cache::compress::Coding, Bytes)]> {
        let body = body.clone();
        let made = tokio::task::spawn_blocking(move || {
            codings
                .into_iter()
                .filter_map(|c| match c.encode(&body) {
                    Ok(e) if (e.len() as u64) * 10 < (body.len() as u64) * 9 => Some((c, e)),
                    Ok(_) => None,
                    Err(err) => {
                        tracing::warn!(error = %err, coding = c.token(), "compression failed");
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
        .await;
        made.map(Vec::into_boxed_slice).unwrap_or_default()
    }
}

/// The body as one exact-size buffer, so a stored object never pins a larger read buffer.
/// (Header block and body in one shared buffer was tried: it measured about 800 B more per
/// 1 KiB object, so they stay separate.)
fn concat(chunks: &[Bytes], total: u64) -> Bytes {
    // A large body goes into a mapped memory file, which plain connections send without a
    // copy (`cache/mapped.rs`); any other stays on the heap, in one exact-size allocation.
    if let Some(b) = usize::try_from(total)
        .ok()
        .and_then(|t| crate::cache::mapped::from_chunks(chunks, t))
    {
        return b;
    }
    let mut b = BytesMut::with_capacity(total as usize);
    for c in chunks {
        b.extend_from_slice(c);
    }
    b.freeze()
}
