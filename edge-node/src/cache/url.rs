//! URL path normal form (RFC 3986 section 6.2.2, plus nginx-style slash merging). Pure.
//!
//! One form serves three uses: the cache key, the path sent upstream and the path a URL purge
//! matches. Keying on one form and sending another would let two URLs the origin tells apart
//! share an entry, so whatever is normalised here is normalised everywhere.

use std::borrow::Cow;

/// The normal form of a request path: the same form is used for the cache key, sent upstream,
/// and matched by URL purges. Borrowed when the path is already normal (the common case must
/// not allocate).
///
/// In order:
/// 1. `%XX` hex digits upper-cased (RFC 3986 6.2.2.1);
/// 2. percent-encoded unreserved characters (ALPHA, DIGIT, `-`, `.`, `_`, `~`) decoded
///    (6.2.2.2); everything else (`%2F`, `%20`, `%C3%A9`) stays encoded;
/// 3. empty segments merged: `//` becomes `/`. Not RFC 3986 (which keeps empty segments):
///    this is nginx's default `merge_slashes`, and since the merged path is what goes
///    upstream, the origin sees exactly the URL the cache keys on;
/// 4. dot segments removed (6.2.2.3, the algorithm of 5.2.4), after decoding so `%2e%2e`
///    counts as `..`; never above the root.
///
/// Malformed percent-encoding (`%`, `%4`, `%zz`) is left byte for byte. A path that does not
/// start with `/` (`*`, empty) is returned unchanged. The result is idempotent.
pub(crate) fn normalize_path(path: &str) -> Cow<'_, str> {
    if !path.starts_with('/') || is_normal(path) {
        return Cow::Borrowed(path);
    }
    let out = normalize_slow(path);
    // The fast check is conservative (see `decode_segment`): a path it refuses may still come
    // back unchanged, and then the caller gets the borrowed original all the same.
    if out == path {
        Cow::Borrowed(path)
    } else {
        Cow::Owned(out)
    }
}

/// True if `path` (starting with `/`) needs no change. One pass, no allocation. May say false
/// for a path that is in fact normal (never true for one that is not).
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    // Only `/` and `%` start something to look at; every other byte costs one comparison each.
    for (i, &c) in b.iter().enumerate() {
        if c > b'/' || (c != b'/' && c != b'%') {
            continue;
        }
        if c == b'/' {
            // The segment after this slash: empty (unless it ends the path), `.` or `..`.
            let end = |j: usize| matches!(b.get(j), None | Some(b'/'));
            match b.get(i + 1) {
                Some(b'/') => return false,
                Some(b'.') if end(i + 2) || (b.get(i + 2) == Some(&b'.') && end(i + 3)) => {
                    return false
                }
                _ => {}
            }
        } else if let (Some(&h), Some(&l)) = (b.get(i + 1), b.get(i + 2)) {
            if let (Some(hi), Some(lo)) = (hex_val(h), hex_val(l)) {
                if h.is_ascii_lowercase() || l.is_ascii_lowercase() || is_unreserved(hi << 4 | lo) {
                    return false;
                }
            }
        }
    }
    true
}

/// The normal form, built. `path` starts with `/`.
fn normalize_slow(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    // True when the path must end with `/` (its last segment was empty, `.` or `..`).
    let mut trailing = false;
    // Decoding never yields `/` (it is reserved), so `out` is always `/seg/seg...` with every
    // segment free of `/`, and popping a segment is truncating at the last `/`.
    for raw in path[1..].split('/') {
        let mark = out.len();
        out.push('/');
        decode_segment(&mut out, raw);
        match &out[mark + 1..] {
            // Empty segment: merged with its neighbour (nginx `merge_slashes`).
            "" | "." => {
                out.truncate(mark);
                trailing = true;
            }
            ".." => {
                out.truncate(mark);
                if let Some(parent) = out.rfind('/') {
                    out.truncate(parent);
                }
                trailing = true;
            }
            _ => trailing = false,
        }
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    out
}

/// Appends `seg` (one path segment, no `/`) to `out` with its percent-encodings normalised:
/// hex upper-cased, unreserved characters decoded, malformed `%` copied as it is.
///
/// One exception keeps the result idempotent without inventing bytes: a decoded hex digit is
/// left encoded when it directly follows a stray `%` or `%H` (`%` + `%34` + `1`, `%4` + `%61`).
/// Decoded, it would join that stray `%` into a new, valid `%XX` that a second pass would then
/// treat as an encoding of a byte the client never sent.
fn decode_segment(out: &mut String, seg: &str) {
    let b = seg.as_bytes();
    // Start of the run of bytes copied as they are, not yet appended.
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        let pair = (
            b.get(i + 1).copied().and_then(hex_val),
            b.get(i + 2).copied().and_then(hex_val),
        );
        let (Some(hi), Some(lo)) = pair else {
            // Malformed: the `%` stays part of the literal run.
            i += 1;
            continue;
        };
        // `%` and hex digits are ASCII, so `i` and `i + 3` are char boundaries.
        out.push_str(&seg[run..i]);
        let byte = hi << 4 | lo;
        if is_unreserved(byte) && !(byte.is_ascii_hexdigit() && ends_with_stray_percent(out)) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX_UPPER[usize::from(hi)]));
            out.push(char::from(HEX_UPPER[usize::from(lo)]));
        }
        i += 3;
        run = i;
    }
    out.push_str(&seg[run..]);
}

