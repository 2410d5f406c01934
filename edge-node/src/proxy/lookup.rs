//! GET and HEAD: the `before_lookup` hook, then the cache's verdict. Fresh: served. Within
//! stale-while-revalidate: served, and one background refresh started. Stale otherwise, or a
//! miss: on to `miss.rs`, the stale object kept for revalidation and stale-if-error. Stored
//! parts (206) and range misses go to `partial.rs`.

use super::ctx::Ctx;
use super::fetch::FillStart;
use super::miss::Recollapse;
use super::respond::BodySrc;
use super::{Answer, Proxy};
use crate::cache::object::Object;
use crate::cache::{Lookup, Request, Stale};
use crate::hooks::Proceed;
use crate::metrics::Outcome;
use std::sync::Arc;

impl Proxy {
    /// The cache path of a GET or HEAD. Every way on from here but a hit is boxed: hyper keeps
    /// a connection's request future in place and moves each new one into it, so this
    /// future's size is copied on every request and held by every connection (14,144 bytes
    /// with the miss path inline, 3,728 boxed: docs/benchmarks.md, "Memory per idle
    /// connection").
    pub(super) async fn lookup(self: &Arc<Self>, ctx: Ctx) -> Answer {
        let mut proceed = if ctx.bypassed() {
            Proceed::Bypass("rule-bypass")
        } else {
            self.hooks.before_lookup(&ctx.info())
        };
        while let Proceed::Wait(later) = proceed {
            proceed = later.await;
        }
        let stale_while_revalidate = match proceed {
            Proceed::Bypass(detail) => {
                if let Some(limited) = self.over_limit(&ctx, true) {
                    return limited;
                }
                return Box::pin(self.pass(ctx, &format!("fwd=request; detail={detail}"))).await;
            }
            Proceed::CacheFresh => false,
            _ => true,
        };
        let now = crate::cache::clock::now_ms();
        let req = Request {
            key: &ctx.key,
            headers: &ctx.parts.headers,
            host: &ctx.host,
            path: ctx.path(),
        };
        let verdict = self.cache.lookup(req, now).await;
        // What is not answered fresh from the cache goes upstream: the origin's limiters.
        if !matches!(verdict, Lookup::Fresh { .. } | Lookup::FreshLarge(_)) {
            if let Some(limited) = self.over_limit(&ctx, true) {
                return limited;
            }
        }
        match verdict {
            Lookup::Fresh { object, variant } if object.is_partial() => {
                Box::pin(self.partial_hit(ctx, object, variant)).await
            }
            // A stale part is not revalidated: it is fetched afresh, and replaced.
            Lookup::Stale {
                object, variant, ..
            } if object.is_partial() => Box::pin(self.range_or_miss(ctx, variant)).await,
            Lookup::Fresh { object, .. } => {
                let ttl = (object.fresh.fresh_until_ms - now) / 1000;
                let reply = self.reply_with(&ctx, self.status_hit(ttl, ""));
                let (res, n) = reply.object(&object, object.fresh.age_secs(now));
                Answer::new(res, Outcome::Hit, n)
            }
            Lookup::FreshLarge(entry) => {
                let m = &entry.meta;
                let ttl = m.fresh.fresh_until_ms.saturating_sub(now) / 1000;
                let reply = self.reply_with(&ctx, self.status_hit(ttl, "; detail=disk"));
                let (res, n) = reply.serve(
                    m.status,
                    m.headers.to_map(),
                    BodySrc::Disk(entry.clone()),
                    Some(entry.header.body_len),
                    m.fresh.age_secs(now),
                );
                Answer::new(res, Outcome::Hit, n)
            }
            Lookup::Stale {
                object,
                variant,
                why: Stale::WhileRevalidate,
            } if stale_while_revalidate => {
                self.refresh_in_background(&ctx, variant, object.clone());
                // RFC 9211 ttl: an integer, negative once stale (never "-0").
                let ttl = ttl_secs(object.fresh.fresh_until_ms, now);
                let reply = self.reply(
                    &ctx,
                    &format!("hit; ttl={ttl}; detail=stale-while-revalidate"),
                );
                let (res, n) = reply.object(&object, object.fresh.age_secs(now));
                Answer::new(res, Outcome::Stale, n)
            }
            Lookup::Stale {
                object, variant, ..
            } => Box::pin(self.miss(ctx, Some(object), variant, Recollapse::Allowed)).await,
            Lookup::Miss { variant } => Box::pin(self.range_or_miss(ctx, variant)).await,
        }
    }

    /// A miss: a range asked of the next tier as it is (`partial.rs`) unless a fill of the
    /// whole is under way to join; otherwise a fill of the whole.
    async fn range_or_miss(self: &Arc<Self>, ctx: Ctx, variant: u64) -> Answer {
        if super::partial::forwardable_range(&ctx).is_some()
            && !self.inflight.contains(&(ctx.key, variant))
        {
            return self.range_miss(ctx, variant, "fwd=miss").await;
        }
        self.miss(ctx, None, variant, Recollapse::Allowed).await
    }

    /// Starts a background refresh of a stale-while-revalidate object, unless one is running.
    fn refresh_in_background(self: &Arc<Self>, ctx: &Ctx, variant: u64, obj: Arc<Object>) {
        let ck = (ctx.key, variant);
        if let super::collapse::Joined::Leader(fill) = self.inflight.join(ck) {
            self.spawn_fill(ctx, ck, fill, Some(obj), FillStart::Send(None));
        }
    }
}

/// Whole seconds until `fresh_until_ms`, rounded down, so negative as soon as it is stale:
/// the `ttl` of `Cache-Status` (RFC 9211, an integer, never `-0`).
fn ttl_secs(fresh_until_ms: u64, now_ms: u64) -> i64 {
    let diff = i128::from(fresh_until_ms) - i128::from(now_ms);
    i64::try_from(diff.div_euclid(1000)).unwrap_or(0)
}
