//! The on-disk entry format. Pure: encoding and decoding only, table-tested.
//!
//! One file per stored response:
//!
//! ```text
//! header   "OPOBJ003" | meta_len u32 | body_len u64 | block_size u32 | meta_sum u64
//! meta     status, freshness, purge version, Vary names and values, tags, header block
//! body     body_len bytes
//! sums     one xxh3-64 per block of `block_size` body bytes
//! trailer  "OPEND001" | sums_sum u64
//! ```
//!
//! Every part is checked on read: the header and meta by `meta_sum`, each body block by its own
//! sum (so a Range read verifies only the blocks it sends), and the sum table by `sums_sum`. A
//! file is written under a temporary name and renamed when complete, so a half-written file is
//! never found; a damaged one fails its checks and is dropped, never served.

use crate::cache::headers::StoredHeaders;
use crate::cache::key::CacheKey;
use crate::cache::policy::Freshness;
use crate::cache::vary::{VarySpec, VaryValues};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderName, StatusCode};
use xxhash_rust::xxh3::xxh3_64;

/// File magic at the start. Version 2 adds the unreachable window to the freshness record;
/// version 3 may hold dates as seconds in the header block (`headers.rs`), which versions
/// before it would misread, so they do not take its files.
pub(crate) const MAGIC: &[u8; 8] = b"OPOBJ003";
/// The magic of version 2 files, still read.
const MAGIC_V2: &[u8; 8] = b"OPOBJ002";
/// The magic of version 1 files, still read (their unreachable window is 0).
const MAGIC_V1: &[u8; 8] = b"OPOBJ001";
/// Magic of the trailer.
pub(crate) const END: &[u8; 8] = b"OPEND001";
/// Bytes of the fixed header.
pub(crate) const HEADER_LEN: u64 = 8 + 4 + 8 + 4 + 8;
/// Bytes per checksummed body block.
pub(crate) const BLOCK: u32 = 256 * 1024;

/// Everything about a stored response but its body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Meta {
    /// The URL key.
    pub key: CacheKey,
    /// Status.
    pub status: StatusCode,
    /// Freshness record.
    pub fresh: Freshness,
    /// Purge version the fetch started under.
    pub purge_version: u64,
    /// What the URL varies on.
    pub vary: Option<VarySpec>,
    /// This variant's request values.
    pub values: VaryValues,
    /// Purge tags.
    pub tags: Box<[Box<str>]>,
    /// Stored header fields.
    pub headers: StoredHeaders,
}

/// Why an entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FormatError {
    /// Not an entry, or a different version.
    #[error("bad magic")]
    Magic,
    /// Ends before it should.
    #[error("truncated")]
    Truncated,
    /// A checksum does not match.
    #[error("checksum mismatch in {0}")]
    Checksum(&'static str),
    /// The meta block does not decode.
    #[error("malformed meta: {0}")]
    Meta(&'static str),
}

/// The fixed header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// Bytes of meta.
    pub meta_len: u32,
    /// Bytes of body.
    pub body_len: u64,
    /// Bytes per body block.
    pub block_size: u32,
    /// Checksum of the meta bytes.
    pub meta_sum: u64,
    /// Format version (1, 2 or 3).
    pub version: u8,
}

impl Header {
    /// Offset of the body in the file.
    pub(crate) fn body_offset(&self) -> u64 {
        HEADER_LEN + u64::from(self.meta_len)
    }

    /// Number of body blocks.
    pub(crate) fn blocks(&self) -> u64 {
        self.body_len.div_ceil(u64::from(self.block_size.max(1)))
    }

    /// Offset of the checksum table.
    pub(crate) fn sums_offset(&self) -> u64 {
        self.body_offset() + self.body_len
    }

    /// Total file length.
    pub(crate) fn file_len(&self) -> u64 {
        self.sums_offset() + self.blocks() * 8 + 16
    }
}

