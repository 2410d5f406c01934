//! Which header fields cross each boundary: client -> upstream, upstream -> store, and
//! store/upstream -> client. Pure.
//!
//! Cache-poisoning rule: a request header that can change the response but is not part of the
//! cache key is never forwarded. The `X-Forwarded-*`/override family is dropped and the edge
//! sets `X-Forwarded-For`/`-Proto` itself; `Host` is sent without its port (the port is not in
//! the key); `Accept-Encoding` is sent in its normalised form (the form Vary keys on); and for
//! cache fills the client's own validators and Range are removed (the cache fetches whole
//! objects and answers those itself).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::net::IpAddr;

/// Hop-by-hop fields (RFC 9110 section 7.6.1), never forwarded or stored.
pub(crate) const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Request fields an origin may trust to build responses but that are not in the cache key.
pub(crate) const UNKEYED_UNTRUSTED: &[&str] = &[
    "x-forwarded-host",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-proto",
    "x-forwarded-scheme",
    "x-forwarded-prefix",
    "x-forwarded-for",
    "x-real-ip",
    "x-host",
    "x-original-host",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "front-end-https",
    // Tier-internal fields: only this edge sets them, toward its shields.
    "outpost-shield-secret",
    "outpost-purge-version",
    // The node's own cache-key field of site rules (`rules/key.rs`).
    "outpost-key",
];

/// Fields for this cache only, consumed here: `Surrogate-Control` (Edge Architecture
/// Specification). `CDN-Cache-Control` is not among them: RFC 9213 targets every CDN on the
/// path, so it is stored and forwarded (our own edges behind a shield need it too).
pub(crate) const EDGE_ONLY: &[&str] = &["surrogate-control"];

/// Fields listed in `Connection` (also hop-by-hop).
fn connection_listed(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().to_ascii_lowercase().as_bytes()).ok())
        .collect()
}

/// Removes hop-by-hop fields, including those named in `Connection`.
pub(crate) fn strip_hop_by_hop(h: &mut HeaderMap) {
    for n in connection_listed(h) {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
}

/// Builds the upstream request's fields from the client's.
pub(crate) struct UpstreamHeaders<'a> {
    /// Normalised host (no port), as in the key.
    pub host: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// `http` or `https`, as in the key.
    pub scheme: &'a str,
    /// Whether this is a cache fill (whole object; client validators and Range removed).
    pub fill: bool,
    /// The `Via` value this edge adds.
    pub via: &'a HeaderValue,
}

impl UpstreamHeaders<'_> {
    /// The fields to send upstream for a client request with fields `client`.
    pub(crate) fn build(&self, client: &HeaderMap) -> HeaderMap {
        let mut h = client.clone();
        strip_hop_by_hop(&mut h);
        for n in UNKEYED_UNTRUSTED {
            h.remove(*n);
        }
        if self.fill {
            for n in [
                header::IF_NONE_MATCH,
                header::IF_MODIFIED_SINCE,
                header::IF_MATCH,
                header::IF_UNMODIFIED_SINCE,
                header::IF_RANGE,
                header::RANGE,
                header::CACHE_CONTROL,
                header::PRAGMA,
            ] {
                h.remove(n);
            }
        }
        h.remove(header::ACCEPT_ENCODING);
        if let Some(ae) = crate::cache::vary::normalized_accept_encoding(client) {
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(ae));
        }
        if let Ok(v) = HeaderValue::from_str(self.host) {
            h.insert(header::HOST, v);
        }
        if let Ok(v) = HeaderValue::from_str(&self.client_ip.to_string()) {
            h.insert("x-forwarded-for", v);
        }
        h.insert(
            "x-forwarded-proto",
            HeaderValue::from_static(if self.scheme == "https" {
                "https"
            } else {
                "http"
            }),
        );
        append_via(&mut h, self.via);
        h
    }
}

/// Appends this hop to `Via` (RFC 9110 section 7.6.3).
pub(crate) fn append_via(h: &mut HeaderMap, via: &HeaderValue) {
    h.append(header::VIA, via.clone());
}

/// Whether an upstream response field is kept in the store. `Content-Length` is not: every
/// answer from the store sets it from the stored body's length (or the range's), so a copy
/// would only cost each object its bytes.
pub(crate) fn stored(name: &HeaderName) -> bool {
    let n = name.as_str();
    !(HOP_BY_HOP.contains(&n)
        || n == "age"
        || n == "cache-status"
        || n == "set-cookie"
        || n == "content-length"
        || EDGE_ONLY.contains(&n))
}

/// Removes from an upstream response what clients must not see. `Age` stays: it is
/// end-to-end (RFC 9111 5.1); an answer from the cache replaces it with the stored
/// response's current age.
pub(crate) fn for_client(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    for n in EDGE_ONLY {
        h.remove(*n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisoning_headers_are_not_forwarded() {
        let mut c = HeaderMap::new();
        for (k, v) in [
            ("x-forwarded-host", "evil.test"),
            ("x-original-url", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("connection", "x-secret, keep-alive"),
            ("x-secret", "1"),
            ("host", "www.example.test:8080"),
            ("accept-encoding", "gzip, deflate, br"),
            ("if-none-match", "\"x\""),
            ("range", "bytes=0-1"),
            ("cookie", "a=1"),
        ] {
            c.append(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let via = HeaderValue::from_static("1.1 outpost-edge");
        let u = UpstreamHeaders {
            host: "www.example.test",
            client_ip: "192.0.2.9".parse().unwrap(),
            scheme: "http",
            fill: true,
            via: &via,
        };
        let h = u.build(&c);
        for gone in [
            "x-forwarded-host",
            "x-original-url",
            "x-http-method-override",
            "connection",
            "x-secret",
            "if-none-match",
            "range",
        ] {
            assert!(!h.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(h["host"], "www.example.test");
        assert_eq!(h["accept-encoding"], "gzip, br");
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h["cookie"], "a=1");
        assert_eq!(h["via"], "1.1 outpost-edge");
        let pass = UpstreamHeaders { fill: false, ..u };
        assert!(pass.build(&c).contains_key("if-none-match"));
    }
}
