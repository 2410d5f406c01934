//! Partial content in the store (RFC 9111 sections 3.3 and 3.4): the span of a representation a
//! stored 206 holds, and combining two spans of one representation into a larger one. Pure.
//!
//! A stored partial response is an ordinary [`Object`](super::object::Object) with status 206
//! whose `Content-Range` names the one contiguous span its body holds. It answers only ranges
//! wholly inside that span (3.3); two spans are combined only when both responses carry the
//! same strong `ETag` (3.4) and the spans touch or overlap, so the result stays one span. A
//! span that grows to the whole representation becomes a complete 200.

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, CONTENT_RANGE, ETAG};

/// The bytes `start..=end` of a representation of `complete` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    /// First byte held.
    pub start: u64,
    /// Last byte held, inclusive.
    pub end: u64,
    /// The complete representation's length.
    pub complete: u64,
}

impl Span {
    /// Parses a `Content-Range` value of a single-part 206: `bytes first-last/complete` with
    /// `first <= last < complete` (RFC 9110 14.4). `None` for anything else, including an
    /// unknown complete length (`/*`) and the `bytes */len` of a 416.
    pub(crate) fn parse(value: &str) -> Option<Span> {
        let rest = value.trim().strip_prefix("bytes ")?;
        let (range, complete) = rest.split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let num = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
                None
            } else {
                s.parse().ok()
            }
        };
        let (start, end, complete) = (num(first)?, num(last)?, num(complete)?);
        (start <= end && end < complete).then_some(Span {
            start,
            end,
            complete,
        })
    }

    /// The span a response's fields declare (exactly one valid `Content-Range`).
    pub(crate) fn of(headers: &HeaderMap) -> Option<Span> {
        let mut all = headers.get_all(CONTENT_RANGE).iter();
        let first = all.next()?;
        if all.next().is_some() {
            return None;
        }
        Span::parse(first.to_str().ok()?)
    }

    /// Bytes held.
    pub(crate) fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Whether it holds the whole representation.
    pub(crate) fn is_whole(&self) -> bool {
        self.start == 0 && self.end + 1 == self.complete
    }

    /// Whether it holds every byte of `start..=end`.
    pub(crate) fn holds(&self, start: u64, end: u64) -> bool {
        self.start <= start && end <= self.end
    }

    /// The `Content-Range` value for `start..=end` of this representation.
    pub(crate) fn content_range(&self, start: u64, end: u64) -> String {
        format!("bytes {start}-{end}/{}", self.complete)
    }

    /// The one range to ask the next tier for so that, combined with this span, the result
    /// holds `start..=end` as a single span: the gap on one side, or the whole of
    /// `start..=end` when it sticks out on both sides. `None` when nothing is missing.
    pub(crate) fn missing(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        if self.holds(start, end) {
            None
        } else if start < self.start && end > self.end {
            Some((start, end))
        } else if start < self.start {
            Some((start, self.start - 1))
        } else {
            Some((self.end + 1, end))
        }
    }
}

/// The strong `ETag` of a response, if it has one (RFC 9110 8.8.3: no `W/` prefix).
pub(crate) fn strong_etag(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(ETAG)?.to_str().ok()?.trim();
    (v.starts_with('"') && v.len() >= 2 && v.ends_with('"')).then_some(v)
}