/// Encodes the fixed header and the meta.
pub(crate) fn encode_head(meta: &Meta, body_len: u64) -> Bytes {
    let m = encode_meta(meta);
    let mut b = BytesMut::with_capacity(HEADER_LEN as usize + m.len());
    b.put_slice(MAGIC);
    b.put_u32_le(m.len() as u32);
    b.put_u64_le(body_len);
    b.put_u32_le(BLOCK);
    b.put_u64_le(xxh3_64(&m));
    b.put_slice(&m);
    b.freeze()
}

/// Decodes the fixed header.
pub(crate) fn decode_header(b: &[u8]) -> Result<Header, FormatError> {
    if b.len() < HEADER_LEN as usize {
        return Err(FormatError::Truncated);
    }
    let version = match &b[..8] {
        m if m == MAGIC => 3,
        m if m == MAGIC_V2 => 2,
        m if m == MAGIC_V1 => 1,
        _ => return Err(FormatError::Magic),
    };
    let mut r = &b[8..];
    let h = Header {
        meta_len: r.get_u32_le(),
        body_len: r.get_u64_le(),
        block_size: r.get_u32_le(),
        meta_sum: r.get_u64_le(),
        version,
    };
    if h.block_size == 0 || h.meta_len > 16 << 20 {
        return Err(FormatError::Meta("impossible sizes"));
    }
    Ok(h)
}

/// Encodes the checksum table and trailer for body blocks with these sums.
pub(crate) fn encode_tail(sums: &[u64]) -> Bytes {
    let mut b = BytesMut::with_capacity(sums.len() * 8 + 16);
    for s in sums {
        b.put_u64_le(*s);
    }
    let table_sum = xxh3_64(&b);
    b.put_slice(END);
    b.put_u64_le(table_sum);
    b.freeze()
}

/// Decodes the checksum table and trailer (`b` is everything after the body).
pub(crate) fn decode_tail(b: &[u8], blocks: u64) -> Result<Vec<u64>, FormatError> {
    let n = usize::try_from(blocks).map_err(|_| FormatError::Meta("too many blocks"))?;
    if b.len() != n * 8 + 16 {
        return Err(FormatError::Truncated);
    }
    let (table, trailer) = b.split_at(n * 8);
    if &trailer[..8] != END {
        return Err(FormatError::Truncated);
    }
    if xxh3_64(table) != (&trailer[8..]).get_u64_le() {
        return Err(FormatError::Checksum("block table"));
    }
    Ok(table.chunks_exact(8).map(|mut c| c.get_u64_le()).collect())
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_u32_le(v.len() as u32);
    b.put_slice(v);
}

