//! The first phase: the Host (or `:authority`) to a configured site (an unknown host is refused:
//! the node is not an open proxy), the admission hook, the method, and the cache key built from
//! scheme, host, path and the site's normalised query. Then the request goes to the cache path
//! (GET, HEAD) or is forwarded (everything else).

use super::ctx::Ctx;
use super::respond::plain;
use super::{Answer, ClientInfo, Proxy};
use crate::body::{BoxError, ProxyBody};
use crate::cache::key::{normalize_host, normalize_query, CacheKey};
use crate::cache::url::normalize_path;
use crate::metrics::Outcome;
use crate::rules::actions::Actions;
use crate::rules::matcher::Subject;
use crate::rules::Matched;
use http::header;
use http::{Method, Request, StatusCode};
use std::borrow::Cow;
use std::sync::Arc;

/// Why a request matches no site.
enum Unrouted {
    /// No Host, or not a host name.
    BadHost,
    /// No site answers for this host (the node is not an open proxy).
    UnknownHost(String),
}

impl Proxy {
    /// Answers one request, whatever happens to it.
    pub(super) async fn answer<B>(self: &Arc<Self>, req: Request<B>, client: ClientInfo) -> Answer
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = req.into_parts();
        if let Some(answer) = self.acme_challenge(&parts) {
            return answer;
        }
        let ctx = match self.route(parts, client) {
            Ok(ctx) => ctx,
            Err(unrouted) => return self.refuse(unrouted),
        };
        let site = ctx.site.index;
        let matched = ctx.rules;
        // The site outlives `ctx` only for the response edits of matched rules.
        let ruled = (!matched.is_empty()).then(|| ctx.site.clone());
        let mut answer = if !ctx.site.admits(ctx.client.addr.ip()) {
            let st = self.status_value("fwd=request; detail=denied");
            let msg = "outpost: this site does not answer your network";
            Answer::new(plain(StatusCode::FORBIDDEN, st, msg), Outcome::Error, None)
        } else if let Err(r) = self.hooks.admit(&ctx.info()) {
            let st = self.status_value(&format!("fwd=request; detail={}", r.detail));
            Answer::new(plain(r.status, st, r.message), Outcome::Error, None)
        } else if let Some(answer) = (!matched.is_empty())
            .then(|| self.rule_answer(&ctx))
            .flatten()
        {
            // Blocked or redirected: never reaches a limiter's count or the origin.
            answer
        } else if let Some(limited) = self.over_limit(&ctx, false).or_else(|| {
            (!ctx.is_cacheable_method())
                .then(|| self.over_limit(&ctx, true))
                .flatten()
        }) {
            // Every request counts against the site's limiters; one that is not a GET or
            // HEAD goes upstream, so the origin's limiters count it too.
            limited
        } else if ctx.parts.method.as_str() == "PURGE" {
            drop(body);
            Box::pin(self.purge_method(&ctx)).await
        } else if matches!(ctx.parts.method, Method::CONNECT | Method::TRACE) {
            let st = self.status_value("fwd=method");
            Answer::new(
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    st,
                    "outpost: method not allowed",
                ),
                Outcome::Error,
                None,
            )
        } else if ctx.is_cacheable_method() {
            drop(body);
            self.lookup(ctx).await
        } else if let Some(too_large) = self.body_too_large(&ctx) {
            too_large
        } else {
            // Boxed, as the lookup's ways upstream are (`lookup.rs`): this future stays small.
            Box::pin(async {
                match super::request_body::prepare(&ctx, body).await {
                    Some((body, broke)) => self.forward(ctx, body, &broke).await,
                    None => self.bad_request_body(),
                }
            })
            .await
        };
        if let Some(s) = ruled {
            super::rules::edit_response(&s.rules, matched, &mut answer.res, answer.outcome);
        }
        answer.site = Some(site);
        answer
    }

    /// 413 for a request whose declared body (`Content-Length`) is larger than its site takes.
    fn body_too_large(&self, ctx: &Ctx) -> Option<Answer> {
        let max = ctx.site.max_body?;
        let declared = ctx
            .parts
            .headers
            .get(header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse::<u64>()
            .ok()?;
        if declared <= max {
            return None;
        }
        let st = self.status_value("fwd=request; detail=body-too-large");
        let msg = format!("outpost: the request body is larger than this site takes ({max} bytes)");
        Some(Answer::new(
            plain(StatusCode::PAYLOAD_TOO_LARGE, st, &msg),
            Outcome::Error,
            None,
        ))
    }

    /// The answer to a request that matches no site.
    fn refuse(&self, why: Unrouted) -> Answer {
        let (status, detail, msg) = match why {
            Unrouted::BadHost => (
                StatusCode::BAD_REQUEST,
                "bad-host",
                "outpost: missing or invalid Host".to_string(),
            ),
            Unrouted::UnknownHost(host) => (
                StatusCode::MISDIRECTED_REQUEST,
                "unknown-host",
                format!("outpost: no site is configured for host {host}"),
            ),
        };
        let st = self.status_value(&format!("fwd=request; detail={detail}"));
        Answer::new(plain(status, st, &msg), Outcome::Error, None)
    }

    /// The site, host and key of a request, or why it has none.
    fn route(&self, parts: http::request::Parts, client: ClientInfo) -> Result<Ctx, Unrouted> {
        let mut host_fields = parts.headers.get_all(header::HOST).iter();
        let host_field = host_fields.next();
        // Two Host fields: which one is meant? (RFC 9112 section 3.2: 400.)
        if host_fields.next().is_some() {
            return Err(Unrouted::BadHost);
        }
        let raw_host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| host_field.and_then(|v| v.to_str().ok()));
        let Some(host) = raw_host.and_then(normalize_host) else {
            return Err(Unrouted::BadHost);
        };
        let Some(site) = self.sites.find(&host).cloned() else {
            return Err(Unrouted::UnknownHost(host));
        };
        let mut parts = parts;
        // The node's own key field: never taken from a client (it would pick another
        // client's copy), whatever the site's rules are now: copies stored under rules a
        // reload has since removed are still there.
        parts.headers.remove(&crate::rules::key::KEY_FIELD);
        let path = normalize_path(parts.uri.path());
        let rules = if site.rules.is_empty() {
            Matched::default()
        } else {
            let subject = Subject {
                method: &parts.method,
                host: &host,
                path: &path,
                query: parts.uri.query(),
                headers: &parts.headers,
                client: client.addr.ip(),
                geo: site.rules.geo(),
            };
            site.rules.evaluate(&subject, client.scheme == "https")
        };
        let query = if site.rules.any(rules, Actions::queries) {
            rule_query(&site, rules, parts.uri.query()).map(Cow::Owned)
        } else {
            normalize_query(parts.uri.query(), site.query, &site.drop_params)
        };
        let key = CacheKey::new(client.scheme, &host, &path, query.as_deref());
        let upstream_pq = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let normal_path = match path {
            Cow::Owned(p) => Some(p),
            Cow::Borrowed(_) => None,
        };
        if site.rules.any(rules, Actions::keys) {
            let cookies: Vec<String> = site
                .rules
                .matched(rules)
                .flat_map(|r| r.actions.key_cookies.iter().cloned())
                .collect();
            let device = site.rules.any(rules, |a| a.key_device);
            if let Some(v) = crate::rules::key::key_value(&parts.headers, &cookies, device) {
                parts
                    .headers
                    .insert(crate::rules::key::KEY_FIELD.clone(), v);
            }
        }
        if self.traced {
            let span = tracing::Span::current();
            if !span.is_none() {
                span.record("cdn.cache.key", format!("{:032x}", key.0));
            }
        }
        Ok(Ctx {
            parts,
            site,
            host,
            normal_path,
            key,
            upstream_pq,
            client,
            rules,
        })
    }
}

