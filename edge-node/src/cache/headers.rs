//! Stored response headers: one compact byte block per object instead of a `HeaderMap`.
//!
//! A `HeaderMap` costs several hundred bytes of bookkeeping per response; a cached 1 KiB object
//! must cost well under 1 KiB on top of its body. The block is built once at store time, in
//! one exact-size allocation, and turned back into a `HeaderMap` on each hit: the values are
//! copied (dates formatted) into one buffer that the map's values then share. The block holds
//! three kinds of field, one after the other:
//! - `name:value\n`, a field spelled out (header values cannot contain `\n`);
//! - a code byte then `value\n` for the [`KNOWN`] names most responses carry (codes 1-28 less
//!   `\n`: never the first byte of a field name), which also spares a hit parsing the name;
//! - a date code byte (29-31: `Date`, `Last-Modified`, `Expires`) then the date's seconds
//!   since the epoch, 4 bytes big-endian, no newline: stored only when formatting those
//!   seconds gives back the very bytes received ([`canonical_imf_secs`]).
//!
//! The ten fields nginx sends with a file are about 270 bytes spelled out, 176 coded and 98
//! with dates as seconds, which keeps the block in a 112-byte allocation instead of 320. Blocks
//! written spelled out or without date codes (by earlier versions, on disk) read the same.

use super::date::{canonical_imf_secs, fmt_imf_fixdate};
use bytes::{BufMut, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

/// A compact, immutable copy of a response's header fields.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoredHeaders {
    block: Box<[u8]>,
}

impl std::fmt::Debug for StoredHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.lines().map(|(n, v)| {
                (
                    String::from_utf8_lossy(n.bytes()),
                    String::from_utf8_lossy(&v.bytes()).into_owned(),
                )
            }))
            .finish()
    }
}

/// Field names stored as one code byte: the name at index `i` is coded `i + 1`, skipping
/// `\n` (10). At most 27 names (codes 1-28 less `\n`; 29-31 are the [`DATES`]). Append only:
/// blocks on disk hold codes.
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

/// Date fields stored as seconds: the field at index `i` is coded `DATE_CODE + i`.
static DATES: [HeaderName; 3] = [header::DATE, header::LAST_MODIFIED, header::EXPIRES];

/// The code of `DATES[0]`.
const DATE_CODE: u8 = 29;

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
        11..=28 => code - 2,
        _ => return None,
    };
    KNOWN.get(usize::from(i))
}

/// The code byte for `name`, if it has one.
fn code_for(name: &HeaderName) -> Option<u8> {
    KNOWN.iter().position(|k| k == name).map(code_of)
}

/// The date code for `name` with `value`, and the seconds to store, when both qualify.
fn date_code_for(name: &HeaderName, value: &HeaderValue) -> Option<(u8, u32)> {
    let i = DATES.iter().position(|d| d == name)?;
    Some((DATE_CODE + i as u8, canonical_imf_secs(value.as_bytes())?))
}

/// A block field's name: its code byte's, or what comes before its first `:`.
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

/// A block field's value: the bytes as received, or a date kept as seconds.
enum Value<'a> {
    Text(&'a [u8]),
    Date(u32),
}

impl<'a> Value<'a> {
    /// The value as sent.
    fn bytes(&self) -> Cow<'a, [u8]> {
        match self {
            Value::Text(t) => Cow::Borrowed(t),
            Value::Date(secs) => Cow::Owned(fmt_imf_fixdate(*secs).to_vec()),
        }
    }

    fn put(&self, out: &mut BytesMut) {
        match self {
            Value::Text(t) => out.put_slice(t),
            Value::Date(secs) => out.put_slice(&fmt_imf_fixdate(*secs)),
        }
    }
}

