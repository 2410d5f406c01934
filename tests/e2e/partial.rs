//! Partial content (RFC 9111 3.3 and 3.4): 206 responses stored as parts, later ranges
//! answered from them, parts combined and completed with range requests for what is missing,
//! and the odd 206s that must never be stored.

use crate::support::*;
use std::sync::{Arc, Mutex};

const REPR: &str = "0123456789";

/// An origin that honours `Range` and `If-Range` for one representation: a 206 for a single
/// range when `If-Range` (if any) matches `etag`, else the whole as a 200.
fn ranged(seen: &Seen, body: &str, etag: &str) -> Reply {
    let h = |n: &str| seen.headers.get(n).and_then(|v| v.to_str().ok());
    let cc = ("cache-control", "max-age=3600");
    let whole = Reply::ok(body, &[cc, ("etag", etag)]);
    if h("if-range").is_some_and(|v| v != etag) {
        return whole;
    }
    let Some(spec) = h("range").and_then(|r| r.strip_prefix("bytes=")) else {
        return whole;
    };
    let len = body.len();
    let (a, b) = spec.split_once('-').unwrap();
    let (start, end) = match (a, b) {
        ("", n) => (len - n.parse::<usize>().unwrap().min(len), len - 1),
        (a, "") => (a.parse().unwrap(), len - 1),
        (a, b) => (a.parse().unwrap(), b.parse::<usize>().unwrap().min(len - 1)),
    };
    let cr = format!("bytes {start}-{end}/{len}");
    Reply::ok(
        &body[start..=end],
        &[cc, ("etag", etag), ("content-range", &cr)],
    )
    .status(206)
}

/// What the origin was asked, in order: the `Range` of each request ("-" for none).
fn ranges_log() -> (Arc<Mutex<Vec<String>>>, impl Fn(&Seen) + Send + Sync) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let l2 = log.clone();
    let note = move |seen: &Seen| {
        let r = seen
            .headers
            .get("range")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_string();
        l2.lock().unwrap().push(r);
    };
    (log, note)
}

