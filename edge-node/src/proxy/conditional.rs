//! Client conditional requests answered from cache (RFC 9110 section 13). Pure.

use crate::cache::date::parse_http_date;
use http::header::{HeaderMap, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};

fn opaque(tag: &str) -> &str {
    let t = tag.trim();
    t.strip_prefix("W/").unwrap_or(t)
}

/// Whether a GET or HEAD with these headers is answered 304 by a response with these
/// validators: If-None-Match (weak comparison) first; If-Modified-Since only without it,
/// against `last_modified` (the caller passes the stored `Date` when there is no
/// `Last-Modified`, RFC 9111 4.3.2).
pub(crate) fn not_modified(
    req: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    let inm: Vec<&str> = req
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !inm.is_empty() {
        let Some(etag) = etag else { return false };
        return inm.iter().flat_map(|v| v.split(',')).any(|t| {
            let t = t.trim();
            t == "*" || opaque(t) == opaque(etag)
        });
    }
    let (Some(ims), Some(lm)) = (
        req.get(IF_MODIFIED_SINCE).and_then(|v| v.to_str().ok()),
        last_modified,
    ) else {
        return false;
    };
    // An invalid date in either makes the condition false (RFC 9110 13.1.3: the field is
    // then ignored), so the full response is sent.
    match (parse_http_date(ims.trim()), parse_http_date(lm.trim())) {
        (Some(ims), Some(lm)) => lm <= ims,
        _ => false,
    }
}

/// Whether a Range request's `If-Range` (if any) still matches, so the range may be served:
/// a strong ETag compared strongly, or the exact Last-Modified date.
pub(crate) fn if_range_matches(
    req: &HeaderMap,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    let Some(v) = req.get(IF_RANGE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let v = v.trim();
    if v.starts_with('"') {
        return etag.is_some_and(|e| !e.starts_with("W/") && e.trim() == v);
    }
    if v.starts_with("W/") {
        return false;
    }
    last_modified.is_some_and(|lm| lm.trim() == v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn req(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    const LM: &str = "Tue, 15 Nov 1994 08:12:31 GMT";

    #[test]
    fn table() {
        let e = Some("\"v1\"");
        let lm = Some(LM);
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("if-none-match", "\"v1\"")], true),
            (&[("if-none-match", "W/\"v1\"")], true),
            (&[("if-none-match", "\"v0\", \"v1\"")], true),
            (&[("if-none-match", "*")], true),
            (&[("if-none-match", "\"v2\"")], false),
            // If-None-Match present: If-Modified-Since is ignored
            (
                &[
                    ("if-none-match", "\"v2\""),
                    ("if-modified-since", "Tue, 15 Nov 2094 08:12:31 GMT"),
                ],
                false,
            ),
            (
                &[("if-modified-since", "Tue, 15 Nov 1994 08:12:31 GMT")],
                true,
            ),
            (
                &[("if-modified-since", "Wed, 16 Nov 1994 08:12:31 GMT")],
                true,
            ),
            (
                &[("if-modified-since", "Mon, 14 Nov 1994 08:12:31 GMT")],
                false,
            ),
            (&[("if-modified-since", "yesterday")], false),
            (&[], false),
        ];
        for (h, want) in cases {
            let m = {
                let mut m = HeaderMap::new();
                for (k, v) in h.iter() {
                    m.append(
                        http::HeaderName::from_static(k),
                        HeaderValue::from_str(v).unwrap(),
                    );
                }
                m
            };
            assert_eq!(not_modified(&m, e, lm), *want, "{h:?}");
        }
        assert!(!not_modified(
            &req(&[("if-none-match", "\"v1\"")]),
            None,
            lm
        ));
    }

    #[test]
    fn if_range() {
        assert!(if_range_matches(&req(&[]), None, None));
        assert!(if_range_matches(
            &req(&[("if-range", "\"v1\"")]),
            Some("\"v1\""),
            None
        ));
        assert!(!if_range_matches(
            &req(&[("if-range", "\"v0\"")]),
            Some("\"v1\""),
            None
        ));
        assert!(!if_range_matches(
            &req(&[("if-range", "W/\"v1\"")]),
            Some("W/\"v1\""),
            None
        ));
        assert!(if_range_matches(&req(&[("if-range", LM)]), None, Some(LM)));
        assert!(!if_range_matches(
            &req(&[("if-range", "Mon, 14 Nov 1994 08:12:31 GMT")]),
            None,
            Some(LM)
        ));
    }
}
