//! Which cache key a request or a purged URL has in the layer: scheme, host (lower case, no
//! port), the normal path form and the query as the config says, as the edge keys them.

use crate::cache::key::{normalize_host, normalize_query};
use crate::cache::url::normalize_path;
use crate::cache::{CacheKey, QueryMode};
use http::header::{HeaderMap, HOST};
use http::Uri;

/// A request's place in the cache.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Its primary key.
    pub key: CacheKey,
    /// The normalised host (for prefix purges).
    pub host: String,
    /// The normalised path (for prefix purges).
    pub path: String,
}

/// The target of a request: its host from the URI, else from `Host`; `None` without a
/// plausible host.
pub(crate) fn of_request(uri: &Uri, headers: &HeaderMap, mode: QueryMode) -> Option<Target> {
    let raw = match uri.host() {
        Some(h) => h,
        None => headers.get(HOST)?.to_str().ok()?,
    };
    let host = normalize_host(raw)?;
    let path = normalize_path(uri.path()).into_owned();
    let query = normalize_query(uri.query(), mode, &[]);
    let scheme = uri.scheme_str().unwrap_or("http");
    Some(Target {
        key: CacheKey::new(scheme, &host, &path, query.as_deref()),
        host,
        path,
    })
}

/// An absolute `http` or `https` URL as purges name it: its host, its normal path, and its
/// key under both schemes (the layer may sit behind TLS termination or not).
pub(crate) fn of_url(url: &str, mode: QueryMode) -> Option<(String, String, [CacheKey; 2])> {
    let uri: Uri = url.parse().ok()?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return None;
    }
    let host = normalize_host(uri.host()?)?;
    let path = normalize_path(uri.path()).into_owned();
    let query = normalize_query(uri.query(), mode, &[]);
    let keys = ["http", "https"].map(|s| CacheKey::new(s, &host, &path, query.as_deref()));
    Some((host, path, keys))
}

/// The key of a `Location` or `Content-Location` value of a response to a request for
/// `host` over `scheme`: only on the same host (RFC 9111 4.4).
pub(crate) fn of_location(
    value: &str,
    scheme: &str,
    host: &str,
    mode: QueryMode,
) -> Option<CacheKey> {
    let uri: Uri = value.parse().ok()?;
    if let Some(h) = uri.host() {
        if normalize_host(h)?.as_str() != host {
            return None;
        }
    } else if !uri.path().starts_with('/') {
        return None;
    }
    let path = normalize_path(uri.path());
    let query = normalize_query(uri.query(), mode, &[]);
    Some(CacheKey::new(
        uri.scheme_str().unwrap_or(scheme),
        host,
        &path,
        query.as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_url_keys_agree() {
        let mut h = HeaderMap::new();
        h.insert(HOST, "WWW.Example.test:8080".parse().unwrap());
        let uri: Uri = "/a/./b/../c?x=1".parse().unwrap();
        let t = of_request(&uri, &h, QueryMode::Keep).unwrap();
        assert_eq!(t.host, "www.example.test");
        assert_eq!(t.path, "/a/c");
        let (host, path, keys) =
            of_url("http://www.example.test/a/c?x=1", QueryMode::Keep).unwrap();
        assert_eq!((host.as_str(), path.as_str()), ("www.example.test", "/a/c"));
        assert_eq!(keys[0], t.key);
        assert!(of_url("/relative", QueryMode::Keep).is_none());
        assert!(of_url("ftp://x.test/", QueryMode::Keep).is_none());
        assert_eq!(
            of_location("/a/c?x=1", "http", "www.example.test", QueryMode::Keep),
            Some(t.key)
        );
        assert_eq!(
            of_location(
                "http://other.test/a/c",
                "http",
                "www.example.test",
                QueryMode::Keep
            ),
            None
        );
    }
}
