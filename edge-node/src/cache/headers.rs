//! Stored response headers: one compact byte block per object instead of a `HeaderMap`.
//!
//! A `HeaderMap` costs several hundred bytes of bookkeeping per response; a cached 1 KiB object
//! must cost well under 1 KiB on top of its body. The block is `name:value\n` lines (header
//! values cannot contain `\n`), built once at store time and turned back into a `HeaderMap` on
//! each hit, with values sliced out of the shared block (no copy).

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};

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

impl StoredHeaders {
    /// Copies the fields of `map` for which `keep` answers true.
    pub fn from_map(map: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> Self {
        let mut len = 0;
        for (n, v) in map {
            if keep(n) {
                len += n.as_str().len() + v.len() + 2;
            }
        }
        let mut buf = BytesMut::with_capacity(len);
        for (n, v) in map {
            if keep(n) {
                buf.put_slice(n.as_str().as_bytes());
                buf.put_u8(b':');
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

    fn iter_raw(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.block
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|line| {
                let colon = line.iter().position(|b| *b == b':')?;
                Some((&line[..colon], &line[colon + 1..]))
            })
    }

    /// The first value of `name` (lower-case), if stored.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter_raw()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first value of `name` as a string, if stored and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends every stored field to `out`. Values share the block's memory.
    pub fn write_into(&self, out: &mut HeaderMap) {
        let base = self.block.as_ptr() as usize;
        for (n, v) in self.iter_raw() {
            let Ok(name) = HeaderName::from_bytes(n) else {
                continue;
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
}