/// The fields of a block, in order. Lenient: a line without a name is skipped, and a date
/// cut short ends the block.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = (Name<'a>, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let first = *self.rest.first()?;
            if let Some(name) = first
                .checked_sub(DATE_CODE)
                .and_then(|i| DATES.get(usize::from(i)))
            {
                let Some(secs) = self.rest.get(1..5) else {
                    self.rest = &[];
                    return None;
                };
                let secs = u32::from_be_bytes([secs[0], secs[1], secs[2], secs[3]]);
                self.rest = &self.rest[5..];
                return Some((Name::Known(name), Value::Date(secs)));
            }
            let end = self
                .rest
                .iter()
                .position(|b| *b == b'\n')
                .unwrap_or(self.rest.len());
            let line = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if line.is_empty() {
                continue;
            }
            if let Some(n) = known(first) {
                return Some((Name::Known(n), Value::Text(&line[1..])));
            }
            if let Some(colon) = line.iter().position(|b| *b == b':') {
                return Some((
                    Name::Spelled(&line[..colon]),
                    Value::Text(&line[colon + 1..]),
                ));
            }
        }
    }
}

impl StoredHeaders {
    /// Copies the fields of `map` for which `keep` answers true.
    pub fn from_map(map: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> Self {
        // Room for every field spelled out; the block is cut to its exact size at the end.
        let room = map
            .iter()
            .filter(|(n, _)| keep(n))
            .map(|(n, v)| n.as_str().len() + v.len() + 2)
            .sum();
        let mut block = Vec::with_capacity(room);
        for (n, v) in map.iter().filter(|(n, _)| keep(n)) {
            if let Some((code, secs)) = date_code_for(n, v) {
                block.push(code);
                block.extend_from_slice(&secs.to_be_bytes());
                continue;
            }
            match code_for(n) {
                Some(code) => block.push(code),
                None => {
                    block.extend_from_slice(n.as_str().as_bytes());
                    block.push(b':');
                }
            }
            block.extend_from_slice(v.as_bytes());
            block.push(b'\n');
        }
        StoredHeaders {
            block: block.into_boxed_slice(),
        }
    }

    /// Wraps a block read back from storage (its fields are parsed leniently on use).
    pub fn from_block(block: &[u8]) -> Self {
        StoredHeaders {
            block: block.into(),
        }
    }

    /// The raw block (for persistence).
    pub fn as_bytes(&self) -> &[u8] {
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

    fn lines(&self) -> Fields<'_> {
        Fields { rest: &self.block }
    }

    /// The first value of `name` (lower-case), if stored.
    pub fn get(&self, name: &str) -> Option<Cow<'_, [u8]>> {
        self.lines()
            .find(|(n, _)| n.bytes() == name.as_bytes())
            .map(|(_, v)| v.bytes())
    }