impl Proxy {
    /// The answer to an ACME HTTP-01 validation (RFC 8555 8.3) of an order under way: the key
    /// authorization as it is, on any Host. Anything else under the path goes on as usual.
    fn acme_challenge(&self, parts: &http::request::Parts) -> Option<Answer> {
        let path = parts.uri.path();
        if parts.method != Method::GET || !path.starts_with(crate::acme::challenges::PATH_PREFIX) {
            return None;
        }
        let key_authorization = self.challenges.answer(path)?;
        let len = key_authorization.len() as u64;
        let res = http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/octet-stream")
            .header(http::header::CACHE_CONTROL, "no-store")
            .header(
                super::respond::CACHE_STATUS.clone(),
                self.status_value("fwd=request; detail=acme-challenge"),
            )
            .body(ProxyBody::full(key_authorization))
            .ok()?;
        Some(Answer::new(res, Outcome::Pass, Some(len)))
    }
}

/// The query of a request some of whose rules change it: their mode (the last that sets one)
/// or the site's; the site's dropped parameters and every rule's `query_deny`; when rules
/// give `query_allow`, only those parameters.
fn rule_query(site: &super::sites::Site, m: Matched, query: Option<&str>) -> Option<String> {
    let mode = site.rules.last(m, |a| a.query).unwrap_or(site.query);
    let mut deny = site.drop_params.clone();
    let mut allow: Vec<&String> = Vec::new();
    for r in site.rules.matched(m) {
        deny.extend(r.actions.query_deny.iter().cloned());
        allow.extend(r.actions.query_allow.iter());
    }
    let named = |name: &str, list: &String| match list.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == list,
    };
    let allowed: Option<String> = match query {
        Some(q) if !allow.is_empty() => Some(
            q.split('&')
                .filter(|p| {
                    let name = p.split('=').next().unwrap_or("");
                    allow.iter().any(|a| named(name, a))
                })
                .collect::<Vec<_>>()
                .join("&"),
        ),
        _ => None,
    };
    let q = allowed.as_deref().or(query);
    normalize_query(q, mode, &deny).map(Cow::into_owned)
}
