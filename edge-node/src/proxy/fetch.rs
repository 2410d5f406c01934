//! The fill task: one upstream fetch per collapse key, run independently of the client that
//! started it. It decides storability, publishes the head to every waiting reader, streams the
//! body into the fill, and stores the object once it is whole. A body that ends early or
//! stalls is never stored.

use super::body::ProxyBody;
use super::headers;
use super::{Ctx, Proxy};
use crate::cache::fill::{CollapseKey, Fill, FillEnd, FillHead};
use crate::cache::headers::StoredHeaders;
use crate::cache::key::CacheKey;
use crate::cache::object::Object;
use crate::cache::policy::{decide, unix_ms, Decision};
use crate::cache::vary::VarySpec;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderValue};
use http::{request, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::SystemTime;
use tracing::Instrument;

/// Fields of a 304 that never replace the stored ones (RFC 9111 section 3.2).
const NOT_UPDATED_BY_304: &[header::HeaderName] = &[
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::CONTENT_RANGE,
];

struct FillJob {
    key: CacheKey,
    ck: CollapseKey,
    fill: Arc<Fill>,
    origins: Arc<super::origins::OriginPool>,
    upstream: request::Parts,
    /// The client's request as the policy sees it (method, URI, fields).
    client: request::Parts,
    stale: Option<Arc<Object>>,
    /// The purge version applied when the fetch started.
    purge_version: u64,
}

impl Proxy {
    /// Starts the fill task for `ck`, whose leader is the request in `ctx`.
    pub(super) fn spawn_fill(
        self: &Arc<Self>,
        ctx: &Ctx,
        ck: CollapseKey,
        fill: Arc<Fill>,
        stale: Option<Arc<Object>>,
    ) {
        let mut upstream = self.upstream_parts(ctx, true);
        if let Some(old) = &stale {
            if let Some(etag) = old.etag().and_then(|e| HeaderValue::from_str(e).ok()) {
                upstream.headers.insert(header::IF_NONE_MATCH, etag);
            }
            if let Some(lm) = old
                .last_modified()
                .and_then(|e| HeaderValue::from_str(e).ok())
            {
                upstream.headers.insert(header::IF_MODIFIED_SINCE, lm);
            }
        }
        let mut client_req = http::Request::new(()).into_parts().0;
        client_req.method = http::Method::GET;
        client_req.uri = ctx.parts.uri.clone();
        client_req.headers = ctx.parts.headers.clone();
        let job = FillJob {
            key: ctx.key,
            ck,
            fill,
            origins: ctx.site.origins.clone(),
            upstream,
            client: client_req,
            stale,
            purge_version: self.purges.applied(),
        };
        let me = self.clone();
        // The fill outlives any one client; its span is a child of the request that led it.
        let span = if self.traced && !tracing::Span::current().is_none() {
            tracing::info_span!(
                target: "edge_node::fill",
                "fill",
                otel.name = "cache fill",
                cdn.tier = self.tier,
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

    async fn run_fill(&self, job: FillJob) {
        self.stats.record_upstream_request();
        let res = match self
            .upstream
            .send(
                &job.origins,
                job.key.0,
                job.upstream.clone(),
                ProxyBody::empty(),
                true,
                job.purge_version,
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "upstream fetch failed");
                self.stats.record_upstream_error(e.kind());
                job.fill.set_head(FillHead::Failed(e));
                return;
            }
        };
        let now = SystemTime::now();
        if res.status() == StatusCode::NOT_MODIFIED {
            match &job.stale {
                Some(old) => self.refresh(&job, old, res.headers(), now),
                None => job.fill.set_pass(res),
            }
            return;
        }
        let (mut parts, body) = res.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        let content_length = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let decision = decide(&job.client, &parts, now, &self.settings.policy);
        let vary = VarySpec::from_response(&parts.headers);
        let values = vary
            .as_ref()
            .map(|s| s.values(&job.client.headers))
            .unwrap_or_default();
        let stored_headers = StoredHeaders::from_map(&parts.headers, headers::stored);
        let tags: Box<[Box<str>]> = crate::purge::event::response_tags(&parts.headers)
            .into_iter()
            .map(String::into_boxed_str)
            .collect();
        // Too large for memory but of known length: written straight to the disk tier while
        // readers stream it from there.
        let mut spool = match (&decision, content_length, &self.disk) {
            (Decision::Store(f), Some(len), Some(disk)) if len > self.settings.max_object => disk
                .begin(
                    crate::cache::disk::format::Meta {
                        key: job.key,
                        status: parts.status,
                        fresh: *f,
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
        let fresh = match decision {
            Decision::Store(f)
                if content_length.is_none_or(|l| l <= self.settings.max_object)
                    || spool.is_some() =>
            {
                f
            }
            _ => {
                // Not storable (or too large): an older copy is superseded, unless this is an
                // error that stale-if-error may still paper over.
                if job.stale.is_some() && !parts.status.is_server_error() {
                    self.store.remove(&job.key);
                }
                job.fill.set_pass(Response::from_parts(parts, body));
                return;
            }
        };
        if let Some(w) = &spool {
            job.fill.set_spool(w.path().to_path_buf(), w.body_offset());
        }
        let compressible = {
            let h = &parts.headers;
            let get = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok());
            self.settings.compress.applies(
                get(header::CONTENT_TYPE),
                get(header::CONTENT_ENCODING),
                get(header::CACHE_CONTROL),
                content_length.unwrap_or(u64::MAX),
            )
        };
        let mut client_headers = parts.headers;
        headers::for_client(&mut client_headers);
        if compressible {
            // Later hits may be compressed: caches downstream must key on Accept-Encoding.
            super::respond::ensure_vary_accept_encoding(&mut client_headers);
        }
        // Keep the upstream's Cache-Status members for this first answer (RFC 9211 chain).
        job.fill.set_head(FillHead::Storing {
            status: parts.status,
            headers: client_headers,
            content_length,
            vary: vary.clone(),
            values: values.clone(),
            fresh,
        });

        let mut body = body;
        let mut total: u64 = 0;
        let mut keep = true;
        let mut chunks: Vec<Bytes> = Vec::new();
        let body_deadline = self
            .upstream
            .timeouts
            .body_total
            .map(|d| tokio::time::Instant::now() + d);
        let ended = loop {
            let wait = match body_deadline {
                Some(end) => self
                    .upstream
                    .timeouts
                    .body_idle
                    .min(end.saturating_duration_since(tokio::time::Instant::now())),
                None => self.upstream.timeouts.body_idle,
            };
            match tokio::time::timeout(wait, body.frame()).await {
                Err(_) => break Err("timeout"),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %e, "upstream body failed");
                    break Err("truncated");
                }
                Ok(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    total += data.len() as u64;
                    if let Some(w) = spool.as_mut() {
                        match w.write(&data) {
                            Ok(written) => job.fill.spooled(written),
                            Err(e) => {
                                tracing::warn!(error = %e, "writing a large object to disk failed");
                                break Err("disk");
                            }
                        }
                        continue;
                    }
                    if keep && total > self.settings.max_object {
                        // Too large to store after all: stream it with bounded memory, and
                        // let new requests start their own fetch.
                        keep = false;
                        chunks.clear();
                        job.fill.stream_only();
                        self.inflight.remove(&job.ck, &job.fill);
                    }
                    if keep {
                        chunks.push(data.clone());
                    }
                    job.fill.push(data);
                    let paced = tokio::time::timeout(
                        self.upstream.timeouts.body_idle,
                        job.fill.release_and_pace(),
                    )
                    .await;
                    if paced.is_err() {
                        break Err("slow-reader");
                    }
                }
            }
        };
        let ended = match (ended, content_length) {
            (Ok(()), Some(l)) if l != total => Err("truncated"),
            (e, _) => e,
        };
        match ended {
            Ok(()) => {
                if let Some(w) = spool.take() {
                    let (dest, offset) = (w.dest(), w.body_offset());
                    match w.finish() {
                        Ok(()) => {
                            job.fill.set_spool(dest, offset);
                            self.stats.record_store();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "completing a large disk object failed")
                        }
                    }
                    job.fill.finish(FillEnd::Complete);
                    return;
                }
                job.fill.finish(FillEnd::Complete);
                if keep {
                    let body = concat(&chunks, total);
                    let encoded = if compressible {
                        self.encode(&body).await
                    } else {
                        Box::default()
                    };
                    let obj = Arc::new(Object {
                        status: parts.status,
                        headers: stored_headers,
                        body,
                        fresh,
                        encoded,
                        tags,
                        purge_version: job.purge_version,
                    });
                    if let Some(d) = &self.disk {
                        d.write(job.key, vary.clone(), values.clone(), obj.clone());
                    }
                    self.store.insert(job.key, vary, values, obj);
                    self.stats.record_store();
                }
            }
            Err(kind) => {
                tracing::warn!(
                    kind,
                    received = total,
                    "upstream body ended early; not stored"
                );
                self.stats.record_upstream_error(kind);
                job.fill.finish(FillEnd::Truncated);
            }
        }
    }

    /// A 304 refreshed a stale object: merge the new fields, recompute freshness, store.
    fn refresh(
        &self,
        job: &FillJob,
        old: &Arc<Object>,
        fresh_headers: &HeaderMap,
        now: SystemTime,
    ) {
        let mut merged = old.headers.to_map();
        let mut update = fresh_headers.clone();
        headers::strip_hop_by_hop(&mut update);
        for name in update.keys() {
            if NOT_UPDATED_BY_304.contains(name) || !headers::stored(name) {
                continue;
            }
            merged.remove(name);
            for v in update.get_all(name) {
                merged.append(name.clone(), v.clone());
            }
        }
        let mut res = Response::new(()).into_parts().0;
        res.status = old.status;
        res.headers = merged;
        let obj = match decide(&job.client, &res, now, &self.settings.policy) {
            Decision::Store(fresh) => {
                let obj = Arc::new(Object {
                    status: old.status,
                    headers: StoredHeaders::from_map(&res.headers, headers::stored),
                    body: old.body.clone(),
                    fresh,
                    encoded: old.encoded.clone(),
                    tags: old.tags.clone(),
                    purge_version: job.purge_version,
                });
                let vary = VarySpec::from_response(&res.headers);
                let values = vary
                    .as_ref()
                    .map(|s| s.values(&job.client.headers))
                    .unwrap_or_default();
                if let Some(d) = &self.disk {
                    d.write(job.key, vary.clone(), values.clone(), obj.clone());
                }
                self.store.insert(job.key, vary, values, obj.clone());
                obj
            }
            Decision::Pass(_) => {
                self.store.remove(&job.key);
                let mut fresh = old.fresh;
                fresh.fresh_until_ms = unix_ms(now);
                Arc::new(Object {
                    status: old.status,
                    headers: StoredHeaders::from_map(&res.headers, headers::stored),
                    body: old.body.clone(),
                    fresh,
                    encoded: old.encoded.clone(),
                    tags: old.tags.clone(),
                    purge_version: job.purge_version,
                })
            }
        };
        self.stats.record_revalidated();
        job.fill.set_head(FillHead::Refreshed(obj));
    }
}

impl Proxy {
    /// The configured compressed forms of `body`, made off the async workers; forms that do
    /// not save at least 10% are dropped.
    async fn encode(&self, body: &Bytes) -> Box<[(crate::cache::compress::Coding, Bytes)]> {
        let codings = self.settings.compress.codings.clone();
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
    let mut b = BytesMut::with_capacity(total as usize);
    for c in chunks {
        b.extend_from_slice(c);
    }
    b.freeze()
}
