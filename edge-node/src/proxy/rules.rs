//! The site's rules on the request path (`rules/` evaluates them): the answers rules give
//! themselves (redirect, fixed response), and the edits they make to what goes upstream and
//! to what the client gets. Where a rule changes caching (bypass, TTLs, key, query, origins,
//! compression) the phase concerned asks [`Ctx`] (`ctx.rs`).

use super::ctx::Ctx;
use super::respond::{plain, CACHE_STATUS};
use super::{Answer, Proxy};
use crate::body::ProxyBody;
use crate::metrics::Outcome;
use crate::rules::actions::{Fixed, Redirect};
use crate::rules::{key, Matched, RuleSet};
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

impl Proxy {
    /// The answer a matched rule gives itself (redirect, fixed response), if one does.
    pub(super) fn rule_answer(&self, ctx: &Ctx) -> Option<Answer> {
        let rules = &ctx.site.rules;
        let rule = rules.matched(ctx.rules).find(|r| r.actions.answers())?;
        let a = &rule.actions;
        if let Some(r) = &a.redirect {
            return Some(self.redirect(ctx, r, &rule.cond));
        }
        a.respond.as_ref().map(|f| self.fixed(f))
    }

    fn redirect(
        &self,
        ctx: &Ctx,
        r: &Redirect,
        cond: &crate::rules::matcher::Conditions,
    ) -> Answer {
        let query = ctx.parts.uri.query();
        let location = match &r.to {
            Some(t) => {
                let caps = cond.regex.as_ref().and_then(|re| re.captures(ctx.path()));
                t.expand(caps.as_ref(), &ctx.host, ctx.path(), query)
            }
            None => {
                let pq = ctx.parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                format!("https://{}{pq}", ctx.host)
            }
        };
        let st = self.status_value("fwd=request; detail=rule-redirect");
        let Ok(loc) = HeaderValue::from_str(&location) else {
            // A capture that cannot be a field value (the path held bytes that cannot).
            return Answer::new(
                plain(
                    StatusCode::BAD_REQUEST,
                    st,
                    "outpost: cannot redirect this URL",
                ),
                Outcome::Error,
                None,
            );
        };
        let mut res = plain(r.status, st, "");
        res.headers_mut().insert(header::LOCATION, loc);
        Answer::new(res, Outcome::Pass, Some(0))
    }

    fn fixed(&self, f: &Fixed) -> Answer {
        let len = f.body.len() as u64;
        let mut res = Response::new(ProxyBody::full(f.body.clone()));
        *res.status_mut() = f.status;
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, f.content_type.clone());
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            CACHE_STATUS.clone(),
            self.status_value("fwd=request; detail=rule-response"),
        );
        Answer::new(res, Outcome::Pass, Some(len))
    }
}

/// What the matched rules change in the answer to the client: `Vary` for the headers they
/// key on, the client TTL (not on the node's own errors), then their response edits.
pub(super) fn edit_response(
    rules: &RuleSet,
    m: Matched,
    res: &mut Response<ProxyBody>,
    outcome: Outcome,
) {
    if m.is_empty() {
        return;
    }
    let h = res.headers_mut();
    for r in rules.matched(m) {
        key::add_vary(h, &r.actions.key_headers);
    }
    if outcome != Outcome::Error {
        if let Some(cc) = rules.last(m, |a| a.client_cc.clone()) {
            h.insert(header::CACHE_CONTROL, cc);
            h.remove(header::EXPIRES);
        }
    }
    for r in rules.matched(m) {
        r.actions.response.apply(h);
    }
}
