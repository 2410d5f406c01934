//! Compression for clients: which stored responses may be compressed, and the encoders.
//!
//! The cache stores what the origin sent. When compression is configured and a stored response
//! is uncompressed, of a compressible type and size, the fill task also keeps gzip and/or br
//! encodings of it (made once, off the async workers), and hits pick one by the client's
//! `Accept-Encoding`. Such responses always carry `Vary: Accept-Encoding`.

use bytes::Bytes;
use std::io::Write;

/// A content coding the edge can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Coding {
    /// gzip (RFC 1952), level 6.
    Gzip,
    /// Brotli (RFC 7932), quality 5.
    Br,
}

impl Coding {
    /// The token in `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Br => "br",
        }
    }

    /// Encodes `body`.
    pub fn encode(self, body: &[u8]) -> std::io::Result<Bytes> {
        match self {
            Coding::Gzip => {
                let mut e = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 3 + 64),
                    flate2::Compression::new(6),
                );
                e.write_all(body)?;
                Ok(Bytes::from(e.finish()?))
            }
            Coding::Br => {
                let mut out = Vec::with_capacity(body.len() / 3 + 64);
                {
                    let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                    w.write_all(body)?;
                    w.flush()?;
                }
                Ok(Bytes::from(out))
            }
        }
    }
}

/// Which responses get compressed.
#[derive(Debug, Clone)]
pub(crate) struct CompressRules {
    /// Codings to produce, in order of preference.
    pub codings: Vec<Coding>,
    /// Media types (`text/*` matches a major type), compared without parameters.
    pub types: Vec<String>,
    /// Smallest body worth compressing.
    pub min_bytes: u64,
}

impl CompressRules {
    /// Whether a response with this `Content-Type`, `Content-Encoding`, `Cache-Control` and
    /// body size may be compressed.
    pub(crate) fn applies(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
        cache_control: Option<&str>,
        len: u64,
    ) -> bool {
        if self.codings.is_empty() || len < self.min_bytes {
            return false;
        }
        if content_encoding.is_some_and(|e| !e.trim().eq_ignore_ascii_case("identity")) {
            return false;
        }
        // no-transform forbids changing the representation (RFC 9111 section 5.2.2.6).
        if cache_control.is_some_and(|cc| cc.to_ascii_lowercase().contains("no-transform")) {
            return false;
        }
        let Some(ct) = content_type else { return false };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        self.types.iter().any(|t| match t.strip_suffix("/*") {
            Some("*") => true,
            Some(major) => mime.split('/').next() == Some(major),
            None => *t == mime,
        })
    }
}

/// The default compressible types.
pub(crate) fn default_types() -> Vec<String> {
    [
        "text/*",
        "application/json",
        "application/javascript",
        "application/xml",
        "application/manifest+json",
        "application/wasm",
        "image/svg+xml",
        "font/ttf",
        "font/otf",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The coding to use for a client whose normalised `Accept-Encoding` is `accepted`
/// (see `vary::normalized_accept_encoding`), among those `available`.
pub(crate) fn choose(accepted: Option<&str>, available: &[(Coding, Bytes)]) -> Option<usize> {
    let accepted = accepted?;
    let wants = |c: Coding| accepted.split(", ").any(|t| t == c.token());
    // Prefer br, then gzip.
    for c in [Coding::Br, Coding::Gzip] {
        if wants(c) {
            if let Some(i) = available.iter().position(|(a, _)| *a == c) {
                return Some(i);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn rules() -> CompressRules {
        CompressRules {
            codings: vec![Coding::Gzip, Coding::Br],
            types: default_types(),
            min_bytes: 100,
        }
    }

    #[test]
    fn applies_table() {
        let r = rules();
        assert!(r.applies(Some("text/html; charset=utf-8"), None, None, 1000));
        assert!(r.applies(Some("Application/JSON"), Some("identity"), None, 1000));
        assert!(!r.applies(Some("image/png"), None, None, 1000));
        assert!(!r.applies(Some("text/css"), Some("gzip"), None, 1000));
        assert!(!r.applies(
            Some("text/css"),
            None,
            Some("max-age=1, no-transform"),
            1000
        ));
        assert!(!r.applies(Some("text/css"), None, None, 99));
        assert!(!r.applies(None, None, None, 1000));
        let off = CompressRules {
            codings: vec![],
            ..rules()
        };
        assert!(!off.applies(Some("text/css"), None, None, 1000));
    }

    #[test]
    fn encodings_round_trip() {
        let body = "hello compressible world ".repeat(100);
        let gz = Coding::Gzip.encode(body.as_bytes()).unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, body);
        let br = Coding::Br.encode(body.as_bytes()).unwrap();
        let mut out = Vec::new();
        brotli::Decompressor::new(&br[..], 4096)
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body.as_bytes());
        assert!(br.len() < body.len() / 5 && gz.len() < body.len() / 5);
    }

    #[test]
    fn choice_follows_accept_encoding() {
        let both = vec![(Coding::Gzip, Bytes::new()), (Coding::Br, Bytes::new())];
        assert_eq!(choose(Some("gzip, br"), &both), Some(1));
        assert_eq!(choose(Some("gzip"), &both), Some(0));
        assert_eq!(choose(None, &both), None);
        assert_eq!(choose(Some("br"), &both[..1]), None);
    }
}
