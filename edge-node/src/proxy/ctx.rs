//! One routed request as the later phases see it, and the request it becomes upstream.

use super::headers::UpstreamHeaders;
use super::sites::Site;
use super::{ClientInfo, Proxy};
use crate::cache::key::{normalize_host, normalize_query, CacheKey};
use crate::hooks::RequestInfo;
use crate::interim::InterimSender;
use http::{request, Method, Request};
use std::sync::Arc;

/// A request after routing: its site, normalised host, cache key and upstream target.
pub(super) struct Ctx {
    pub parts: request::Parts,
    pub site: Arc<Site>,
    pub host: String,
    /// The path in its normal form, when that differs from the request's (`cache/url.rs`).
    pub normal_path: Option<String>,
    pub key: CacheKey,
    /// Path and normalised query sent upstream.
    pub upstream_pq: String,
    pub client: ClientInfo,
    /// The site's rules that matched it (`rules/`).
    pub rules: crate::rules::Matched,
}

/// What a request sent upstream is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A cache fill: always a GET of the whole object (client validators and Range removed).
    Fill,
    /// The client's own request, forwarded as it is (a pass, or a method the cache does
    /// not answer).
    Forward,
}

impl Ctx {
    /// The cache key a `Location`/`Content-Location` value refers to, if on the same host.
    pub(super) fn key_for_reference(&self, reference: &str) -> Option<CacheKey> {
        let uri: http::Uri = reference.parse().ok()?;
        if let Some(auth) = uri.authority() {
            if normalize_host(auth.as_str())? != self.host {
                return None;
            }
        }
        let path = crate::cache::url::normalize_path(uri.path());
        if !path.starts_with('/') {
            return None;
        }
        let q = normalize_query(uri.query(), self.site.query, &self.site.drop_params);
        Some(CacheKey::new(
            self.client.scheme,
            &self.host,
            &path,
            q.as_deref(),
        ))
    }

    /// The request's path in the cache's normal form: what the key, the upstream request and
    /// purges use.
    pub(super) fn path(&self) -> &str {
        self.normal_path
            .as_deref()
            .unwrap_or_else(|| self.parts.uri.path())
    }

    /// What hooks see of this request.
    pub(super) fn info(&self) -> RequestInfo<'_> {
        RequestInfo {
            method: &self.parts.method,
            uri: &self.parts.uri,
            headers: &self.parts.headers,
            host: &self.host,
            site: &self.site.name,
            client: self.client.addr,
        }
    }

    /// A channel for the 1xx responses of what this request sends upstream, when its client
    /// can take them (HTTP/1.1 on one of the node's listeners).
    pub(super) async fn interim(&self) -> Option<InterimSender> {
        match &self.client.interim {
            Some(i) => i.sender(self.parts.version).await,
            None => None,
        }
    }

    /// The origins it goes to: a matched rule's pool, else its site's.
    pub(super) fn origins(&self) -> &Arc<crate::upstream::origins::OriginPool> {
        self.site
            .rules
            .last(self.rules, |a| a.origins.as_ref())
            .unwrap_or(&self.site.origins)
    }

    /// Whether a matched rule sends it straight upstream, past the cache.
    pub(super) fn bypassed(&self) -> bool {
        self.site.rules.any(self.rules, |a| a.bypass)
    }

    /// The names a matched rule adds to the `Vary` of what is stored for it: the headers it
    /// keys on, and the node's key field for cookie values and the device class.
    pub(super) fn key_vary(&self) -> Vec<http::HeaderName> {
        let mut out: Vec<http::HeaderName> = Vec::new();
        if !self
            .site
            .rules
            .any(self.rules, crate::rules::actions::Actions::keys)
        {
            return out;
        }
        for r in self.site.rules.matched(self.rules) {
            out.extend(r.actions.key_headers.iter().cloned());
        }
        if self
            .parts
            .headers
            .contains_key(&crate::rules::key::KEY_FIELD)
        {
            out.push(crate::rules::key::KEY_FIELD.clone());
        }
        out
    }

    /// What a matched rule says of compression: `Some(false)` never, `Some(true)` whatever
    /// the media type.
    pub(super) fn compress(&self) -> Option<bool> {
        self.site.rules.last(self.rules, |a| a.compress)
    }

    /// Whether the cache may answer it (GET and HEAD).
    pub(super) fn is_cacheable_method(&self) -> bool {
        self.parts.method == Method::GET || self.parts.method == Method::HEAD
    }
}

impl Proxy {
    /// The head of the request sent upstream for `ctx`: the fields that may cross (see
    /// `headers.rs`), then whatever the hooks add.
    pub(super) fn upstream_parts(&self, ctx: &Ctx, purpose: Purpose) -> request::Parts {
        let h = UpstreamHeaders {
            host: &ctx.host,
            client_ip: ctx.client.addr.ip(),
            scheme: ctx.client.scheme,
            fill: purpose == Purpose::Fill,
            via: &self.via,
        };
        let method = match purpose {
            Purpose::Fill => Method::GET,
            Purpose::Forward => ctx.parts.method.clone(),
        };
        let mut parts = match Request::builder()
            .method(method)
            .uri(ctx.upstream_pq.as_str())
            .body(())
        {
            Ok(r) => r.into_parts().0,
            Err(_) => Request::new(()).into_parts().0,
        };
        parts.headers = h.build(&ctx.parts.headers);
        edit_upstream(ctx, &mut parts.headers);
        self.hooks.upstream_request(&mut parts);
        parts
    }

    /// [`Proxy::upstream_parts`], with the 1xx responses it gets relayed to the client.
    pub(super) async fn upstream_parts_relaying(
        &self,
        ctx: &Ctx,
        purpose: Purpose,
    ) -> request::Parts {
        relaying_interim(self.upstream_parts(ctx, purpose), ctx.interim().await)
    }
}

/// The request edits of the matched rules, in order, on what goes upstream.
fn edit_upstream(ctx: &Ctx, headers: &mut http::HeaderMap) {
    if ctx.rules.is_empty() {
        return;
    }
    let rules = &ctx.site.rules;
    for r in rules.matched(ctx.rules) {
        r.actions.request.apply(headers);
    }
    if rules.any(ctx.rules, |a| a.key_device) {
        headers.insert(
            crate::rules::key::DEVICE_FIELD.clone(),
            http::HeaderValue::from_static(crate::rules::key::device_class(&ctx.parts.headers)),
        );
    }
}

/// `parts`, with its 1xx responses sent to `interim` (hyper calls back as they arrive; HTTP/1
/// upstreams only). They are never stored, and never mixed into the final response.
pub(super) fn relaying_interim(
    parts: request::Parts,
    interim: Option<InterimSender>,
) -> request::Parts {
    let Some(sender) = interim else {
        return parts;
    };
    let mut req = Request::from_parts(parts, ());
    hyper::ext::on_informational(&mut req, move |res| {
        sender.send(res.status(), res.headers())
    });
    req.into_parts().0
}
