//! RFC 9111 (and 9110, 9112, 9213, 3986) behaviours the first versions got wrong, each from
//! the RFC text, through a real edge in front of a scripted origin. The policy's rules are
//! also table-tested in `edge-node/src/cache/policy.rs`; these check that they reach the wire.

use crate::support::*;
use std::sync::Arc;
use std::time::Duration;

/// RFC 9111 5.1: `Age` is end-to-end. Passed through untouched on a response the cache does
/// not store, and counted in the age of one it stores; a list or several lines: the first
/// counts; text, negative or fractional: ignored.
#[tokio::test]
async fn age_is_forwarded_and_counted() {
    let origin = Origin::start(|seen, _| match seen.uri.as_str() {
        "/pass" => Reply::ok("p", &[("cache-control", "no-store"), ("age", "17")]),
        "/list" => Reply::ok("l", &[("cache-control", "max-age=60"), ("age", "20, 50")]),
        "/text" => Reply::ok("t", &[("cache-control", "max-age=60"), ("age", "soon")]),
        "/frac" => Reply::ok("f", &[("cache-control", "max-age=60"), ("age", "2.5")]),
        _ => Reply::ok("s", &[("cache-control", "max-age=60"), ("age", "20")]),
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let p = get(&edge.url("/pass"), &[]).await;
    assert_eq!(p.header("age"), Some("17"), "passed through untouched");
    let miss = get(&edge.url("/stored"), &[]).await;
    assert_eq!(
        miss.header("age"),
        Some("20"),
        "a miss carries the upstream's age"
    );
    let hit = get(&edge.url("/stored"), &[]).await;
    assert!(hit.is_hit());
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((20..=21).contains(&age), "counted in the stored age: {age}");
    let ttl = hit.cache_status();
    assert!(ttl.contains("ttl=39") || ttl.contains("ttl=40"), "{ttl}");
    get(&edge.url("/list"), &[]).await;
    let l = get(&edge.url("/list"), &[]).await;
    assert!(
        matches!(l.header("age"), Some("20") | Some("21")),
        "first value: {:?}",
        l.header("age")
    );
    for bad in ["/text", "/frac"] {
        get(&edge.url(bad), &[]).await;
        let b = get(&edge.url(bad), &[]).await;
        assert!(b.is_hit());
        assert!(
            matches!(b.header("age"), Some("0") | Some("1")),
            "{bad}: ignored, {:?}",
            b.header("age")
        );
    }
}

/// RFC 9213: CDN-Cache-Control is an RFC 8941 Dictionary; one that fails to parse is ignored
/// whole (Cache-Control governs), and either way it is forwarded downstream.
#[tokio::test]
async fn cdn_cache_control_that_does_not_parse_is_ignored_whole() {
    let origin = Origin::start(|seen, n| {
        let cdn = match seen.uri.as_str() {
            "/string" => "max-age=\"600\"",
            "/syntax" => "max-age=600, , no-store",
            _ => "no-store",
        };
        Reply::ok(
            &format!("v{n}"),
            &[("cache-control", "max-age=60"), ("cdn-cache-control", cdn)],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    for p in ["/string", "/syntax"] {
        get(&edge.url(p), &[]).await;
        let b = get(&edge.url(p), &[]).await;
        assert!(
            b.is_hit(),
            "{p}: Cache-Control governs: {}",
            b.cache_status()
        );
        assert!(b.header("cdn-cache-control").is_some(), "{p}: forwarded");
    }
    get(&edge.url("/valid"), &[]).await;
    assert!(
        !get(&edge.url("/valid"), &[]).await.is_hit(),
        "a valid no-store governs"
    );
}

/// RFC 9111 4.1: a `*` member anywhere in Vary means the response never matches.
#[tokio::test]
async fn vary_star_anywhere_is_never_reused() {
    let origin = Origin::start(|seen, n| {
        let mut r = Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")]);
        match seen.uri.as_str() {
            "/a" => r.headers.push(("vary".into(), "*, *".into())),
            "/b" => r.headers.push(("vary".into(), "Accept, *".into())),
            "/c" => r.headers.push(("vary".into(), ", *".into())),
            _ => {
                r.headers.push(("vary".into(), "Accept".into()));
                r.headers.push(("vary".into(), "*".into()));
            }
        }
        r
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    for p in ["/a", "/b", "/c", "/d"] {
        get(&edge.url(p), &[]).await;
        assert!(!get(&edge.url(p), &[]).await.is_hit(), "{p}");
    }
    assert_eq!(origin.requests(), 8);
}

/// RFC 9110 5.6.7: the two obsolete date forms are accepted; a malformed IMF-fixdate in
/// Expires is invalid, and an invalid Expires means already expired (RFC 9111 5.3).
#[tokio::test]
async fn obsolete_date_forms_count_and_a_bad_expires_is_expired() {
    // Dates in the three forms, two minutes from now.
    let t = std::time::SystemTime::now() + Duration::from_secs(120);
    let imf = httpdate::fmt_http_date(t);
    let (wd, rest) = imf.split_once(", ").unwrap();
    let parts: Vec<&str> = rest.split(' ').collect(); // dd Mon yyyy hh:mm:ss GMT
    let long = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ]
    .into_iter()
    .find(|d| d.starts_with(wd))
    .unwrap();
    let rfc850 = format!(
        "{long}, {}-{}-{} {} GMT",
        parts[0],
        parts[1],
        &parts[2][2..],
        parts[3]
    );
    let day: u32 = parts[0].parse().unwrap();
    let asctime = format!("{wd} {} {day:>2} {} {}", parts[1], parts[3], parts[2]);
    let double = imf.replacen(' ', "  ", 1);
    let dates = Arc::new([imf.clone(), rfc850, asctime, double]);
    let d = dates.clone();
    let origin = Origin::start(move |seen, n| {
        let i: usize = seen.uri.trim_start_matches('/').parse().unwrap_or(0);
        Reply::ok(
            &format!("v{n}"),
            &[("date", &http_date(0)), ("expires", &d[i])],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    for (i, form) in ["imf", "rfc850", "asctime"].iter().enumerate() {
        get(&edge.url(&format!("/{i}")), &[]).await;
        let b = get(&edge.url(&format!("/{i}")), &[]).await;
        assert!(b.is_hit(), "{form} {:?}: {}", dates[i], b.cache_status());
    }
    get(&edge.url("/3"), &[]).await;
    let b = get(&edge.url("/3"), &[]).await;
    assert!(
        !b.is_hit(),
        "double space: invalid, so expired: {}",
        b.cache_status()
    );
}

/// RFC 9111 4.3.2: If-Modified-Since against a stored response without Last-Modified
/// compares with its Date.
#[tokio::test]
async fn if_modified_since_uses_the_date_without_last_modified() {
    let date = http_date(-10);
    let d = date.clone();
    let origin = Origin::start(move |_, _| {
        Reply::ok("body", &[("cache-control", "max-age=600"), ("date", &d)])
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/x"), &[]).await;
    let later = get(&edge.url("/x"), &[("if-modified-since", &http_date(0))]).await;
    assert_eq!(later.status, 304, "not modified since its Date");
    let earlier = get(&edge.url("/x"), &[("if-modified-since", &http_date(-7200))]).await;
    assert_eq!(earlier.status, 200);
    let bad = get(&edge.url("/x"), &[("if-modified-since", "yesterday")]).await;
    assert_eq!(bad.status, 200, "an invalid date is ignored");
    assert_eq!(origin.requests(), 1);
}

/// Vary on a list field: equivalent values (whitespace, token case, member order, q written
/// differently) share one variant; a different weight does not.
#[tokio::test]
async fn equivalent_accept_language_values_share_a_variant() {
    let origin = Origin::start(|seen, n| {
        let lang = seen
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Reply::ok(
            &format!("v{n} {lang}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/l"), &[("accept-language", "fr-CH, en;q=0.5")]).await;
    for same in [
        "en; q=0.50 ,FR-ch",
        "fr-ch;q=1, en;q=0.500",
        " en;Q=0.5,  fr-CH ",
    ] {
        let r = get(&edge.url("/l"), &[("accept-language", same)]).await;
        assert!(r.is_hit(), "{same:?}: {}", r.cache_status());
    }
    let other = get(&edge.url("/l"), &[("accept-language", "fr-CH, en;q=0.4")]).await;
    assert!(!other.is_hit());
    assert_eq!(origin.requests(), 2);
}

/// RFC 3986 6.2.2: one normal form for the key, the upstream request and URL purges
/// (percent-encoding case, unreserved characters decoded, dot segments removed; empty
/// segments merged); RFC 9112 3.2: two Host fields are a 400.
#[tokio::test]
async fn equivalent_paths_are_one_object_and_one_purge() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} v{n}", seen.uri),
            &[("cache-control", "max-age=600")],
        )
    })
    .await;
    let node = Node::start(Some(&origin.url()), None, None, |_| {}).await;
    let first = get(&node.url("/static/app.js"), &[]).await;
    assert_eq!(first.text(), "/static/app.js v1");
    for alias in [
        "/static/./app.js",
        "/static//app.js",
        "/static/%61pp.js",
        "/static/x/../app.js",
        "/static/x/%2e%2E/app.js",
        "/%73tatic/app.js",
    ] {
        let r = get(&node.url(alias), &[]).await;
        assert!(r.is_hit(), "{alias}: {}", r.cache_status());
        assert_eq!(r.text(), "/static/app.js v1");
    }
    // The origin saw the normal form; a purge of any form reaches the object.
    assert_eq!(origin.last().uri, "/static/app.js");
    let (status, _) = purge(
        &node.admin_url(),
        TOKEN,
        "{\"urls\":[\"http://127.0.0.1/static/./%61pp.js\"]}",
    )
    .await;
    assert_eq!(status, 200);
    let after = get(&node.url("/static/app.js"), &[]).await;
    assert!(!after.is_hit(), "purged: {}", after.cache_status());
    assert_eq!(origin.requests(), 2);
    // Two Host fields: which site is meant? 400, nothing forwarded.
    let two = raw_request(
        node.edge.unwrap(),
        "GET /static/app.js HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(two.starts_with("HTTP/1.1 400"), "{two}");
    assert_eq!(origin.requests(), 2);
    node.shutdown().await;
}

/// Sends raw bytes and returns what came back (the connection closes after one response).
async fn raw_request(addr: std::net::SocketAddr, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 9110 9.3.3 (and RFC 9111 3): a response to POST with explicit freshness and a
/// Content-Location equal to the request's URI may answer a later GET; without either, it
/// does not.
#[tokio::test]
async fn a_post_response_naming_itself_answers_later_gets() {
    let origin = Origin::start(|seen, n| {
        if seen.method == "GET" {
            return Reply::ok(&format!("get v{n}"), &[("cache-control", "max-age=60")]);
        }
        let loc = match seen.uri.as_str() {
            "/other-place" => "/elsewhere",
            "/no-freshness" => "/no-freshness",
            p => p,
        }
        .to_string();
        let cc = if seen.uri == "/no-freshness" {
            "no-cache"
        } else {
            "max-age=60"
        };
        let mut r = Reply::ok(&format!("posted v{n}"), &[("cache-control", cc)]);
        r.headers.push(("content-location".into(), loc));
        r
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let c = client();
    let p = send(&c, "POST", &edge.url("/item"), &[]).await;
    assert_eq!(p.text(), "posted v1");
    assert!(p.cache_status().contains("stored"), "{}", p.cache_status());
    let g = get(&edge.url("/item"), &[]).await;
    assert!(g.is_hit(), "{}", g.cache_status());
    assert_eq!(g.text(), "posted v1");
    assert_eq!(origin.requests(), 1);
    for path in ["/other-place", "/no-freshness"] {
        send(&c, "POST", &edge.url(path), &[]).await;
        let g = get(&edge.url(path), &[]).await;
        assert!(!g.is_hit(), "{path}: {}", g.cache_status());
        assert!(g.text().starts_with("get v"), "{path}: {}", g.text());
    }
}