fn encode_meta(m: &Meta) -> Bytes {
    let mut b = BytesMut::with_capacity(256 + m.headers.len());
    b.put_u128_le(m.key.0);
    b.put_u16_le(m.status.as_u16());
    let f = &m.fresh;
    for v in [
        f.response_time_ms,
        u64::from(f.initial_age_ms),
        f.fresh_until_ms,
        u64::from(f.swr_ms),
        u64::from(f.sie_ms),
        f.keep_until_ms,
    ] {
        b.put_u64_le(v);
    }
    // Whether it has a validator: read by versions before 2026-12-03, derived from the
    // header block since.
    b.put_u8(u8::from(m.headers.has_validator()));
    b.put_u32_le(f.unreachable_ms);
    b.put_u64_le(m.purge_version);
    match &m.vary {
        None => b.put_u32_le(u32::MAX),
        Some(spec) => {
            b.put_u32_le(spec.0.len() as u32);
            for n in spec.0.iter() {
                put_bytes(&mut b, n.as_str().as_bytes());
            }
        }
    }
    b.put_u32_le(m.values.len() as u32);
    for v in m.values.iter() {
        match v {
            None => b.put_u8(0),
            Some(v) => {
                b.put_u8(1);
                put_bytes(&mut b, v);
            }
        }
    }
    b.put_u32_le(m.tags.len() as u32);
    for t in m.tags.iter() {
        put_bytes(&mut b, t.as_bytes());
    }
    put_bytes(&mut b, m.headers.as_bytes());
    b.freeze()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), FormatError> {
        if self.0.len() < n {
            Err(FormatError::Meta("short"))
        } else {
            Ok(())
        }
    }
    fn u8(&mut self) -> Result<u8, FormatError> {
        self.need(1)?;
        Ok(self.0.get_u8())
    }
    fn u16(&mut self) -> Result<u16, FormatError> {
        self.need(2)?;
        Ok(self.0.get_u16_le())
    }
    fn u32(&mut self) -> Result<u32, FormatError> {
        self.need(4)?;
        Ok(self.0.get_u32_le())
    }
    fn u64(&mut self) -> Result<u64, FormatError> {
        self.need(8)?;
        Ok(self.0.get_u64_le())
    }
    fn u128(&mut self) -> Result<u128, FormatError> {
        self.need(16)?;
        Ok(self.0.get_u128_le())
    }
    fn bytes(&mut self) -> Result<Bytes, FormatError> {
        let n = self.u32()? as usize;
        self.need(n)?;
        let v = Bytes::copy_from_slice(&self.0[..n]);
        self.0.advance(n);
        Ok(v)
    }
    fn count(&mut self, max: u32) -> Result<u32, FormatError> {
        let n = self.u32()?;
        if n > max {
            return Err(FormatError::Meta("count too large"));
        }
        Ok(n)
    }
}

