//! A stored response: status, compact headers, body and freshness record.

use super::compress::Coding;
use super::headers::StoredHeaders;
use super::policy::Freshness;
use bytes::Bytes;
use http::StatusCode;
use std::borrow::Cow;

/// Approximate fixed cost of one stored object beyond its header block and body: the object
/// and its `Arc` (128 bytes), the body's shared-buffer record (made on the first hit), the
/// allocator's rounding, and the tier's table beyond the slot. The tier's own slot for the URL
/// is `ENTRY_OVERHEAD` (`memory.rs`). Measured (`benches/load/memory.sh`, release build with
/// jemalloc, 20,000 1 KiB objects from nginx, 92-byte header blocks): RSS grows 1,457 B per
/// object, which is the body, the block, the slot's 64 and this 280. It was 416 (1,678 B per
/// object) before the object shrank to 128 bytes, dates were kept as seconds and the block
/// lost its shared-buffer record; 672 with moka as the tier.
pub(crate) const OBJECT_OVERHEAD: usize = 280;

/// An immutable cached response. Updates (a 304 refresh) make a new object.
#[derive(Debug)]
pub struct Object {
    /// Response status.
    pub status: StatusCode,
    /// Stored header fields (hop-by-hop, `Age`, targeted cache fields removed).
    pub headers: StoredHeaders,
    /// The whole body, in one exact-size allocation.
    pub body: Bytes,
    /// Freshness and retention timings.
    pub fresh: Freshness,
    /// Its purge tags and the compressed forms the edge made of it, which most objects lack.
    pub extras: Extras,
    /// The purge version applied when the fetch that made this object started: purges newer
    /// than this cover it.
    pub purge_version: u64,
}

impl Object {
    /// A response to store: `headers` as the next tier sent them (hop-by-hop fields, `Age`,
    /// `Set-Cookie` and `Surrogate-Control` are left out; `Surrogate-Key` and `Cache-Tag`
    /// give its purge tags), its whole `body`, and its freshness (see
    /// [`Freshness::for_ttl`]).
    pub fn new(
        status: StatusCode,
        headers: &http::HeaderMap,
        body: Bytes,
        fresh: Freshness,
    ) -> Self {
        Object {
            status,
            headers: StoredHeaders::from_map(headers, crate::proxy::headers::stored),
            body,
            fresh,
            extras: Extras::new(
                Box::default(),
                crate::purge::event::response_tags(headers)
                    .into_iter()
                    .map(String::into_boxed_str)
                    .collect(),
            ),
            purge_version: 0,
        }
    }

    /// Compressed forms of `body` made by the edge (see `compress.rs`); empty when none.
    pub fn encoded(&self) -> &[(Coding, Bytes)] {
        self.extras.encoded()
    }

    /// Purge tags (`Surrogate-Key`, `Cache-Tag`).
    pub fn tags(&self) -> &[Box<str>] {
        self.extras.tags()
    }

    /// Bytes this object is charged against the memory tier.
    pub fn weight(&self) -> usize {
        self.body.len()
            + self.headers.len()
            + OBJECT_OVERHEAD
            + self.tags().iter().map(|t| t.len() + 16).sum::<usize>()
            + self
                .encoded()
                .iter()
                .map(|(_, b)| b.len() + 16)
                .sum::<usize>()
    }

    /// A copy made stale at `at_ms` (a soft purge): stale-while-revalidate and stale-if-error
    /// windows then count from that moment.
    pub fn stale_since(&self, at_ms: u64) -> Object {
        let mut fresh = self.fresh;
        fresh.fresh_until_ms = fresh.fresh_until_ms.min(at_ms);
        Object {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            fresh,
            extras: self.extras.clone(),
            purge_version: self.purge_version,
        }
    }

    /// The stored `ETag`, if any.
    pub fn etag(&self) -> Option<Cow<'_, str>> {
        self.headers.get_str("etag")
    }

    /// The span of the representation a stored 206 holds (`parts.rs`); `None` for a complete
    /// response.
    pub(crate) fn span(&self) -> Option<super::parts::Span> {
        if self.status != StatusCode::PARTIAL_CONTENT {
            return None;
        }
        super::parts::Span::parse(&self.headers.get_str("content-range")?)
    }

    /// Whether it holds only part of its representation: it answers only ranges within that
    /// part, never a request for the whole.
    pub(crate) fn is_partial(&self) -> bool {
        self.status == StatusCode::PARTIAL_CONTENT
    }

    /// The stored `Last-Modified`, if any.
    pub fn last_modified(&self) -> Option<Cow<'_, str>> {
        self.headers.get_str("last-modified")
    }
}

/// What some objects carry and most do not: purge tags and compressed forms. One pointer in
/// the object, null when there is neither, instead of two empty lists of two words each.
#[derive(Debug, Clone, Default)]
pub struct Extras(Option<Box<ExtraLists>>);

#[derive(Debug, Clone)]
struct ExtraLists {
    encoded: Box<[(Coding, Bytes)]>,
    tags: Box<[Box<str>]>,
}

impl Extras {
    /// Compressed forms and purge tags, either or both empty.
    pub fn new(encoded: Box<[(Coding, Bytes)]>, tags: Box<[Box<str>]>) -> Self {
        if encoded.is_empty() && tags.is_empty() {
            return Extras(None);
        }
        Extras(Some(Box::new(ExtraLists { encoded, tags })))
    }

    /// Compressed forms of the body; empty when none.
    pub fn encoded(&self) -> &[(Coding, Bytes)] {
        self.0.as_ref().map_or(&[], |e| &e.encoded)
    }

    /// Purge tags; empty when none.
    pub fn tags(&self) -> &[Box<str>] {
        self.0.as_ref().map_or(&[], |e| &e.tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object and its `Arc` fit a 128-byte allocation (jemalloc's size class; 144 bytes
    /// would take 160): every cached object pays for each field here.
    #[test]
    fn an_object_and_its_arc_fit_128_bytes() {
        assert!(
            std::mem::size_of::<Object>() + 16 <= 128,
            "{}",
            std::mem::size_of::<Object>()
        );
        assert_eq!(std::mem::size_of::<Extras>(), 8);
    }

    #[test]
    fn extras_hold_tags_and_forms_or_nothing() {
        assert!(Extras::new(Box::default(), Box::default()).0.is_none());
        let tagged = Extras::new(Box::default(), vec!["t".into()].into());
        assert_eq!(tagged.tags(), &["t".into()]);
        assert!(tagged.encoded().is_empty());
        let both = Extras::new(
            vec![(Coding::Gzip, Bytes::from_static(b"z"))].into(),
            tagged.tags().into(),
        );
        assert_eq!(both.tags().len(), 1);
        assert_eq!(both.encoded().len(), 1);
    }
}
