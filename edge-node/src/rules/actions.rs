//! A rule's actions, compiled: header edits, redirect targets, fixed responses, and the
//! settings the request path reads (TTLs, bypass, key additions, query, origins, compression,
//! limiters). Pure, but for the origin pool and limiters, which the site hands in.

use super::config::{HeaderEdits, RedirectConfig, RespondConfig, RuleConfig, TtlMode};
use crate::cache::key::QueryMode;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::sync::Arc;
use std::time::Duration;

/// Header edits: removals, then sets (replacing), then appends (another line).
#[derive(Debug, Default)]
pub(crate) struct Edits {
    remove: Vec<HeaderName>,
    set: Vec<(HeaderName, HeaderValue)>,
    append: Vec<(HeaderName, HeaderValue)>,
}

impl Edits {
    /// The problems of `e` as (key, message).
    pub(crate) fn problems(e: &HeaderEdits) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (key, map) in [("set", &e.set), ("append", &e.append)] {
            for (n, v) in map {
                if HeaderName::from_bytes(n.as_bytes()).is_err() {
                    out.push((key.to_string(), format!("{n:?} is not a header name")));
                }
                if HeaderValue::from_str(v).is_err() {
                    out.push((format!("{key}.{n}"), "not a valid header value".to_string()));
                }
            }
        }
        for (i, n) in e.remove.iter().enumerate() {
            if HeaderName::from_bytes(n.as_bytes()).is_err() {
                out.push((
                    format!("remove[{i}]"),
                    format!("{n:?} is not a header name"),
                ));
            }
        }
        out
    }

    fn new(e: &HeaderEdits) -> Result<Self, String> {
        let name = |n: &str| HeaderName::from_bytes(n.as_bytes()).map_err(|e| format!("{n}: {e}"));
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter()
                .map(|(n, v)| {
                    Ok((
                        name(n)?,
                        HeaderValue::from_str(v).map_err(|e| format!("{n}: {e}"))?,
                    ))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        Ok(Edits {
            remove: e.remove.iter().map(|n| name(n)).collect::<Result<_, _>>()?,
            set: pairs(&e.set)?,
            append: pairs(&e.append)?,
        })
    }

    /// Applies the edits to `h`.
    pub(crate) fn apply(&self, h: &mut HeaderMap) {
        for n in &self.remove {
            h.remove(n);
        }
        for (n, v) in &self.set {
            h.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.append {
            h.append(n.clone(), v.clone());
        }
    }
}

/// One piece of a redirect target.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `$1`: a numbered capture of `path_regex`.
    Group(usize),
    /// `${name}`: a named capture.
    Named(String),
    Host,
    Path,
    /// `${query}`: `?` and the query, or nothing.
    Query,
}

/// A redirect target with its placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target(Vec<Piece>);

impl Target {
    /// Parses `$1`..`$9`, `${N}`, `${name}`, `${host}`, `${path}`, `${query}`; `$$` is `$`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            let piece = if let Some(r) = rest.strip_prefix('$') {
                text.push('$');
                rest = r;
                continue;
            } else if let Some(r) = rest.strip_prefix('{') {
                let Some(end) = r.find('}') else {
                    return Err(format!("{s:?}: `${{` without its `}}`"));
                };
                let name = &r[..end];
                rest = &r[end + 1..];
                match name {
                    "host" => Piece::Host,
                    "path" => Piece::Path,
                    "query" => Piece::Query,
                    "" => return Err(format!("{s:?}: an empty `${{}}`")),
                    n => match n.parse::<usize>() {
                        Ok(g) => Piece::Group(g),
                        Err(_) => Piece::Named(n.to_string()),
                    },
                }
            } else {
                match rest.as_bytes().first() {
                    Some(d) if d.is_ascii_digit() => {
                        rest = &rest[1..];
                        Piece::Group(usize::from(d - b'0'))
                    }
                    _ => {
                        return Err(format!(
                            "{s:?}: `$` must be followed by a digit, `{{name}}` or `$`"
                        ))
                    }
                }
            };
            if !text.is_empty() {
                out.push(Piece::Text(std::mem::take(&mut text)));
            }
            out.push(piece);
        }
        text.push_str(rest);
        if !text.is_empty() {
            out.push(Piece::Text(text));
        }
        Ok(Target(out))
    }

    /// The target for a request (`captures` of the rule's `path_regex`, when it has one).
    pub(crate) fn expand(
        &self,
        captures: Option<&regex::Captures<'_>>,
        host: &str,
        path: &str,
        query: Option<&str>,
    ) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Group(g) => {
                    if let Some(m) = captures.and_then(|c| c.get(*g)) {
                        out.push_str(m.as_str());
                    }
                }
                Piece::Named(n) => {
                    if let Some(m) = captures.and_then(|c| c.name(n)) {
                        out.push_str(m.as_str());
                    }
                }
                Piece::Host => out.push_str(host),
                Piece::Path => out.push_str(path),
                Piece::Query => {
                    if let Some(q) = query.filter(|q| !q.is_empty()) {
                        out.push('?');
                        out.push_str(q);
                    }
                }
            }
        }
        out
    }
}

