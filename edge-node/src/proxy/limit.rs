//! The rate limits of a request's site (`limits.rs`): checked after admission for every
//! request (limiters counting all requests), and again where a request would go upstream
//! (limiters with `upstream_only`). Over a limit: 429 with `Retry-After`, nothing forwarded.

use super::ctx::Ctx;
use super::respond::plain;
use super::{Answer, Proxy};
use crate::limits::Ask;
use crate::metrics::Outcome;
use http::{HeaderValue, StatusCode};

impl Proxy {
    /// The 429 for `ctx` when one of its site's limiters with `upstream_only == upstream`
    /// refuses it; `None` when it may go on.
    pub(super) fn over_limit(&self, ctx: &Ctx, upstream: bool) -> Option<Answer> {
        let site = &ctx.site;
        let rule_limits = site
            .rules
            .matched(ctx.rules)
            .flat_map(|r| r.actions.limits.iter());
        if site.limits.is_empty() && ctx.rules.is_empty() {
            return None;
        }
        let ask = Ask {
            client: ctx.client.addr.ip(),
            site: &site.name,
            path: ctx.path(),
            headers: &ctx.parts.headers,
        };
        let all = site.limits.iter().chain(rule_limits);
        for l in all.filter(|l| l.upstream_only == upstream) {
            if let Err(wait) = l.check(&ask) {
                let st = self.status_value("fwd=request; detail=rate-limit");
                let mut res = plain(
                    StatusCode::TOO_MANY_REQUESTS,
                    st,
                    &format!("outpost: too many requests (limit {})", l.name),
                );
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                if let Ok(v) = HeaderValue::from_str(&secs.max(1).to_string()) {
                    res.headers_mut().insert(http::header::RETRY_AFTER, v);
                }
                return Some(Answer::new(res, Outcome::Error, None));
            }
        }
        None
    }
}
