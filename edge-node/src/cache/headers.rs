//! Stored response headers: one compact byte block per object instead of a `HeaderMap`.
//!
//! A `HeaderMap` costs several hundred bytes of bookkeeping per response; a cached 1 KiB object
//! must cost well under 1 KiB on top of its body. The block is one line per field (header
//! values cannot contain `\n`), built once at store time and turned back into a `HeaderMap` on
//! each hit, with values sliced out of the shared block (no copy). A line is `name:value\n`, or,
//! for the [`KNOWN`] names most responses carry, one code byte (1-31 except `\n`: never the
//! first byte of a field name) then `value\n`: the ten fields nginx sends with a file are about
//! 270 bytes spelled out and 180 coded, which keeps the block in a smaller allocation, and a hit
//! takes the coded names from the table instead of parsing them. Blocks written spelled out
//! (by earlier versions, on disk) read the same.

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// A compact, immutable copy of a response's header fields.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoredHeaders {
    block: Bytes,
}

impl std::fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(
                self.iter_raw()
                    .map(|(n, v)| (String::from_utf8_lossy(n), String::from_utf8_lossy(v))),
            )
            .finish()
    }
}

/// Field names stored as one code byte: the name at index `i` is coded `i + 1`, skipping
/// `\n` (10). At most 30 names (codes 1-31 less `\n`). Append only: blocks on disk hold codes.
pub(crate) static KNOWN: [HeaderName; 27] = [
    header::SERVER,
    header::DATE,
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::LAST_MODIFIED,
    header::ETAG,
    header::EXPIRES,
    header::CACHE_CONTROL,
    header::ACCEPT_RANGES,
    header::VARY,
    header::CONTENT_ENCODING,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::X_CONTENT_TYPE_OPTIONS,
    header::STRICT_TRANSPORT_SECURITY,
    header::CONTENT_SECURITY_POLICY,
    header::X_FRAME_OPTIONS,
    header::LINK,
    header::CONTENT_LANGUAGE,
    header::CONTENT_DISPOSITION,
    header::LOCATION,
    header::REFERRER_POLICY,
    header::VIA,
    header::CONTENT_RANGE,
    HeaderName::from_static("cache-tag"),
    HeaderName::from_static("surrogate-key"),
    HeaderName::from_static("x-powered-by"),
    HeaderName::from_static("timing-allow-origin"),
];

/// The code byte of `KNOWN[i]`.
fn code_of(i: usize) -> u8 {
    // Index 9 and on skip `\n` (10).
    if i < 9 {
        i as u8 + 1
    } else {
        i as u8 + 2
    }
}

/// The `KNOWN` name a code byte stands for.
fn known(code: u8) -> Option<&'static HeaderName> {
    let i = match code {
        1..=9 => code - 1,
        11..=31 => code - 2,
        _ => return None,
    };
    KNOWN.get(usize::from(i))
}

/// The code byte for `name`, if it has one.
fn code_for(name: &HeaderName) -> Option<u8> {
    KNOWN.iter().position(|k| k == name).map(code_of)
}

/// A block line's name: its code byte's, or what comes before its first `:`.
enum Name<'a> {
    Known(&'static HeaderName),
    Spelled(&'a [u8]),
}

impl<'a> Name<'a> {
    fn bytes(&self) -> &'a [u8] {
        match self {
            Name::Known(n) => n.as_str().as_bytes(),
            Name::Spelled(b) => b,
        }
    }
}

impl StoredHeaders {
    /// Copies the fields of `map` for which `keep` answers true.
    pub fn from_map(map: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> Self {
        let name_len = |n: &HeaderName| code_for(n).map_or(n.as_str().len() + 1, |_| 1);
        let mut len = 0;
        for (n, v) in map {
            if keep(n) {
                len += name_len(n) + v.len() + 1;
            }
        }
        let mut buf = BytesMut::with_capacity(len);
        for (n, v) in map {
            if keep(n) {
                match code_for(n) {
                    Some(code) => buf.put_u8(code),
                    None => {
                        buf.put_slice(n.as_str().as_bytes());
                        buf.put_u8(b':');
                    }
                }
                buf.put_slice(v.as_bytes());
                buf.put_u8(b'\n');
            }
        }
        StoredHeaders {
            block: buf.freeze(),
        }
    }

    /// Wraps a block read back from storage (its lines are parsed leniently on use).
    pub fn from_block(block: Bytes) -> Self {
        StoredHeaders { block }
    }

    /// The raw block (for persistence).
    pub fn as_bytes(&self) -> &Bytes {
        &self.block
    }

    /// Size of the block in bytes.
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether no header is stored.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty()
    }