/// A redirect.
#[derive(Debug)]
pub(crate) struct Redirect {
    pub status: StatusCode,
    /// `None`: the HTTPS upgrade of the same URL.
    pub to: Option<Target>,
}

/// A fixed response.
#[derive(Debug)]
pub(crate) struct Fixed {
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: HeaderValue,
}

/// What a rule does.
#[derive(Debug, Default)]
pub(crate) struct Actions {
    pub edge_ttl: Option<Duration>,
    pub ttl_override: bool,
    /// The `Cache-Control` sent to clients.
    pub client_cc: Option<HeaderValue>,
    pub bypass: bool,
    pub swr: Option<Duration>,
    pub sie: Option<Duration>,
    pub key_headers: Vec<HeaderName>,
    pub key_cookies: Vec<String>,
    pub key_device: bool,
    pub query: Option<QueryMode>,
    pub query_allow: Vec<String>,
    pub query_deny: Vec<String>,
    pub request: Edits,
    pub response: Edits,
    pub redirect: Option<Redirect>,
    pub respond: Option<Fixed>,
    /// Set by the site (it builds the pool with its upstream client).
    pub origins: Option<Arc<crate::upstream::origins::OriginPool>>,
    pub compress: Option<bool>,
    /// Set by the site (it knows the limiters).
    pub limits: Vec<Arc<crate::limits::Limiter>>,
}

impl Actions {
    /// Compiles the actions of `c` (which passed `problems()`); origins and limiters are
    /// left to the site.
    pub(crate) fn new(c: &RuleConfig) -> Result<Self, String> {
        let status = |s: u16| StatusCode::from_u16(s).map_err(|e| e.to_string());
        Ok(Actions {
            edge_ttl: c.edge_ttl.map(|d| d.0),
            ttl_override: c.edge_ttl_mode == TtlMode::Override,
            client_cc: c.client_ttl.map(|d| match d.0.as_secs() {
                0 => HeaderValue::from_static("no-cache"),
                n => HeaderValue::from_str(&format!("max-age={n}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
            }),
            bypass: c.bypass,
            swr: c.stale_while_revalidate.map(|d| d.0),
            sie: c.stale_if_error.map(|d| d.0),
            key_headers: c
                .key_headers
                .iter()
                .map(|h| HeaderName::from_bytes(h.as_bytes()).map_err(|e| e.to_string()))
                .collect::<Result<_, _>>()?,
            key_cookies: c.key_cookies.clone(),
            key_device: c.key_device,
            query: c.query,
            query_allow: c.query_allow.clone(),
            query_deny: c.query_deny.clone(),
            request: Edits::new(&c.request_headers)?,
            response: Edits::new(&c.response_headers)?,
            redirect: c
                .redirect
                .as_ref()
                .map(|r: &RedirectConfig| -> Result<Redirect, String> {
                    Ok(Redirect {
                        status: status(r.status)?,
                        to: r.to.as_deref().map(Target::parse).transpose()?,
                    })
                })
                .transpose()?,
            respond: c
                .respond
                .as_ref()
                .map(|r: &RespondConfig| -> Result<Fixed, String> {
                    Ok(Fixed {
                        status: status(r.status)?,
                        body: Bytes::from(r.body.clone()),
                        content_type: HeaderValue::from_str(&r.content_type)
                            .map_err(|e| e.to_string())?,
                    })
                })
                .transpose()?,
            origins: None,
            compress: c.compress,
            limits: Vec::new(),
        })
    }

    /// Whether the rule answers the request itself (redirect or fixed response).
    pub(crate) fn answers(&self) -> bool {
        self.redirect.is_some() || self.respond.is_some()
    }

    /// Whether it adds to the cache key.
    pub(crate) fn keys(&self) -> bool {
        !self.key_headers.is_empty() || !self.key_cookies.is_empty() || self.key_device
    }

    /// Whether it changes the query in the key.
    pub(crate) fn queries(&self) -> bool {
        self.query.is_some() || !self.query_allow.is_empty() || !self.query_deny.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_expand() {
        let re = regex::Regex::new(r"^/old/(?P<slug>[a-z]+)/(\d+)$").unwrap();
        let caps = re.captures("/old/post/42").unwrap();
        let t = Target::parse("https://new.example.com/${slug}/$2${query}").unwrap();
        assert_eq!(
            t.expand(Some(&caps), "h", "/old/post/42", Some("a=1")),
            "https://new.example.com/post/42?a=1"
        );
        let t = Target::parse("https://${host}${path}${query} costs $$5 $9").unwrap();
        assert_eq!(
            t.expand(None, "www.example.com", "/x", None),
            "https://www.example.com/x costs $5 "
        );
    }

    #[test]
    fn bad_targets_are_refused() {
        for bad in ["/x/${", "/x/$a", "/x/$", "/${}"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn edits_apply_in_order() {
        let e = Edits::new(&HeaderEdits {
            set: [("x-frame-options".to_string(), "DENY".to_string())].into(),
            append: [("vary".to_string(), "Origin".to_string())].into(),
            remove: vec!["server".into()],
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("server", "origin/1".parse().unwrap());
        h.insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
        h.insert("vary", "Accept".parse().unwrap());
        e.apply(&mut h);
        assert!(!h.contains_key("server"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h.get_all("vary").iter().count(), 2);
    }
}
