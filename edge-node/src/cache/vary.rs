//! Vary: which request headers select a variant, and their normalised values. Pure.
//!
//! Values are normalised before they are compared or stored so that equivalent requests share a
//! variant: field lines are joined, whitespace collapsed; list fields (`Accept`,
//! `Accept-Language`, `Accept-Charset`) normalised member by member (case, whitespace, `q`
//! values kept in their shortest form) and sorted; and `Accept-Encoding` reduced to the
//! codings the cache cares about (`br`, `gzip`, or none). The same normalised `Accept-Encoding`
//! is what the upstream request carries, so the response always matches the key it is stored
//! under. The number of variants per URL is capped by the store.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, ACCEPT_ENCODING};

/// The request header names a response varies on, lower-case and sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarySpec(pub Box<[HeaderName]>);

/// Normalised request values for each name of a `VarySpec`, in the same order.
pub type VaryValues = Box<[Option<Bytes>]>;

impl VarySpec {
    /// Parses the response's `Vary` field(s). `None` when it names nothing (or only `*`,
    /// which the policy never stores).
    pub fn from_response(headers: &HeaderMap) -> Option<Self> {
        let mut names: Vec<HeaderName> = Vec::new();
        for v in headers.get_all(http::header::VARY) {
            let Ok(s) = v.to_str() else { continue };
            for part in s.split(',') {
                let part = part.trim();
                if part.is_empty() || part == "*" {
                    continue;
                }
                if let Ok(n) = HeaderName::from_bytes(part.to_ascii_lowercase().as_bytes()) {
                    if !names.contains(&n) {
                        names.push(n);
                    }
                }
            }
        }
        if names.is_empty() {
            return None;
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Some(VarySpec(names.into_boxed_slice()))
    }

    /// `spec` with `more` names added (a site rule's key additions), sorted and once each.
    pub(crate) fn adding(spec: Option<Self>, more: &[HeaderName]) -> Option<Self> {
        if more.is_empty() {
            return spec;
        }
        let mut names: Vec<HeaderName> = spec.map(|s| s.0.into_vec()).unwrap_or_default();
        for n in more {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Some(VarySpec(names.into_boxed_slice()))
    }

    /// The normalised values `req` has for these names.
    pub fn values(&self, req: &HeaderMap) -> VaryValues {
        self.0.iter().map(|n| normalized_value(n, req)).collect()
    }
}

/// A hash of Vary values, to tell variants apart when collapsing fetches.
pub(crate) fn values_hash(values: &VaryValues) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for v in values.iter() {
        match v {
            Some(b) => {
                h.update(b"\x01");
                h.update(b);
                h.update(b"\x00");
            }
            None => h.update(b"\x02"),
        }
    }
    h.digest()
}

/// Request fields that are lists of case-insensitive tokens with parameters (RFC 9110
/// sections 12.5): their members are normalised one by one and sorted, so `fr-CH, en;q=0.5`
/// and `en; q=0.50 ,FR-ch` select the same variant.
const LISTS: &[HeaderName] = &[
    http::header::ACCEPT,
    http::header::ACCEPT_LANGUAGE,
    http::header::ACCEPT_CHARSET,
];

/// The normalised value of one request header, `None` when absent.
pub(crate) fn normalized_value(name: &HeaderName, req: &HeaderMap) -> Option<Bytes> {
    if name == ACCEPT_ENCODING {
        return normalized_accept_encoding(req).map(|s| Bytes::from_static(s.as_bytes()));
    }
    if LISTS.contains(name) {
        return normalized_list(req.get_all(name).iter().map(|v| v.as_bytes())).map(Bytes::from);
    }
    let mut out = Vec::new();
    for v in req.get_all(name) {
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        let mut last_space = true;
        for &b in v.as_bytes() {
            let space = b == b' ' || b == b'\t';
            if space && last_space {
                continue;
            }
            out.push(if space { b' ' } else { b });
            last_space = space;
        }
        while out.last() == Some(&b' ') {
            out.pop();
        }
    }
    if out.is_empty() && !req.contains_key(name) {
        None
    } else {
        Some(Bytes::from(out))
    }
}

/// A list field's lines as one normal list: members trimmed, lower-cased, whitespace around
/// `;` and `=` dropped, `q` values written in their shortest form (`q=1` dropped, as it is
/// the default), empty members dropped, members sorted. `None` when there are no lines.
fn normalized_list<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<Vec<u8>> {
    let mut any = false;
    let mut members: Vec<Vec<u8>> = Vec::new();
    for line in lines {
        any = true;
        for member in line.split(|b| *b == b',') {
            let mut parts = member.split(|b| *b == b';');
            let value = parts
                .next()
                .unwrap_or_default()
                .trim_ascii()
                .to_ascii_lowercase();
            if value.is_empty() {
                continue;
            }
            let mut m = value;
            for param in parts {
                let (k, v) = match param.iter().position(|b| *b == b'=') {
                    Some(i) => (param[..i].trim_ascii(), param[i + 1..].trim_ascii()),
                    None => (param.trim_ascii(), &b""[..]),
                };
                let k = k.to_ascii_lowercase();
                if k.is_empty() {
                    continue;
                }
                let v = if k == b"q" {
                    match qvalue(v) {
                        Some(q) if q == "1" => continue,
                        Some(q) => q.into_bytes(),
                        None => v.to_ascii_lowercase(),
                    }
                } else {
                    v.to_ascii_lowercase()
                };
                m.push(b';');
                m.extend_from_slice(&k);
                if !v.is_empty() {
                    m.push(b'=');
                    m.extend_from_slice(&v);
                }
            }
            members.push(m);
        }
    }
    if !any {
        return None;
    }
    members.sort();
    members.dedup();
    Some(members.join(&b", "[..]))
}

/// A weight (RFC 9110 12.4.2: `0` to `1` with up to three decimals) in its shortest form.
fn qvalue(v: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(v).ok()?;
    let ok = match s.split_once('.') {
        None => s == "0" || s == "1",
        Some((i, f)) => {
            (i == "0" || i == "1")
                && f.len() <= 3
                && f.bytes().all(|b| b.is_ascii_digit())
                && (i == "0" || f.bytes().all(|b| b == b'0'))
        }
    };
    if !ok {
        return None;
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    Some(if t.is_empty() {
        "0".to_string()
    } else {
        t.to_string()
    })
}

/// Reduces `Accept-Encoding` to `"gzip, br"`, `"br"`, `"gzip"`, or none (identity).
pub(crate) fn normalized_accept_encoding(req: &HeaderMap) -> Option<&'static str> {
    let mut gzip = false;
    let mut br = false;
    let mut star = false;
    for v in req.get_all(ACCEPT_ENCODING) {
        let Ok(s) = v.to_str() else { continue };
        for item in s.split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q_zero = parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=")
                    .or_else(|| p.strip_prefix("Q="))
                    .map(|q| q.trim().parse::<f32>().map(|q| q <= 0.0).unwrap_or(false))
                    .unwrap_or(false)
            });
            if q_zero {
                continue;
            }
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = true,
                "br" => br = true,
                "*" => star = true,
                _ => {}
            }
        }
    }
    if star {
        gzip = true;
        br = true;
    }
    match (gzip, br) {
        (true, true) => Some("gzip, br"),
        (false, true) => Some("br"),
        (true, false) => Some("gzip"),
        (false, false) => None,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn list_fields_are_normalised_member_by_member() {
        let norm = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append(http::header::ACCEPT_LANGUAGE, l.parse().unwrap());
            }
            normalized_value(&http::header::ACCEPT_LANGUAGE, &h)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let same = [
            vec!["fr-CH, en;q=0.5"],
            vec!["en; q=0.50 ,FR-ch"],
            vec!["en;q=0.500", "fr-ch"],
            vec![" fr-ch;q=1 , , en;Q=0.5 "],
        ];
        let want = norm(&same[0]);
        assert_eq!(want.as_deref(), Some("en;q=0.5, fr-ch"));
        for s in &same {
            assert_eq!(norm(s), want, "{s:?}");
        }
        assert_ne!(
            norm(&["en;q=0.4, fr-ch"]),
            want,
            "a different weight is another variant"
        );
        assert_eq!(norm(&[]), None);
        assert_eq!(
            norm(&[""]).as_deref(),
            Some(""),
            "present but empty is not absent"
        );
        assert_eq!(qvalue(b"0.500").as_deref(), Some("0.5"));
        assert_eq!(qvalue(b"1.000").as_deref(), Some("1"));
        assert_eq!(qvalue(b"0").as_deref(), Some("0"));
        assert_eq!(qvalue(b"1.5"), None);
        assert_eq!(qvalue(b"0.1234"), None);
    }

    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn accept_encoding_classes() {
        let cases = [
            ("gzip, deflate, br", Some("gzip, br")),
            ("br;q=1.0, gzip;q=0.8", Some("gzip, br")),
            ("gzip;q=0, br", Some("br")),
            ("deflate", None),
            ("identity", None),
            ("*", Some("gzip, br")),
            ("GZIP", Some("gzip")),
            ("gzip;q=banana", Some("gzip")),
        ];
        for (input, want) in cases {
            assert_eq!(
                normalized_accept_encoding(&map(&[("accept-encoding", input)])),
                want,
                "{input}"
            );
        }
        assert_eq!(normalized_accept_encoding(&HeaderMap::new()), None);
    }

    #[test]
    fn spec_and_values() {
        let spec = VarySpec::from_response(&map(&[
            ("vary", "Accept-Language, accept-encoding"),
            ("vary", "X-Theme"),
        ]))
        .unwrap();
        assert_eq!(
            spec.0.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["accept-encoding", "accept-language", "x-theme"]
        );
        let a = spec.values(&map(&[
            ("accept-encoding", "gzip,  deflate"),
            ("accept-language", "en,   de"),
        ]));
        let b = spec.values(&map(&[
            ("accept-encoding", "deflate, gzip"),
            ("accept-language", "en, de "),
        ]));
        assert_eq!(a, b);
        assert_eq!(a[2], None);
        let c = spec.values(&map(&[("x-theme", "")]));
        assert_eq!(c[2], Some(Bytes::new()));
        assert!(VarySpec::from_response(&map(&[("vary", " , ")])).is_none());
    }
}