/// 3.3: a 206 is stored, and answers any range wholly inside it.
#[tokio::test]
async fn a_stored_part_answers_the_ranges_inside_it() {
    let origin = Origin::start(|_, _| {
        Reply::ok(
            "456789",
            &[
                ("cache-control", "max-age=3600"),
                ("content-range", "bytes 4-9/10"),
            ],
        )
        .status(206)
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let first = get(&edge.url("/p"), &[("range", "bytes=-6")]).await;
    assert_eq!((first.status, first.text()), (206, "456789".to_string()));
    assert_eq!(
        origin.last().headers.get("range").unwrap(),
        "bytes=-6",
        "the range is asked of the origin"
    );
    for (range, want, content_range) in [
        ("bytes=-5", "56789", "bytes 5-9/10"),
        ("bytes=6-8", "678", "bytes 6-8/10"),
        ("bytes=6-", "6789", "bytes 6-9/10"),
        ("bytes=-1", "9", "bytes 9-9/10"),
        ("bytes=4-100", "456789", "bytes 4-9/10"),
    ] {
        let r = get(&edge.url("/p"), &[("range", range)]).await;
        assert!(r.is_hit(), "{range}: {}", r.cache_status());
        assert_eq!((r.status, r.text()), (206, want.to_string()), "{range}");
        assert_eq!(r.header("content-range"), Some(content_range), "{range}");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    assert_eq!(origin.requests(), 1);
}

/// 3.3: a part never answers a request for the whole, nor a range it does not hold; without
/// a strong validator nothing is combined (3.4), so those go upstream as asked.
#[tokio::test]
async fn a_part_without_a_strong_validator_answers_only_what_it_holds() {
    let (log, note) = ranges_log();
    let origin = Origin::start(move |seen, _| {
        note(seen);
        let mut r = ranged(seen, REPR, "W/\"weak\"");
        r.headers.retain(|(n, _)| n != "etag");
        r
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let part = get(&edge.url("/w"), &[("range", "bytes=0-4")]).await;
    assert_eq!((part.status, part.text()), (206, "01234".to_string()));
    let whole = get(&edge.url("/w"), &[]).await;
    assert_eq!((whole.status, whole.text()), (200, REPR.to_string()));
    assert!(!whole.is_hit(), "{}", whole.cache_status());
    let again = get(&edge.url("/w"), &[]).await;
    assert!(again.is_hit(), "the whole fetched replaces the part");
    assert_eq!(again.text(), REPR);
    assert_eq!(*log.lock().unwrap(), ["bytes=0-4", "-"]);
}

/// 3.4: parts sharing a strong ETag are combined. A request the part does not hold asks only
/// for the missing bytes, with `If-Range`; once the parts cover everything the object is a
/// complete 200.
#[tokio::test]
async fn parts_with_one_strong_etag_are_completed_and_combined() {
    let (log, note) = ranges_log();
    let origin = Origin::start(move |seen, _| {
        note(seen);
        ranged(seen, REPR, "\"v1\"")
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let a = get(&edge.url("/c"), &[("range", "bytes=6-9")]).await;
    assert_eq!((a.status, a.text()), (206, "6789".to_string()));
    // Sticks out on the left: only 2-5 is asked for.
    let b = get(&edge.url("/c"), &[("range", "bytes=2-7")]).await;
    assert_eq!((b.status, b.text()), (206, "234567".to_string()));
    assert!(
        b.cache_status().contains("fwd=partial"),
        "{}",
        b.cache_status()
    );
    assert_eq!(origin.last().headers.get("if-range").unwrap(), "\"v1\"");
    let c = get(&edge.url("/c"), &[("range", "bytes=2-9")]).await;
    assert!(c.is_hit(), "combined: {}", c.cache_status());
    assert_eq!(c.text(), "23456789");
    // The whole asked for: the rest (0-1) completes it into a 200.
    let whole = get(&edge.url("/c"), &[]).await;
    assert_eq!((whole.status, whole.text()), (200, REPR.to_string()));
    assert_eq!(whole.header("content-range"), None);
    let hit = get(&edge.url("/c"), &[]).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert_eq!((hit.status, hit.text()), (200, REPR.to_string()));
    let r = get(&edge.url("/c"), &[("range", "bytes=0-0")]).await;
    assert!(r.is_hit());
    assert_eq!(r.text(), "0");
    assert_eq!(
        *log.lock().unwrap(),
        ["bytes=6-9", "bytes=2-5", "bytes=0-1"]
    );
}

/// 3.4: when the representation changed, `If-Range` brings the new one whole: it replaces the
/// part (never combined with it) and the client's range is served from it.
#[tokio::test]
async fn a_changed_representation_replaces_the_part() {
    let origin = Origin::start(|seen, _| ranged(seen, REPR, "\"v1\"")).await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/x"), &[("range", "bytes=0-4")]).await;
    origin.set(|seen, _| ranged(seen, "abcdefghij", "\"v2\""));
    let r = get(&edge.url("/x"), &[("range", "bytes=5-9")]).await;
    assert_eq!(origin.last().headers.get("if-range").unwrap(), "\"v1\"");
    assert_eq!((r.status, r.text()), (206, "fghij".to_string()));
    let whole = get(&edge.url("/x"), &[]).await;
    assert!(whole.is_hit(), "{}", whole.cache_status());
    assert_eq!(whole.text(), "abcdefghij");
    assert_eq!(origin.requests(), 2);
}

/// A 206 whose one span is the whole representation is stored as the complete 200.
#[tokio::test]
async fn a_part_that_is_the_whole_is_stored_complete() {
    let origin = Origin::start(|seen, _| ranged(seen, REPR, "\"v1\"")).await;
    let edge = edge(&origin, |_| {}).await;
    let r = get(&edge.url("/all"), &[("range", "bytes=0-9")]).await;
    assert_eq!((r.status, r.text()), (206, REPR.to_string()));
    let whole = get(&edge.url("/all"), &[]).await;
    assert!(whole.is_hit(), "{}", whole.cache_status());
    assert_eq!((whole.status, whole.text()), (200, REPR.to_string()));
    assert_eq!(whole.header("content-range"), None);
    assert_eq!(origin.requests(), 1);
}

/// A 206 to a request without Range (an origin that sends what it likes): its leader gets it
/// as sent, and the part it is stored as never answers a request for the whole.
#[tokio::test]
async fn an_unasked_for_part_never_answers_the_whole() {
    let origin = Origin::start(|_, _| {
        Reply::ok(
            "01234",
            &[
                ("cache-control", "max-age=3600"),
                ("content-range", "bytes 0-4/10"),
            ],
        )
        .status(206)
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let first = get(&edge.url("/u"), &[]).await;
    assert_eq!(first.status, 206, "relayed as the origin sent it");
    let second = get(&edge.url("/u"), &[]).await;
    assert!(!second.is_hit(), "{}", second.cache_status());
    assert_eq!(origin.requests(), 2);
    let inside = get(&edge.url("/u"), &[("range", "bytes=1-2")]).await;
    assert_eq!((inside.status, inside.text()), (206, "12".to_string()));
}

/// Bad 206s are relayed and never stored: no `Content-Range`, an unknown length, a span
/// backwards or past the end, two `Content-Range` fields, a body that does not match its span
/// (a body of 5 bytes for `bytes 4-9/10`, which names 6, as in the public conformance suite's
/// `partial-store-partial-*` tests: which bytes it holds is unknowable, so it is not kept).
#[tokio::test]
async fn malformed_partial_responses_are_not_stored() {
    let origin = Origin::start(|seen, _| {
        let cc = ("cache-control", "max-age=3600");
        let reply = |body: &str, extra: &[(&str, &str)]| {
            let mut h = vec![cc];
            h.extend_from_slice(extra);
            Reply::ok(body, &h).status(206)
        };
        match seen.uri.as_str() {
            "/none" => reply("01234", &[]),
            "/star" => reply("01234", &[("content-range", "bytes 0-4/*")]),
            "/back" => reply("01234", &[("content-range", "bytes 4-0/10")]),
            "/past" => reply("01234", &[("content-range", "bytes 6-10/10")]),
            "/two" => reply(
                "01234",
                &[
                    ("content-range", "bytes 0-4/10"),
                    ("content-range", "bytes 5-9/10"),
                ],
            ),
            "/short" => reply("012", &[("content-range", "bytes 0-4/10")]),
            "/long" => reply("01234", &[("content-range", "bytes 4-9/10")]),
            _ => Reply::ok("?", &[]).status(404),
        }
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    for path in [
        "/none", "/star", "/back", "/past", "/two", "/short", "/long",
    ] {
        let before = origin.requests();
        for _ in 0..2 {
            let r = get(&edge.url(path), &[("range", "bytes=1-2")]).await;
            assert!(!r.is_hit(), "{path}: {}", r.cache_status());
            assert_ne!(r.status, 200, "{path}");
        }
        assert_eq!(origin.requests(), before + 2, "{path}: asked each time");
    }
}