/// Decodes and checks the meta block.
pub(crate) fn decode_meta(h: &Header, m: &[u8]) -> Result<Meta, FormatError> {
    if xxh3_64(m) != h.meta_sum {
        return Err(FormatError::Checksum("meta"));
    }
    let mut r = Reader(m);
    let key = CacheKey(r.u128()?);
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| FormatError::Meta("status"))?;
    let mut v = [0u64; 6];
    for x in &mut v {
        *x = r.u64()?;
    }
    let _has_validator = r.u8()?; // derived from the header block now
    let unreachable_ms = if h.version >= 2 { r.u32()? } else { 0 };
    let fresh = Freshness {
        response_time_ms: v[0],
        initial_age_ms: u32::try_from(v[1]).map_err(|_| FormatError::Meta("age"))?,
        fresh_until_ms: v[2],
        swr_ms: u32::try_from(v[3]).map_err(|_| FormatError::Meta("swr"))?,
        sie_ms: u32::try_from(v[4]).map_err(|_| FormatError::Meta("sie"))?,
        unreachable_ms,
        keep_until_ms: v[5],
    };
    let purge_version = r.u64()?;
    let vary = match r.u32()? {
        u32::MAX => None,
        n if n > 64 => return Err(FormatError::Meta("vary count")),
        n => {
            let mut names = Vec::with_capacity(n as usize);
            for _ in 0..n {
                names.push(
                    HeaderName::from_bytes(&r.bytes()?)
                        .map_err(|_| FormatError::Meta("vary name"))?,
                );
            }
            Some(VarySpec(names.into_boxed_slice()))
        }
    };
    let nv = r.count(64)?;
    let mut values = Vec::with_capacity(nv as usize);
    for _ in 0..nv {
        values.push(match r.u8()? {
            0 => None,
            _ => Some(r.bytes()?),
        });
    }
    let nt = r.count(1024)?;
    let mut tags = Vec::with_capacity(nt as usize);
    for _ in 0..nt {
        let t = r.bytes()?;
        tags.push(
            String::from_utf8(t.to_vec())
                .map_err(|_| FormatError::Meta("tag"))?
                .into_boxed_str(),
        );
    }
    let headers = StoredHeaders::from_block(&r.bytes()?);
    Ok(Meta {
        key,
        status,
        fresh,
        purge_version,
        vary,
        values: values.into_boxed_slice(),
        tags: tags.into_boxed_slice(),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        let mut h = http::HeaderMap::new();
        h.insert("content-type", "text/plain".parse().unwrap());
        h.insert("vary", "accept-encoding".parse().unwrap());
        Meta {
            key: CacheKey(0x1234_5678_9abc_def0_1122_3344_5566_7788),
            status: StatusCode::OK,
            fresh: Freshness {
                response_time_ms: 1,
                initial_age_ms: 2,
                fresh_until_ms: 3,
                swr_ms: 4,
                sie_ms: 5,
                unreachable_ms: 0,
                keep_until_ms: 6,
            },
            purge_version: 9,
            vary: VarySpec::from_response(&h),
            values: vec![Some(Bytes::from_static(b"gzip")), None].into_boxed_slice(),
            tags: vec!["a".into(), "b".into()].into_boxed_slice(),
            headers: StoredHeaders::from_map(&h, |_| true),
        }
    }

    #[test]
    fn round_trip() {
        let m = meta();
        let head = encode_head(&m, 1000);
        let h = decode_header(&head).unwrap();
        assert_eq!(h.body_len, 1000);
        assert_eq!(decode_meta(&h, &head[HEADER_LEN as usize..]).unwrap(), m);
        let tail = encode_tail(&[1, 2, 3]);
        assert_eq!(decode_tail(&tail, 3).unwrap(), [1, 2, 3]);
    }

    #[test]
    fn version_2_files_still_read() {
        // A version 2 file: the same layout, its header block written before dates were
        // kept as seconds.
        let mut m = meta();
        m.headers = StoredHeaders::from_block(
            b"content-type:text/plain\ndate:Sun, 06 Nov 1994 08:49:37 GMT\n",
        );
        let mut head = encode_head(&m, 5).to_vec();
        head[..8].copy_from_slice(MAGIC_V2);
        let h = decode_header(&head).unwrap();
        assert_eq!(h.version, 2);
        let back = decode_meta(&h, &head[HEADER_LEN as usize..]).unwrap();
        assert_eq!(
            back.headers.get_str("date").as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(back, m);
        // New files are version 3, with the date as seconds.
        let mut h2 = http::HeaderMap::new();
        h2.insert("date", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        m.headers = StoredHeaders::from_map(&h2, |_| true);
        let head = encode_head(&m, 5);
        let h = decode_header(&head).unwrap();
        assert_eq!(h.version, 3);
        let back = decode_meta(&h, &head[HEADER_LEN as usize..]).unwrap();
        assert_eq!(back.headers.len(), 5);
        assert_eq!(back.headers.to_map(), h2);
    }

    #[test]
    fn damage_is_detected() {
        let m = meta();
        let head = encode_head(&m, 10);
        let h = decode_header(&head).unwrap();
        let mut bad = head.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(
            decode_meta(&h, &bad[HEADER_LEN as usize..]),
            Err(FormatError::Checksum("meta"))
        );
        assert_eq!(
            decode_header(b"NOTANOBJ00000000000000000000000000000"),
            Err(FormatError::Magic)
        );
        assert_eq!(decode_header(&head[..10]), Err(FormatError::Truncated));
        let tail = encode_tail(&[7, 8]);
        assert_eq!(
            decode_tail(&tail[..tail.len() - 1], 2),
            Err(FormatError::Truncated)
        );
        let mut t = tail.to_vec();
        t[0] ^= 1;
        assert_eq!(
            decode_tail(&t, 2),
            Err(FormatError::Checksum("block table"))
        );
        // Fuzz-ish: every prefix of a valid meta fails cleanly, never panics.
        let mb = &head[HEADER_LEN as usize..];
        for i in 0..mb.len() {
            let h2 = Header {
                meta_sum: xxh3_64(&mb[..i]),
                meta_len: i as u32,
                ..h
            };
            assert!(decode_meta(&h2, &mb[..i]).is_err());
        }
    }
}
