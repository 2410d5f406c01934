//! Every parser that faces untrusted bytes, fed random and mutated input (the PROXY header and
//! the forwarding fields among them): it must answer (accept or refuse), never panic. A seeded
//! generator keeps failures reproducible.

#![cfg(test)]
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
use crate::cache::disk::format;
use crate::cache::headers::StoredHeaders;
use crate::cache::key::{normalize_host, normalize_query, QueryMode};
use crate::cache::policy::{decide, directives, PolicyOptions};
use crate::cache::vary::{normalized_accept_encoding, VarySpec};
use crate::proxy::conditional::{if_range_matches, not_modified};
use crate::proxy::range::evaluate;
use crate::purge::event::PurgeRequest;
use http::{HeaderMap, HeaderValue};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// A string built from pieces that matter to HTTP parsers, and random bytes.
    fn text(&mut self) -> String {
        const PIECES: &[&str] = &[
            "bytes=",
            "-",
            ",",
            "=",
            "\"",
            ";",
            "q=",
            "0",
            "1",
            "99999999999999999999",
            " ",
            "\t",
            "max-age",
            "s-maxage",
            "no-cache",
            "private",
            "W/",
            "*",
            "gzip",
            "br",
            "identity",
            "é",
            "\u{0}",
            "stale-if-error",
            "a",
            ":",
            "[",
            "]",
            ".",
        ];
        let mut s = String::new();
        for _ in 0..self.below(12) {
            if self.below(4) == 0 {
                s.push(char::from_u32((self.next() % 0x250) as u32).unwrap_or('x'));
            } else {
                s.push_str(PIECES[self.below(PIECES.len())]);
            }
        }
        s
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..self.below(n)).map(|_| self.next() as u8).collect()
    }
}

fn header(name: &'static str, v: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(v) {
        h.insert(name, v);
    }
    h
}

#[test]
fn http_field_parsers_never_panic() {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..20_000 {
        let t = r.text();
        let len = r.next() % 100_000;
        let _ = evaluate(Some(&t), len);
        let _ = directives(&t).count();
        let _ = normalize_host(&t);
        let _ = normalize_query(Some(&t), QueryMode::Sort, &["utm_*".into()]);
        let _ = normalized_accept_encoding(&header("accept-encoding", &t));
        let _ = VarySpec::from_response(&header("vary", &t))
            .map(|s| s.values(&header("accept-language", &t)));
        let h = header("if-none-match", &t);
        let _ = not_modified(&h, Some(&t), Some(&t));
        let _ = not_modified(&header("if-modified-since", &t), None, Some(&t));
        let _ = if_range_matches(&header("if-range", &t), Some(&t), Some(&t));
        let req = http::Request::get("http://a.test/")
            .header(
                "cache-control",
                HeaderValue::from_str(&t).unwrap_or(HeaderValue::from_static("x")),
            )
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let mut res = http::Response::new(()).into_parts().0;
        for name in [
            "cache-control",
            "cdn-cache-control",
            "expires",
            "age",
            "last-modified",
            "date",
        ] {
            if let Ok(v) = HeaderValue::from_str(&r.text()) {
                res.headers.insert(name, v);
            }
        }
        let _ = decide(
            &req,
            &res,
            std::time::SystemTime::now(),
            &PolicyOptions::default(),
        );
    }
}

#[test]
fn client_addresses_and_proxy_headers_never_panic() {
    use crate::client_addr::{ClientAddr, Networks};
    use crate::config::RealIpHeader;
    use crate::listener::proxy_protocol::parse;
    let trusted = Networks::parse(&["127.0.0.0/8".into(), "::1".into()]).unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let xff = ClientAddr::new(trusted.clone(), RealIpHeader::XForwardedFor);
    let fwd = ClientAddr::new(trusted, RealIpHeader::Forwarded);
    let mut r = Rng(0xC0FF_EE00_1234_5678);
    let v1 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x10".to_vec();
    v2.extend_from_slice(&[
        203, 0, 113, 7, 10, 0, 0, 1, 0x12, 0x67, 0x01, 0xBB, 4, 0, 1, 0,
    ]);
    for _ in 0..20_000 {
        let t = format!("{}, for={}; {}", r.text(), r.text(), r.text());
        let _ = xff.resolve(&header("x-forwarded-for", &t), peer);
        let _ = fwd.resolve(&header("forwarded", &t), peer);
        let _ = parse(&r.bytes(200));
        for base in [&v1, &v2] {
            let mut m = base.clone();
            for _ in 0..=r.below(3) {
                let i = r.below(m.len());
                m[i] = r.next() as u8;
            }
            m.truncate(r.below(m.len() + 1));
            let _ = parse(&m);
        }
    }
}

#[test]
fn purge_json_never_panics() {
    let mut r = Rng(42);
    let seeds = [
        r#"{"urls":["https://a.test/x"]}"#,
        r#"{"tags":["a","b"],"soft":true}"#,
        r#"{"prefixes":["http://b.test/"]}"#,
        r#"{"all":true}"#,
    ];
    for i in 0..20_000 {
        let mut b = seeds[i % seeds.len()].as_bytes().to_vec();
        for _ in 0..r.below(4) {
            let at = r.below(b.len());
            match r.below(3) {
                0 => b[at] = r.next() as u8,
                1 => {
                    b.remove(at);
                }
                _ => b.insert(at, r.next() as u8),
            }
        }
        if let Ok(req) = serde_json::from_slice::<PurgeRequest>(&b) {
            let _ = req.target();
        }
    }
}

#[test]
fn disk_entries_and_header_blocks_never_panic() {
    let mut r = Rng(7);
    let mut h = HeaderMap::new();
    h.insert("content-type", HeaderValue::from_static("text/plain"));
    let meta = format::Meta {
        key: crate::cache::key::CacheKey(5),
        status: http::StatusCode::OK,
        fresh: crate::cache::policy::Freshness {
            response_time_ms: 1,
            initial_age_ms: 0,
            fresh_until_ms: 2,
            swr_ms: 0,
            sie_ms: 0,
            unreachable_ms: 0,
            keep_until_ms: 3,
        },
        purge_version: 1,
        vary: None,
        values: Box::new([]),
        tags: Box::new([]),
        headers: StoredHeaders::from_map(&h, |_| true),
    };
    let head = format::encode_head(&meta, 10).to_vec();
    for _ in 0..20_000 {
        let mut b = head.clone();
        for _ in 0..1 + r.below(3) {
            let at = r.below(b.len());
            b[at] = r.next() as u8;
        }
        if let Ok(hd) = format::decode_header(&b) {
            let end = (format::HEADER_LEN as usize + hd.meta_len as usize).min(b.len());
            let _ = format::decode_meta(&hd, &b[(format::HEADER_LEN as usize).min(end)..end]);
        }
        let _ = format::decode_tail(&r.bytes(64), r.next() % 8);
        let block = StoredHeaders::from_block(&r.bytes(200));
        let _ = block.to_map();
        let _ = block.get("content-type");
    }
}
