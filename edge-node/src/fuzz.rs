//! Entry points for `cargo fuzz` (edge-node/fuzz): one per parser that reads untrusted
//! bytes, each taking arbitrary input and checking it answers (accepts or refuses) without
//! panicking. Compiled only under `--cfg fuzzing`, which cargo-fuzz sets; the seeded random
//! tests in `garbage.rs` cover the same parsers in every test run.

use crate::cache::disk::format;
use crate::cache::headers::StoredHeaders;
use crate::cache::policy::{decide, PolicyOptions};
use crate::proxy::conditional::{if_range_matches, not_modified};
use crate::proxy::range::evaluate;
use crate::purge::event::PurgeRequest;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};

/// Splits `data` at NUL bytes into up to `n` fields.
fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, b"");
    out
}

fn value(b: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(b).ok()
}

/// Cache-Control, CDN-Cache-Control, Surrogate-Control, Expires, Age, Date, Last-Modified,
/// Vary and Set-Cookie of a response (and Cache-Control of its request) through the storage
/// and freshness policy, with and without a rule's TTL.
pub fn cache_control(data: &[u8]) {
    let f = fields(data, 9);
    let mut req = http::Request::get("http://a.test/").body(()).map_or_else(
        |_| http::Request::new(()).into_parts().0,
        |r| r.into_parts().0,
    );
    if let Some(v) = value(f[0]) {
        req.headers.insert(http::header::CACHE_CONTROL, v);
    }
    let mut res = http::Response::new(()).into_parts().0;
    let names = [
        "cache-control",
        "cdn-cache-control",
        "surrogate-control",
        "expires",
        "age",
        "date",
        "last-modified",
        "vary",
    ];
    for (name, raw) in names.iter().zip(&f[1..]) {
        if let Some(v) = value(raw) {
            res.headers.insert(*name, v);
        }
    }
    let mut opts = PolicyOptions::default();
    let _ = decide(&req, &res, std::time::SystemTime::now(), &opts);
    opts.rule.ttl = Some(std::time::Duration::from_secs(60));
    opts.rule.ttl_override = data.first().is_some_and(|b| b & 1 == 1);
    let _ = decide(&req, &res, std::time::SystemTime::now(), &opts);
}

/// A Range header against a representation of some length.
pub fn range(data: &[u8]) {
    let (len, rest) = match data.split_first_chunk::<8>() {
        Some((n, rest)) => (u64::from_le_bytes(*n), rest),
        None => (1000, data),
    };
    if let Ok(s) = std::str::from_utf8(rest) {
        let _ = evaluate(Some(s), len);
    }
}

/// If-None-Match, If-Modified-Since and If-Range against a stored ETag and Last-Modified.
pub fn conditional(data: &[u8]) {
    let f = fields(data, 4);
    let etag = std::str::from_utf8(f[2]).ok();
    let lm = std::str::from_utf8(f[3]).ok();
    let mut h = HeaderMap::new();
    if let Some(v) = value(f[0]) {
        h.insert(http::header::IF_NONE_MATCH, v.clone());
        h.insert(http::header::IF_RANGE, v);
    }
    if let Some(v) = value(f[1]) {
        h.insert(http::header::IF_MODIFIED_SINCE, v);
    }
    let _ = not_modified(&h, etag, lm);
    let _ = if_range_matches(&h, etag, lm);
}

/// A `POST /purge` body.
pub fn purge_json(data: &[u8]) {
    if let Ok(req) = serde_json::from_slice::<PurgeRequest>(data) {
        let _ = req.target();
    }
}

/// A stored header block, as the memory and disk tiers keep it.
pub fn header_block(data: &[u8]) {
    let block = StoredHeaders::from_block(data);
    let _ = block.to_map();
    let _ = block.get("content-type");
}

/// A disk tier entry: its fixed header, its metadata and its tail.
pub fn disk_entry(data: &[u8]) {
    if let Ok(hd) = format::decode_header(data) {
        let start = (format::HEADER_LEN as usize).min(data.len());
        let end = (start + hd.meta_len as usize).min(data.len());
        let _ = format::decode_meta(&hd, &data[start..end]);
    }
    let _ = format::decode_tail(data, data.len() as u64 % 8);
}