    fn lines(&self) -> impl Iterator<Item = (Name<'_>, &[u8])> {
        self.block
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| match known(line[0]) {
                Some(n) => Some((Name::Known(n), &line[1..])),
                None => {
                    let colon = line.iter().position(|b| *b == b':')?;
                    Some((Name::Spelled(&line[..colon]), &line[colon + 1..]))
                }
            })
    }

    fn iter_raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.lines().map(|(n, v)| (n.bytes(), v))
    }

    /// The first value of `name` (lower-case), if stored.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.lines()
            .find(|(n, _)| n.bytes() == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first value of `name` as a string, if stored and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends every stored field to `out`. Values share the block's memory.
    pub fn write_into(&self, out: &mut HeaderMap) {
        let base = self.block.as_ptr() as usize;
        for (n, v) in self.lines() {
            let name = match n {
                Name::Known(n) => n.clone(),
                Name::Spelled(n) => match HeaderName::from_bytes(n) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            let start = v.as_ptr() as usize - base;
            let value = self.block.slice(start..start + v.len());
            if let Ok(value) = HeaderValue::from_maybe_shared(value) {
                out.append(name, value);
            }
        }
    }

    /// A fresh `HeaderMap` with every stored field.
    pub fn to_map(&self) -> HeaderMap {
        let mut m = HeaderMap::with_capacity(12);
        self.write_into(&mut m);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_repeats() {
        let mut m = HeaderMap::new();
        m.insert("content-type", HeaderValue::from_static("text/plain"));
        m.append("link", HeaderValue::from_static("</a>; rel=preload"));
        m.append("link", HeaderValue::from_static("</b>; rel=preload"));
        m.insert("x-skip", HeaderValue::from_static("1"));
        m.insert("etag", HeaderValue::from_static("\"a:b\""));
        let s = StoredHeaders::from_map(&m, |n| n != "x-skip");
        let back = s.to_map();
        assert_eq!(back.get("content-type").unwrap(), "text/plain");
        assert_eq!(back.get_all("link").iter().count(), 2);
        assert!(back.get("x-skip").is_none());
        assert_eq!(s.get_str("etag"), Some("\"a:b\""));
        assert_eq!(s.get("missing"), None);
    }

    #[test]
    fn known_names_are_coded_and_spelled_blocks_read_the_same() {
        let mut m = HeaderMap::new();
        m.insert("server", HeaderValue::from_static("nginx/1.22.1"));
        m.insert("etag", HeaderValue::from_static("\"6930a1b2-400\""));
        m.insert("vary", HeaderValue::from_static("accept-encoding"));
        m.insert("timing-allow-origin", HeaderValue::from_static("*"));
        m.insert("x-own", HeaderValue::from_static("kept: spelled"));
        let coded = StoredHeaders::from_map(&m, |_| true);
        // Four coded lines (code, value, newline) and one spelled out.
        let values: usize = m.values().map(|v| v.len() + 1).sum();
        assert_eq!(coded.len(), values + 4 + "x-own:".len());
        assert_eq!(coded.as_bytes()[0], 1, "server is code 1");
        // The same fields spelled out, as earlier versions wrote them to disk.
        let spelled = StoredHeaders::from_block(Bytes::from_static(
            b"server:nginx/1.22.1\netag:\"6930a1b2-400\"\nvary:accept-encoding\n\
              timing-allow-origin:*\nx-own:kept: spelled\n",
        ));
        for s in [&coded, &spelled] {
            assert_eq!(s.to_map(), m);
            assert_eq!(s.get_str("vary"), Some("accept-encoding"));
            assert_eq!(s.get_str("timing-allow-origin"), Some("*"));
            assert_eq!(s.get_str("x-own"), Some("kept: spelled"));
        }
        // Every code stands for its own name, and none is `\n`.
        for (i, name) in KNOWN.iter().enumerate() {
            let c = code_of(i);
            assert!((1..32).contains(&c) && c != b'\n', "{name}: {c}");
            assert_eq!(known(c), Some(name));
        }
        assert_eq!(known(b'\n'), None);
        assert_eq!(known(0), None);
    }
}