    /// The first value of `name` as a string, if stored and valid UTF-8.
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        match self.get(name)? {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(b) => String::from_utf8(b).ok().map(Cow::Owned),
        }
    }

    /// Whether a validator (`ETag`, `Last-Modified`) is stored.
    pub fn has_validator(&self) -> bool {
        self.lines()
            .any(|(n, _)| matches!(n.bytes(), b"etag" | b"last-modified"))
    }

    /// Appends every stored field to `out`. The values are copied into one buffer, which
    /// they share.
    pub fn write_into(&self, out: &mut HeaderMap) {
        // Each date grows from 5 bytes to 29: three fit without growing the buffer.
        let mut values = BytesMut::with_capacity(self.block.len() + 3 * 24);
        for (n, v) in self.lines() {
            let name = match n {
                Name::Known(n) => n.clone(),
                Name::Spelled(n) => match HeaderName::from_bytes(n) {
                    Ok(n) => n,
                    Err(_) => continue,
                },
            };
            v.put(&mut values);
            // The written value, split off the buffer: its spare room stays for the next.
            let value = values.split().freeze();
            if let Ok(value) = HeaderValue::from_maybe_shared(value) {
                out.append(name, value);
            }
        }
    }

    /// A fresh `HeaderMap` with every stored field, and room for the fields an answer adds
    /// (`Age`, `Cache-Status`, `Via`, `Accept-Ranges`, `Content-Length`): nginx's nine stored
    /// fields and those five would outgrow a map made for 12, and growing it costs a hit about
    /// 85 ns (`benches/stored_headers.rs`, `hit_fields`).
    ///
    /// A block this thread has answered before may be built from the fields the thread kept
    /// of it, without decoding the block again (`cache/hot_headers.rs`).
    pub fn to_map(&self) -> HeaderMap {
        super::hot_headers::decoded(&self.block, 20, |capacity| {
            let mut m = HeaderMap::with_capacity(capacity);
            self.write_into(&mut m);
            m
        })
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
        assert_eq!(s.get_str("etag").as_deref(), Some("\"a:b\""));
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
        let spelled = StoredHeaders::from_block(
            b"server:nginx/1.22.1\netag:\"6930a1b2-400\"\nvary:accept-encoding\n\
              timing-allow-origin:*\nx-own:kept: spelled\n",
        );
        for s in [&coded, &spelled] {
            assert_eq!(s.to_map(), m);
            assert_eq!(s.get_str("vary").as_deref(), Some("accept-encoding"));
            assert_eq!(s.get_str("timing-allow-origin").as_deref(), Some("*"));
            assert_eq!(s.get_str("x-own").as_deref(), Some("kept: spelled"));
        }
        // Every code stands for its own name, and none is `\n`.
        for (i, name) in KNOWN.iter().enumerate() {
            let c = code_of(i);
            assert!((1..32).contains(&c) && c != b'\n', "{name}: {c}");
            assert_eq!(known(c), Some(name));
        }
        assert_eq!(known(b'\n'), None);
        assert_eq!(known(0), None);
        // The date codes follow the names' and stand for nothing else.
        assert!(code_of(KNOWN.len() - 1) < DATE_CODE);
        assert_eq!(usize::from(DATE_CODE) + DATES.len(), 32);
        for c in DATE_CODE..32 {
            assert_eq!(known(c), None);
        }
    }

    #[test]
    fn canonical_dates_are_stored_as_seconds_and_read_back_as_sent() {
        let mut m = HeaderMap::new();
        for (name, value) in [
            ("date", "Thu, 03 Dec 2026 12:47:20 GMT"),
            ("content-type", "text/html"),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
            // Not canonical (wrong day name, an obsolete form): kept as sent.
            ("expires", "Mon, 06 Nov 1994 08:49:37 GMT"),
            ("expires", "Sunday, 06-Nov-94 08:49:37 GMT"),
            // Not a date field: kept as sent.
            ("x-when", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ] {
            m.append(name, HeaderValue::from_static(value));
        }
        let s = StoredHeaders::from_map(&m, |_| true);
        let expires = 1 + 29 + 1 + 1 + 30 + 1;
        let x_when = "x-when:".len() + 29 + 1;
        assert_eq!(s.len(), 5 + (1 + 9 + 1) + 5 + expires + x_when);
        assert_eq!(s.as_bytes()[0], DATE_CODE);
        assert_eq!(s.to_map(), m);
        assert_eq!(
            s.get_str("last-modified").as_deref(),
            Some("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(
            s.get_str("date").as_deref(),
            Some("Thu, 03 Dec 2026 12:47:20 GMT")
        );
        assert!(s.has_validator());
        assert!(!StoredHeaders::from_map(&m, |n| n != "last-modified").has_validator());
        assert!(format!("{s:?}").contains("\"date\": \"Thu, 03 Dec 2026 12:47:20 GMT\""));
    }

    #[test]
    fn damaged_blocks_read_what_they_can_without_panicking() {
        let cases: [(&[u8], usize); 7] = [
            (b"", 0),
            (b"\n\n\n", 0),
            (b"no colon here\nx:1\n", 1),
            // A date cut short ends the block.
            (&[DATE_CODE, 0, 0], 0),
            (&[3, b't', b'\n', DATE_CODE + 1, 0, 0, 0], 1),
            // A date of any four bytes formats (u32 seconds are all valid times).
            (&[DATE_CODE + 2, 0xff, 0xff, 0xff, 0xff, 3, b'a', b'\n'], 2),
            // A spelled name that is not a field name is left out.
            (b"bad name:1\nok:2", 1),
        ];
        for (block, fields) in cases {
            let s = StoredHeaders::from_block(block);
            assert_eq!(s.to_map().len(), fields, "{block:?}");
            let _ = format!("{s:?}");
            let _ = s.get("date");
        }
    }
}
