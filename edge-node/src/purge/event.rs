//! Purge requests and events: the admin API's JSON, validation, and the versioned event that
//! every node applies in order. Pure.

use serde::{Deserialize, Serialize};

/// Most items one purge request may name.
pub(crate) const MAX_ITEMS: usize = 1000;

/// The body of `POST /purge`: exactly one of `urls`, `prefixes`, `tags` or `all`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Absolute URLs; every Vary variant of each goes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Absolute URL prefixes (`https://www.example.com/img/`), matched on host and path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Tags from the origin's `Surrogate-Key` / `Cache-Tag` headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Everything.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Mark stale instead of removing (stale-if-error and stale-while-revalidate still apply).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// What a purge removes (or marks stale).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeTarget {
    /// These URLs, as (host, path with query).
    Urls(Vec<UrlTarget>),
    /// URLs whose host matches and whose path starts with the prefix.
    Prefixes(Vec<UrlTarget>),
    /// Objects carrying any of these tags.
    Tags(Vec<String>),
    /// Everything stored.
    All,
}

/// A host and a path (with query for URLs), lower-cased host, no port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlTarget {
    /// Host name, lower-case, without port.
    pub host: String,
    /// Path (and `?query` for URL purges).
    pub path: String,
}

/// One accepted purge with its version: the unit every node applies, in version order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeEvent {
    /// The purge version: 1, 2, 3, ... with no gaps.
    pub version: u64,
    /// When the purge was accepted (ms since the Unix epoch); soft purges make objects stale
    /// from this moment.
    pub at_ms: u64,
    /// Mark stale instead of removing.
    #[serde(default)]
    pub soft: bool,
    /// What it purges.
    pub target: PurgeTarget,
}

impl PurgeRequest {
    /// Checks the request and turns it into a target; the error is a message for a 400.
    pub fn target(&self) -> Result<PurgeTarget, String> {
        let kinds = [
            !self.urls.is_empty(),
            !self.prefixes.is_empty(),
            !self.tags.is_empty(),
            self.all,
        ]
        .iter()
        .filter(|k| **k)
        .count();
        if kinds == 0 {
            return Err("name what to purge: a non-empty \"urls\", \"prefixes\" or \"tags\" list, or \"all\": true".into());
        }
        if kinds > 1 {
            return Err("give exactly one of \"urls\", \"prefixes\", \"tags\" or \"all\"".into());
        }
        let n = self.urls.len() + self.prefixes.len() + self.tags.len();
        if n > MAX_ITEMS {
            return Err(format!("at most {MAX_ITEMS} items per purge ({n} given)"));
        }
        if self.all {
            return Ok(PurgeTarget::All);
        }
        if !self.urls.is_empty() {
            return self
                .urls
                .iter()
                .map(|u| parse_url(u))
                .collect::<Result<_, _>>()
                .map(PurgeTarget::Urls);
        }
        if !self.prefixes.is_empty() {
            return self
                .prefixes
                .iter()
                .map(|u| parse_url(u))
                .collect::<Result<_, _>>()
                .map(PurgeTarget::Prefixes);
        }
        for t in &self.tags {
            if t.is_empty()
                || t.len() > 256
                || t.chars()
                    .any(|c| c.is_whitespace() || c == ',' || c.is_control())
            {
                return Err(format!(
                    "invalid tag {t:?}: tags are 1-256 characters without spaces or commas"
                ));
            }
        }
        Ok(PurgeTarget::Tags(self.tags.clone()))
    }
}

/// Parses an absolute `http(s)://host[:port]/path[?query]` into host and path.
pub(crate) fn parse_url(u: &str) -> Result<UrlTarget, String> {
    let uri: http::Uri = u.parse().map_err(|_| format!("{u:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{u:?} must be an absolute http:// or https:// URL")),
    }
    let auth = uri
        .authority()
        .ok_or_else(|| format!("{u:?} has no host"))?;
    let host = crate::cache::key::normalize_host(auth.as_str())
        .ok_or_else(|| format!("{u:?} has an invalid host"))?;
    // The path in the cache's normal form (the one keys and upstream requests use), so that
    // `/a/./b` purges what `/a/b` stored.
    let path = match uri.path() {
        "" => "/".into(),
        p => crate::cache::url::normalize_path(p),
    };
    let path = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    Ok(UrlTarget { host, path })
}

/// Tags of a response: `Surrogate-Key` (space separated) and `Cache-Tag` (comma separated).
pub(crate) fn response_tags(h: &http::HeaderMap) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |t: &str| {
        let t = t.trim();
        if !t.is_empty() && t.len() <= 256 && !out.iter().any(|o| o == t) {
            out.push(t.to_string());
        }
    };
    for v in h
        .get_all("surrogate-key")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        v.split_ascii_whitespace().for_each(&mut add);
    }
    for v in h
        .get_all("cache-tag")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        v.split(',').for_each(&mut add);
    }
    out.truncate(64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> Result<PurgeTarget, String> {
        let r: PurgeRequest = serde_json::from_str(json).map_err(|e| e.to_string())?;
        r.target()
    }

    #[test]
    fn valid_requests() {
        assert_eq!(req(r#"{"all":true}"#), Ok(PurgeTarget::All));
        assert_eq!(
            req(r#"{"urls":["https://WWW.Example.com:8443/a?b=1"]}"#),
            Ok(PurgeTarget::Urls(vec![UrlTarget {
                host: "www.example.com".into(),
                path: "/a?b=1".into()
            }]))
        );
        assert_eq!(
            req(r#"{"prefixes":["http://example.com"],"soft":true}"#),
            Ok(PurgeTarget::Prefixes(vec![UrlTarget {
                host: "example.com".into(),
                path: "/".into()
            }]))
        );
        assert_eq!(
            req(r#"{"tags":["product-1","home"]}"#),
            Ok(PurgeTarget::Tags(vec!["product-1".into(), "home".into()]))
        );
    }

    #[test]
    fn invalid_requests() {
        for bad in [
            r#"{}"#,
            r#"{"urls":[]}"#,
            r#"{"all":false}"#,
            r#"{"urls":["https://a/"],"tags":["x"]}"#,
            r#"{"urls":["/relative"]}"#,
            r#"{"urls":["ftp://a/b"]}"#,
            r#"{"prefixes":["not a url"]}"#,
            r#"{"tags":["two words"]}"#,
            r#"{"tags":[""]}"#,
            r#"{"everything":true}"#,
            r#"{"urls":"https://a/"}"#,
            r#"[1,2]"#,
            r#"{"all":true"#,
        ] {
            assert!(req(bad).is_err(), "{bad} accepted");
        }
        let many = format!(
            r#"{{"tags":[{}]}}"#,
            (0..1001)
                .map(|i| format!("\"t{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(req(&many).unwrap_err().contains("at most"));
    }

    #[test]
    fn tags_from_both_headers() {
        let mut h = http::HeaderMap::new();
        h.insert("surrogate-key", "a  b\tc".parse().unwrap());
        h.append("cache-tag", "c, d,,e ".parse().unwrap());
        assert_eq!(response_tags(&h), ["a", "b", "c", "d", "e"]);
    }
}