/// True if `out` ends with `%` or `%H` (H a hex digit): a `%` that was not part of a valid
/// encoding (a valid one would be followed by two hex digits already).
fn ends_with_stray_percent(out: &str) -> bool {
    match out.as_bytes() {
        [.., b'%'] => true,
        [.., b'%', h] => h.is_ascii_hexdigit(),
        _ => false,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'A'..=b'F' => Some(c - b'A' + 10),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// RFC 3986 `unreserved`: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// (input, normal form).
    const CASES: &[(&str, &str)] = &[
        // Already normal.
        ("/", "/"),
        ("/index.html", "/index.html"),
        ("/static/app.js", "/static/app.js"),
        ("/a/b/", "/a/b/"),
        ("/a.b/.c/..d/...", "/a.b/.c/..d/..."),
        // Not a path: unchanged.
        ("", ""),
        ("*", "*"),
        ("a/../b", "a/../b"),
        ("%2e%2e/a", "%2e%2e/a"),
        // 1. Percent-encoding case.
        ("/%2f", "/%2F"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%2Fb", "/a%2Fb"),
        ("/%c3%a9", "/%C3%A9"),
        ("/%C3%A9", "/%C3%A9"),
        ("/caf%c3%A9/x", "/caf%C3%A9/x"),
        ("/a%20b", "/a%20b"),
        ("/%3f%23", "/%3F%23"),
        // 2. Unreserved characters decoded.
        ("/%61", "/a"),
        ("/%41%5A%7a", "/AZz"),
        ("/%30%39", "/09"),
        ("/%2D%2e%5f%7E", "/-._~"),
        ("/%7euser", "/~user"),
        ("/static/%61pp.js", "/static/app.js"),
        ("/%25", "/%25"),
        ("/%2541", "/%2541"),
        // 3. Dot segments (RFC 3986 5.2.4 and the examples of 5.4.1/5.4.2, merged with the
        //    base path /b/c/d;p).
        ("/a/./b", "/a/b"),
        ("/a/../b", "/b"),
        ("/a/b/..", "/a/"),
        ("/a/.", "/a/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/../a", "/a"),
        ("/../../a/../..", "/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/b/c/./g", "/b/c/g"),
        ("/b/c/.", "/b/c/"),
        ("/b/c/./", "/b/c/"),
        ("/b/c/..", "/b/"),
        ("/b/c/../", "/b/"),
        ("/b/c/../g", "/b/g"),
        ("/b/c/../..", "/"),
        ("/b/c/../../", "/"),
        ("/b/c/../../g", "/g"),
        ("/b/c/../../../g", "/g"),
        ("/b/c/../../../../g", "/g"),
        ("/./g", "/g"),
        ("/../g", "/g"),
        ("/b/c/g.", "/b/c/g."),
        ("/b/c/.g", "/b/c/.g"),
        ("/b/c/g..", "/b/c/g.."),
        ("/b/c/..g", "/b/c/..g"),
        ("/b/c/./../g", "/b/g"),
        ("/b/c/./g/.", "/b/c/g/"),
        ("/b/c/g/./h", "/b/c/g/h"),
        ("/b/c/g/../h", "/b/c/h"),
        ("/b/c/g;x=1/./y", "/b/c/g;x=1/y"),
        ("/b/c/g;x=1/../y", "/b/c/y"),
        // Dot segments spelled with encodings count once decoded.
        ("/a/%2e%2E/b", "/b"),
        ("/a/%2E/b", "/a/b"),
        ("/a/.%2e", "/"),
        ("/a/%2e%2e%2e", "/a/..."),
        ("/%2e%2e/%2e%2e/etc/passwd", "/etc/passwd"),
        ("/a/%2e%2e%2fb", "/a/..%2Fb"),
        // 4. Empty segments merged.
        ("//", "/"),
        ("///", "/"),
        ("/static//app.js", "/static/app.js"),
        ("//a///b//", "/a/b/"),
        ("/a//..", "/"),
        ("/a/..//b", "/b"),
        ("/a/.//b", "/a/b"),
        // 5. Malformed percent-encoding: byte for byte.
        ("/%", "/%"),
        ("/%4", "/%4"),
        ("/%zz/", "/%zz/"),
        ("/%4g%g4", "/%4g%g4"),
        ("/a%", "/a%"),
        ("/%/%4/", "/%/%4/"),
        ("/%%61", "/%%61"),
        ("/%%6a", "/%j"),
        ("/%%6", "/%%6"),
        ("/%/%2e%2e", "/"),
        // A decoded hex digit that would complete a stray `%` stays encoded.
        ("/%%61a", "/%%61a"),
        ("/%%34%31", "/%%341"),
        ("/%%341", "/%%341"),
        ("/%4%61", "/%4%61"),
        ("/%4%6a", "/%4j"),
        ("/%4%2e", "/%4."),
        ("/%a%62", "/%a%62"),
        // Mixed.
        ("/%7e%61/./%2F/../b//c%2e", "/~a/b/c."),
        ("/A/%2E%2E/%2e/B/", "/B/"),
        // Non-ASCII is left alone.
        ("/café/./x", "/café/x"),
        ("/é%61", "/éa"),
    ];

    #[test]
    fn table() {
        for (input, want) in CASES {
            assert_eq!(normalize_path(input), *want, "{input:?}");
        }
    }

    #[test]
    fn idempotent_over_the_table() {
        for (input, _) in CASES {
            let once = normalize_path(input);
            let twice = normalize_path(&once);
            assert_eq!(twice, once, "{input:?}");
            assert!(matches!(twice, Cow::Borrowed(_)), "{input:?}");
        }
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for path in [
            "/",
            "/index.html",
            "/static/app.js",
            "/a/b/",
            "/a%2Fb",
            "/%C3%A9",
            "/a%20b",
            "/%",
            "/%4/%zz",
            "*",
            "",
        ] {
            assert!(
                matches!(normalize_path(path), Cow::Borrowed(p) if p == path),
                "{path:?}"
            );
        }
        // Refused by the fast check, yet unchanged: still borrowed.
        assert!(matches!(normalize_path("/%%61a"), Cow::Borrowed(_)));
        assert!(matches!(normalize_path("/a//b"), Cow::Owned(_)));
        assert!(matches!(normalize_path("/%2f"), Cow::Owned(_)));
    }

    /// The properties every normal form has.
    fn check_normal(input: &str, out: &str) {
        assert!(out.starts_with('/'), "{input:?} -> {out:?}");
        for seg in out[1..].split('/') {
            assert!(seg != "." && seg != "..", "{input:?} -> {out:?}");
        }
        assert!(!out.contains("//"), "{input:?} -> {out:?}");
        let b = out.as_bytes();
        for (i, _) in out.match_indices('%') {
            if let (Some(Some(hi)), Some(Some(lo))) = (
                b.get(i + 1).map(|&c| hex_val(c)),
                b.get(i + 2).map(|&c| hex_val(c)),
            ) {
                assert!(
                    !b[i + 1].is_ascii_lowercase() && !b[i + 2].is_ascii_lowercase(),
                    "{input:?} -> {out:?}"
                );
                let byte = hi << 4 | lo;
                // Only a hex digit after a stray `%` may stay encoded.
                assert!(
                    !is_unreserved(byte) || byte.is_ascii_hexdigit(),
                    "{input:?} -> {out:?}"
                );
            }
        }
    }

    #[test]
    fn random_inputs() {
        const PIECES: &[&str] = &[
            "/", "/", "/", ".", "..", "%2e", "%2E", "%", "%4", "%6", "a", "A", "1", "%61", "%41",
            "%34", "%2f", "%7e", "//", "%zz", "é", "%c3%a9",
        ];
        // xorshift64*: a fixed seed keeps failures reproducible.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        for _ in 0..5000 {
            let len = (next() % 12) as usize;
            let mut input = String::from(if next() % 8 == 0 { "" } else { "/" });
            for _ in 0..len {
                input.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            }
            let once = normalize_path(&input);
            let twice = normalize_path(&once);
            assert_eq!(twice, once, "{input:?}");
            assert!(matches!(twice, Cow::Borrowed(_)), "{input:?}");
            assert_eq!(matches!(once, Cow::Borrowed(_)), once == input, "{input:?}");
            if input.starts_with('/') {
                check_normal(&input, &once);
                assert!(!once.contains("/./") && !once.contains("/../"), "{input:?}");
                assert!(!once.ends_with("/.") && !once.ends_with("/.."), "{input:?}");
                // The fast check never passes a path the slow path would change.
                if is_normal(&input) {
                    assert_eq!(normalize_slow(&input), input, "{input:?}");
                }
            } else {
                assert_eq!(once, input);
            }
        }
    }
}
