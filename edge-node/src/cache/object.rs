//! A stored response: status, compact headers, body and freshness record.

use super::compress::Coding;
use super::headers::StoredHeaders;
use super::policy::Freshness;
use bytes::Bytes;
use http::StatusCode;

/// Approximate fixed cost of one stored object beyond its header block and body: the object
/// and its `Arc`, the shared-buffer records of body and block (made on the first hit), and the
/// allocator's rounding of each. The tier's own slot for the URL is `ENTRY_OVERHEAD`
/// (`memory.rs`). Measured (`benches/load/memory.sh`, release build with jemalloc, 20,000 1 KiB
/// objects from nginx, 176-byte header blocks): RSS grows 1,678 B per object, which is the
/// body, the block, the slot's 64 and this 416. It was 672 with moka as the tier, a separate
/// entry allocation per URL and header names spelled out.
pub(crate) const OBJECT_OVERHEAD: usize = 416;

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
    /// Compressed forms of `body` made by the edge (see `compress.rs`); empty when none.
    pub encoded: Box<[(Coding, Bytes)]>,
    /// Purge tags (`Surrogate-Key`, `Cache-Tag`).
    pub tags: Box<[Box<str>]>,
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
            encoded: Box::default(),
            tags: crate::purge::event::response_tags(headers)
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
            purge_version: 0,
        }
    }

    /// Bytes this object is charged against the memory tier.
    pub fn weight(&self) -> usize {
        self.body.len()
            + self.headers.len()
            + OBJECT_OVERHEAD
            + self.tags.iter().map(|t| t.len() + 16).sum::<usize>()
            + self
                .encoded
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
            encoded: self.encoded.clone(),
            tags: self.tags.clone(),
            purge_version: self.purge_version,
        }
    }

    /// The stored `ETag`, if any.
    pub fn etag(&self) -> Option<&str> {
        self.headers.get_str("etag")
    }

    /// The span of the representation a stored 206 holds (`parts.rs`); `None` for a complete
    /// response.
    pub(crate) fn span(&self) -> Option<super::parts::Span> {
        if self.status != StatusCode::PARTIAL_CONTENT {
            return None;
        }
        super::parts::Span::parse(self.headers.get_str("content-range")?)
    }

    /// Whether it holds only part of its representation: it answers only ranges within that
    /// part, never a request for the whole.
    pub(crate) fn is_partial(&self) -> bool {
        self.status == StatusCode::PARTIAL_CONTENT
    }

    /// The stored `Last-Modified`, if any.
    pub fn last_modified(&self) -> Option<&str> {
        self.headers.get_str("last-modified")
    }
}