/// Combines two spans of one representation (`a` with body `a_body`, `b` with `b_body`) into
/// one, when they touch or overlap; where they overlap, `b` (the newer) wins. `None` when they
/// are of different lengths, leave a gap, or a body does not match its span.
pub(crate) fn combine(a: Span, a_body: &Bytes, b: Span, b_body: &Bytes) -> Option<(Span, Bytes)> {
    if a.complete != b.complete
        || a_body.len() as u64 != a.len()
        || b_body.len() as u64 != b.len()
        || a.start > b.end.saturating_add(1)
        || b.start > a.end.saturating_add(1)
    {
        return None;
    }
    let span = Span {
        start: a.start.min(b.start),
        end: a.end.max(b.end),
        complete: a.complete,
    };
    let mut out = BytesMut::with_capacity(usize::try_from(span.len()).ok()?);
    // What `a` holds before `b` starts, then all of `b`, then what `a` holds after `b` ends.
    if a.start < b.start {
        out.extend_from_slice(&a_body[..(b.start - a.start) as usize]);
    }
    out.extend_from_slice(b_body);
    if a.end > b.end {
        out.extend_from_slice(&a_body[(b.end + 1 - a.start) as usize..]);
    }
    Some((span, out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(start: u64, end: u64, complete: u64) -> Span {
        Span {
            start,
            end,
            complete,
        }
    }

    #[test]
    fn content_range_is_read_strictly() {
        assert_eq!(Span::parse("bytes 4-9/10"), Some(span(4, 9, 10)));
        assert_eq!(Span::parse(" bytes 0-0/1 "), Some(span(0, 0, 1)));
        for bad in [
            "bytes 4-9/*",
            "bytes */10",
            "bytes 9-4/10",
            "bytes 4-10/10",
            "bytes 4-9",
            "items 4-9/10",
            "bytes -9/10",
            "bytes 4-9/1x",
            "bytes 4-9/99999999999999999999999",
            "",
        ] {
            assert_eq!(Span::parse(bad), None, "{bad}");
        }
        let mut h = HeaderMap::new();
        h.append(CONTENT_RANGE, "bytes 0-4/10".parse().unwrap());
        assert_eq!(Span::of(&h), Some(span(0, 4, 10)));
        h.append(CONTENT_RANGE, "bytes 5-9/10".parse().unwrap());
        assert_eq!(Span::of(&h), None, "two Content-Range fields");
    }

    #[test]
    fn what_is_missing_makes_one_span() {
        let s = span(4, 9, 20);
        assert_eq!(s.missing(5, 8), None);
        assert_eq!(s.missing(0, 5), Some((0, 3)));
        assert_eq!(s.missing(8, 19), Some((10, 19)));
        assert_eq!(s.missing(15, 19), Some((10, 19)), "a gap is filled too");
        assert_eq!(s.missing(0, 1), Some((0, 3)));
        assert_eq!(s.missing(0, 19), Some((0, 19)), "both sides: all of it");
        assert!(span(0, 19, 20).is_whole());
        assert!(!s.is_whole());
    }

    #[test]
    fn spans_combine_when_they_touch() {
        let a = Bytes::from_static(b"01234");
        let b = Bytes::from_static(b"56789");
        let (s, body) = combine(span(0, 4, 10), &a, span(5, 9, 10), &b).unwrap();
        assert_eq!((s, &body[..]), (span(0, 9, 10), &b"0123456789"[..]));
        assert!(s.is_whole());
        let (s, body) = combine(span(5, 9, 10), &b, span(0, 4, 10), &a).unwrap();
        assert_eq!((s, &body[..]), (span(0, 9, 10), &b"0123456789"[..]));
        // Overlap: the newer bytes win.
        let new = Bytes::from_static(b"xyz");
        let (s, body) = combine(span(0, 4, 10), &a, span(3, 5, 10), &new).unwrap();
        assert_eq!((s, &body[..]), (span(0, 5, 10), &b"012xyz"[..]));
        let (s, body) = combine(span(0, 4, 10), &a, span(1, 2, 10), &new.slice(..2)).unwrap();
        assert_eq!((s, &body[..]), (span(0, 4, 10), &b"0xy34"[..]));
        // A gap, another length, or a body that does not fit its span: no.
        assert!(combine(span(0, 3, 10), &a.slice(..4), span(5, 9, 10), &b).is_none());
        assert!(combine(span(0, 4, 10), &a, span(5, 9, 11), &b).is_none());
        assert!(combine(span(0, 5, 10), &a, span(5, 9, 10), &b).is_none());
    }

    #[test]
    fn only_strong_etags_combine() {
        let mut h = HeaderMap::new();
        assert_eq!(strong_etag(&h), None);
        h.insert(ETAG, "W/\"a\"".parse().unwrap());
        assert_eq!(strong_etag(&h), None);
        h.insert(ETAG, "\"a\"".parse().unwrap());
        assert_eq!(strong_etag(&h), Some("\"a\""));
        h.insert(ETAG, "a".parse().unwrap());
        assert_eq!(strong_etag(&h), None);
    }
}
