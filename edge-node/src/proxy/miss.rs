//! A miss, or a stale object to revalidate: the request joins the fill already under way for
//! its key, or leads a new one (started in `fetch.rs`, independent of this client). Everyone
//! waits for the head, bounded by `collapse_timeout`, then answers from what the fill learned:
//! a storable response streamed from the fill, a refreshed object, a pass-through, or a
//! failure (answered with the stale object where stale-if-error allows).

use super::collapse::{Fill, FillHead, Joined, StoringHead};
use super::ctx::Ctx;
use super::fetch::FillStart;
use super::respond::BodySrc;
use super::{Answer, BoxFuture, Proxy};
use crate::cache::object::Object;
use crate::cache::vary::values_hash;
use crate::metrics::Outcome;
use http::Response;
use hyper::body::Incoming;
use std::sync::Arc;

/// Whether a request whose Vary values differ from the fill it joined may join another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recollapse {
    /// Yes: the first guess of its variant was wrong (the URL's Vary was not known yet).
    Allowed,
    /// No: it did so once already; it fetches for itself.
    Done,
}

/// A request's part in its fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// It started the fill: a pass-through response is its to relay.
    Leader,
    /// It joined a fill another request started.
    Follower,
}

impl Proxy {
    /// Joins the fill for this key, or leads a new one; `stale` is the object to revalidate.
    pub(super) fn miss(
        self: &Arc<Self>,
        ctx: Ctx,
        stale: Option<Arc<Object>>,
        variant: u64,
        recollapse: Recollapse,
    ) -> BoxFuture<'_, Answer> {
        Box::pin(self.fill_and_answer(ctx, stale, variant, recollapse, None))
    }

    /// Leads the fill for this key with `res`, a whole response already received (the answer
    /// to a range request, `partial.rs`), or joins the fill under way if there is one.
    pub(super) async fn miss_with(
        self: &Arc<Self>,
        ctx: Ctx,
        variant: u64,
        res: Response<Incoming>,
    ) -> Answer {
        self.fill_and_answer(ctx, None, variant, Recollapse::Allowed, Some(res))
            .await
    }

    async fn fill_and_answer(
        self: &Arc<Self>,
        ctx: Ctx,
        stale: Option<Arc<Object>>,
        variant: u64,
        recollapse: Recollapse,
        sent: Option<Response<Incoming>>,
    ) -> Answer {
        let ck = (ctx.key, variant);
        let (fill, part) = match self.inflight.join(ck) {
            Joined::Leader(fill) => {
                let start = match sent {
                    Some(res) => FillStart::Sent(res),
                    None => FillStart::Send(ctx.interim().await),
                };
                self.spawn_fill(&ctx, ck, fill.clone(), stale.clone(), start);
                (fill, Part::Leader)
            }
            Joined::Follower(fill) => {
                self.metrics.collapsed();
                (fill, Part::Follower)
            }
        };
        let Some(head) = fill.wait_head(self.settings.collapse_timeout).await else {
            return self.pass(ctx, "detail=collapse-timeout").await;
        };
        self.answer_from_head(ctx, &fill, &head, stale, part, recollapse)
            .await
    }

    /// The answer to a request from the head its fill published.
    async fn answer_from_head(
        self: &Arc<Self>,
        ctx: Ctx,
        fill: &Arc<Fill>,
        head: &FillHead,
        stale: Option<Arc<Object>>,
        part: Part,
        recollapse: Recollapse,
    ) -> Answer {
        let fwd = if stale.is_some() {
            "fwd=stale"
        } else {
            "fwd=miss"
        };
        let collapsed = match part {
            Part::Leader => "",
            Part::Follower => "; collapsed",
        };
        match head {
            FillHead::Storing(_) if fill.is_streaming() => self.pass(ctx, fwd).await,
            // A part (the next tier answered 206 without being asked for a range) is its
            // leader's alone: another request may have asked for something else.
            FillHead::Storing(head)
                if head.status == http::StatusCode::PARTIAL_CONTENT && part == Part::Follower =>
            {
                self.pass(ctx, fwd).await
            }
            FillHead::Storing(head) => {
                if let Some(spec) = &head.vary {
                    let mine = spec.values(&ctx.parts.headers);
                    if mine != head.values {
                        if recollapse == Recollapse::Allowed {
                            let v = values_hash(&mine);
                            return self.miss(ctx, None, v, Recollapse::Done).await;
                        }
                        return self.pass(ctx, "fwd=vary-miss").await;
                    }
                }
                let params = format!(
                    "{fwd}; fwd-status={}; stored{collapsed}",
                    head.status.as_u16()
                );
                self.stream_from_fill(&ctx, fill, head, &params)
            }
            FillHead::Refreshed(obj) => {
                let now = crate::cache::clock::now_ms();
                let reply = self.reply(&ctx, &format!("fwd=stale; fwd-status=304{collapsed}"));
                let (res, n) = reply.object(obj, obj.fresh.age_secs(now));
                Answer::new(res, Outcome::Miss, n)
            }
            FillHead::Pass { status } => {
                if status.is_server_error() {
                    let why = format!("fwd-status={}", status.as_u16());
                    if let Some(a) = self.stale_on_error(&ctx, stale.as_deref(), &why) {
                        return a;
                    }
                }
                if part == Part::Leader {
                    if let Some(res) = fill.take_pass() {
                        let p = format!("{fwd}; fwd-status={}", status.as_u16());
                        return self.relay(res, &ctx, &p);
                    }
                }
                self.pass(ctx, fwd).await
            }
            FillHead::Failed(e) => {
                let stand_in = if e.is_unreachable() {
                    self.stale_when_unreachable(&ctx, stale.as_deref(), e)
                } else {
                    let why = format!("detail={}", e.kind());
                    self.stale_on_error(&ctx, stale.as_deref(), &why)
                };
                stand_in.unwrap_or_else(|| self.upstream_failed(&ctx, fwd, e))
            }
        }
    }

    /// A storable response streamed to this client from the fill as it arrives.
    fn stream_from_fill(
        &self,
        ctx: &Ctx,
        fill: &Arc<Fill>,
        head: &StoringHead,
        params: &str,
    ) -> Answer {
        let reply = self.reply(ctx, params);
        let (res, n) = reply.serve(
            head.status,
            head.headers.clone(),
            BodySrc::Fill(fill.clone()),
            head.content_length,
            head.fresh.age_secs(crate::cache::clock::now_ms()),
        );
        Answer::new(res, Outcome::Miss, n)
    }
}
