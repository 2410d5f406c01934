//! Site rules (issue 15, point 1): every condition and every action end to end, through a
//! real edge in front of a scripted origin, clients on real loopback sockets (distinct
//! 127.0.0.0/8 source addresses where the client address matters).

use crate::support::process::check_config;
use crate::support::*;
use edge_node::rules::config::RuleConfig;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The `[[rules]]` of a TOML snippet.
fn rules(toml: &str) -> Vec<RuleConfig> {
    #[derive(serde::Deserialize)]
    struct Doc {
        rules: Vec<RuleConfig>,
    }
    toml::from_str::<Doc>(toml).expect("rules parse").rules
}

/// An edge whose one site has `toml`'s rules.
async fn edge_with(origin: &Origin, toml: &str) -> TestEdge {
    let r = rules(toml);
    edge(origin, move |c| c.sites[0].rules = r).await
}

/// A client whose connections come from `from` (an address of 127.0.0.0/8).
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(from.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn no_redirects() -> reqwest::Client {
    client_from("127.0.0.1")
}

/// An origin that answers every path with its path and `headers`.
async fn echo(headers: &'static [(&'static str, &'static str)]) -> Origin {
    Origin::start(move |seen, _| Reply::ok(&format!("origin:{}", seen.uri), headers)).await
}

#[tokio::test]
async fn edge_ttl_override_caches_html_for_a_minute_although_the_origin_says_no_cache() {
    let origin = echo(&[("cache-control", "no-cache, private")]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        name = "html-60s"
        path_glob = "/**/*.html"
        edge_ttl = "60s"
        edge_ttl_mode = "override"
        client_ttl = "30s"
        "#,
    )
    .await;
    let first = get(&e.url("/docs/index.html"), &[]).await;
    assert_eq!(first.status, 200);
    let second = get(&e.url("/docs/index.html"), &[]).await;
    assert!(second.is_hit(), "{}", second.cache_status());
    assert!(second.cache_status().contains("ttl=59") || second.cache_status().contains("ttl=60"));
    // Browsers get the client TTL, not the origin's no-cache.
    assert_eq!(second.header("cache-control"), Some("max-age=30"));
    assert_eq!(origin.requests(), 1);
    // Not HTML: the origin's no-cache governs.
    get(&e.url("/api/data.json"), &[]).await;
    let again = get(&e.url("/api/data.json"), &[]).await;
    assert!(!again.is_hit(), "{}", again.cache_status());
    assert_eq!(again.header("cache-control"), Some("no-cache, private"));
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn edge_ttl_default_applies_only_when_the_origin_names_none() {
    let origin = Origin::start(|seen, _| {
        if seen.uri.starts_with("/named") {
            Reply::ok("named", &[("cache-control", "max-age=0")])
        } else {
            Reply::ok("silent", &[])
        }
    })
    .await;
    let e = edge_with(&origin, "[[rules]]\nedge_ttl = \"120s\"\n").await;
    get(&e.url("/silent"), &[]).await;
    let hit = get(&e.url("/silent"), &[]).await;
    assert!(hit.is_hit(), "{}", hit.cache_status());
    assert!(hit.cache_status().contains("ttl=119") || hit.cache_status().contains("ttl=120"));
    get(&e.url("/named"), &[]).await;
    let again = get(&e.url("/named"), &[]).await;
    assert!(
        !again.is_hit(),
        "the origin's max-age=0 must win over a default"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn bypass_sends_admin_straight_to_the_origin() {
    let origin = echo(&[("cache-control", "max-age=600")]).await;
    let e = edge_with(
        &origin,
        "[[rules]]\nname = \"admin\"\npath = \"/admin/\"\nbypass = true\n",
    )
    .await;
    for _ in 0..3 {
        let r = get(&e.url("/admin/users"), &[]).await;
        assert!(
            r.cache_status().contains("detail=rule-bypass"),
            "{}",
            r.cache_status()
        );
    }
    assert_eq!(origin.requests(), 3);
    get(&e.url("/public"), &[]).await;
    assert!(get(&e.url("/public"), &[]).await.is_hit());
    assert_eq!(origin.requests(), 4);
}

#[tokio::test]
async fn stale_if_error_window_from_a_rule() {
    let origin = Origin::start(|_, n| {
        if n == 1 {
            Reply::ok("good", &[("cache-control", "max-age=1")])
        } else {
            Reply::ok("broken", &[]).status(500)
        }
    })
    .await;
    let e = edge_with(&origin, "[[rules]]\nstale_if_error = \"1h\"\n").await;
    assert_eq!(get(&e.url("/x"), &[]).await.text(), "good");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = get(&e.url("/x"), &[]).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "good"),
        "{}",
        r.cache_status()
    );
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn cache_key_on_cookie_header_and_device_class() {
    let origin = Origin::start(|seen, _| {
        let h = |n: &str| {
            seen.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_string()
        };
        let body = format!("{} {} {}", h("cookie"), h("x-tenant"), h("x-device-class"));
        Reply::ok(&body, &[("cache-control", "max-age=600")])
    })
    .await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        path = "/page"
        key_cookies = ["lang"]
        key_headers = ["X-Tenant"]
        key_device = true
        "#,
    )
    .await;
    let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148";
    let desk = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
    let de = [("cookie", "lang=de; sid=1"), ("user-agent", desk)];
    let fr = [("cookie", "lang=fr; sid=2"), ("user-agent", desk)];
    let de_other_session = [("cookie", "sid=9; lang=de"), ("user-agent", desk)];
    let de_mobile = [("cookie", "lang=de"), ("user-agent", iphone)];
    let de_tenant = [
        ("cookie", "lang=de"),
        ("user-agent", desk),
        ("x-tenant", "t2"),
    ];
    let a = get(&e.url("/page"), &de).await;
    assert!(a.text().ends_with("- desktop"), "{}", a.text());
    assert!(!get(&e.url("/page"), &fr).await.is_hit());
    let b = get(&e.url("/page"), &de_other_session).await;
    assert!(b.is_hit(), "same lang, other cookies: one copy");
    assert_eq!(b.text(), a.text());
    let m = get(&e.url("/page"), &de_mobile).await;
    assert!(!m.is_hit());
    assert!(m.text().ends_with("- mobile"), "{}", m.text());
    assert!(!get(&e.url("/page"), &de_tenant).await.is_hit());
    assert!(get(&e.url("/page"), &de_tenant).await.is_hit());
    assert_eq!(origin.requests(), 4);
    // Clients see Vary for the header keyed on, never the node's own key field.
    let vary = m
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_lowercase());
    let vary: Vec<String> = vary.collect();
    assert!(vary.iter().any(|v| v.contains("x-tenant")), "{vary:?}");
    assert!(!vary.iter().any(|v| v.contains("outpost-key")), "{vary:?}");
    // A client cannot name another's copy by sending the node's key field itself.
    let forged = get(
        &e.url("/page"),
        &[
            ("outpost-key", "lang=de;device=desktop"),
            ("user-agent", desk),
        ],
    )
    .await;
    assert!(!forged.is_hit(), "a forged key field picked a copy");
    assert!(forged.text().starts_with("- "), "{}", forged.text());
    assert!(
        origin
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| !s.headers.contains_key("outpost-key")),
        "the key field went upstream"
    );
}

#[tokio::test]
async fn query_allow_deny_and_sort_per_rule() {
    let origin = echo(&[("cache-control", "max-age=600")]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        path = "/search"
        query_allow = ["q", "page"]
        query = "sort"
        [[rules]]
        path = "/list"
        query_deny = ["utm_*", "fbclid"]
        "#,
    )
    .await;
    let a = get(&e.url("/search?q=x&utm_source=a&page=2"), &[]).await;
    assert_eq!(a.text(), "origin:/search?page=2&q=x");
    let b = get(&e.url("/search?page=2&ref=b&q=x"), &[]).await;
    assert!(b.is_hit(), "{}", b.cache_status());
    let c = get(&e.url("/list?a=1&utm_medium=x&fbclid=y"), &[]).await;
    assert_eq!(c.text(), "origin:/list?a=1");
    assert!(get(&e.url("/list?a=1"), &[]).await.is_hit());
    // Outside the rules the site's own query handling holds.
    assert_eq!(
        get(&e.url("/other?b=1&a=2"), &[]).await.text(),
        "origin:/other?b=1&a=2"
    );
    assert_eq!(origin.requests(), 3);
}

#[tokio::test]
async fn request_and_response_header_edits() {
    let origin = Origin::start(|seen, _| {
        let from = seen
            .headers
            .get("x-from-edge")
            .map(|v| v.to_str().unwrap().to_string());
        let cookie = seen.headers.contains_key("cookie");
        Reply::ok(
            &format!("{from:?} cookie={cookie}"),
            &[("server", "origin/1.0"), ("x-frame-options", "SAMEORIGIN")],
        )
    })
    .await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        name = "security headers"
        [rules.request_headers]
        set = { "X-From-Edge" = "outpost" }
        remove = ["Cookie"]
        [rules.response_headers]
        set = { "Strict-Transport-Security" = "max-age=63072000", "X-Frame-Options" = "DENY" }
        append = { "Access-Control-Allow-Origin" = "*" }
        remove = ["Server"]
        "#,
    )
    .await;
    let r = get(&e.url("/"), &[("cookie", "a=b")]).await;
    assert_eq!(r.text(), "Some(\"outpost\") cookie=false");
    assert_eq!(
        r.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("server"), None);
}

#[tokio::test]
async fn redirects_https_upgrade_and_captures() {
    let origin = echo(&[]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        path_regex = "^/old/(?P<slug>[a-z]+)/(\\d+)$"
        redirect = { to = "https://new.example.com/${slug}/$2${query}", status = 308 }
        [[rules]]
        path = "/secure/"
        redirect = { https = true }
        "#,
    )
    .await;
    let c = no_redirects();
    let r = send(&c, "GET", &e.url("/old/post/42?x=1"), &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://new.example.com/post/42?x=1")
    );
    let r = send(&c, "GET", &e.url("/secure/login?next=/"), &[]).await;
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location"),
        Some("https://127.0.0.1/secure/login?next=/")
    );
    // Not matched: the origin answers.
    assert_eq!(
        send(&c, "GET", &e.url("/old/post/x"), &[]).await.status,
        200
    );
    assert_eq!(origin.requests(), 1, "redirects never reach the origin");
}

#[tokio::test]
async fn fixed_responses_block_a_network_and_serve_maintenance() {
    let origin = echo(&[]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        name = "bad network"
        client = ["127.0.0.66/32", "127.1.0.0/16"]
        respond = { status = 403, body = "blocked" }
        [[rules]]
        path = "/shop/"
        respond = { status = 503, body = "<h1>Back soon</h1>", content_type = "text/html" }
        "#,
    )
    .await;
    for from in ["127.0.0.66", "127.1.2.3"] {
        let r = send(&client_from(from), "GET", &e.url("/anything"), &[]).await;
        assert_eq!((r.status, r.text().as_str()), (403, "blocked"), "{from}");
    }
    let ok = send(&client_from("127.0.0.67"), "GET", &e.url("/anything"), &[]).await;
    assert_eq!(ok.status, 200);
    let m = get(&e.url("/shop/cart"), &[]).await;
    assert_eq!(m.status, 503);
    assert_eq!(m.header("content-type"), Some("text/html"));
    assert_eq!(m.text(), "<h1>Back soon</h1>");
    assert_eq!(
        origin.requests(),
        1,
        "blocked requests never reach the origin"
    );
}

#[tokio::test]
async fn each_condition_selects_its_rule() {
    let db = temp_dir("rules-geo");
    let path = db.join("city.mmdb");
    geo_dns::sample_db::write(
        &path,
        &[("127.0.0.77/32", "Berlin", 52.5, 13.4, "DE", "EU")],
    )
    .unwrap();
    let origin = echo(&[]).await;
    let r = rules(
        r#"
        [[rules]]
        methods = ["DELETE"]
        respond = { status = 200, body = "method" }
        [[rules]]
        hosts = ["localhost"]
        respond = { status = 200, body = "host" }
        [[rules]]
        header = { name = "X-Beta", value = "1" }
        respond = { status = 200, body = "header" }
        [[rules]]
        cookie = { name = "role", regex = "^admin" }
        respond = { status = 200, body = "cookie" }
        [[rules]]
        query_param = { name = "preview" }
        respond = { status = 200, body = "query" }
        [[rules]]
        client = ["127.0.0.88"]
        respond = { status = 200, body = "client" }
        [[rules]]
        country = ["DE"]
        respond = { status = 200, body = "country" }
        [[rules]]
        path = "/p/"
        respond = { status = 200, body = "prefix" }
        [[rules]]
        path_glob = "/**/*.png"
        respond = { status = 200, body = "glob" }
        "#,
    );
    let e = edge(&origin, move |c| {
        c.geoip = Some(path);
        c.sites[0].rules = r;
    })
    .await;
    let port = e.addr.port();
    let c = no_redirects();
    let at = |p: &str| e.url(p);
    let cases: Vec<(Got, &str)> = vec![
        (send(&c, "DELETE", &at("/x"), &[]).await, "method"),
        (
            send(&c, "GET", &format!("http://localhost:{port}/x"), &[]).await,
            "host",
        ),
        (
            send(&c, "GET", &at("/x"), &[("x-beta", "1")]).await,
            "header",
        ),
        (
            send(&c, "GET", &at("/x"), &[("cookie", "role=admin2")]).await,
            "cookie",
        ),
        (send(&c, "GET", &at("/x?a=1&preview"), &[]).await, "query"),
        (
            send(&client_from("127.0.0.88"), "GET", &at("/x"), &[]).await,
            "client",
        ),
        (
            send(&client_from("127.0.0.77"), "GET", &at("/x"), &[]).await,
            "country",
        ),
        (send(&c, "GET", &at("/p/1"), &[]).await, "prefix"),
        (send(&c, "GET", &at("/a/b/c.png"), &[]).await, "glob"),
        (
            send(&c, "GET", &at("/x"), &[("x-beta", "2")]).await,
            "origin:/x",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.text(), want);
    }
    assert_eq!(origin.requests(), 1);
}

#[tokio::test]
async fn first_match_ends_evaluation_unless_continue() {
    let origin = echo(&[]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        path = "/a/"
        response_headers = { set = { "X-One" = "1" } }
        continue = true
        [[rules]]
        path = "/a/b/"
        response_headers = { set = { "X-Two" = "2" } }
        [[rules]]
        path = "/a/"
        response_headers = { set = { "X-Three" = "3" } }
        "#,
    )
    .await;
    let r = get(&e.url("/a/b/c"), &[]).await;
    assert_eq!(
        (r.header("x-one"), r.header("x-two"), r.header("x-three")),
        (Some("1"), Some("2"), None)
    );
    let r = get(&e.url("/a/z"), &[]).await;
    assert_eq!(
        (r.header("x-one"), r.header("x-two"), r.header("x-three")),
        (Some("1"), None, Some("3"))
    );
}

#[tokio::test]
async fn a_rule_routes_to_another_origin_pool() {
    let main = echo(&[]).await;
    let api = Origin::start(|seen, _| Reply::ok(&format!("api:{}", seen.uri), &[])).await;
    let toml = format!(
        "[[rules]]\npath = \"/api/\"\norigins = [\"{}\"]\n",
        api.url()
    );
    let e = edge_with(&main, &toml).await;
    assert_eq!(
        get(&e.url("/api/v1?x=1"), &[]).await.text(),
        "api:/api/v1?x=1"
    );
    assert_eq!(get(&e.url("/home"), &[]).await.text(), "origin:/home");
    let post = send(&client(), "POST", &e.url("/api/v1/items"), &[]).await;
    assert_eq!(post.text(), "api:/api/v1/items");
    assert_eq!((main.requests(), api.requests()), (1, 2));
}

#[tokio::test]
async fn compression_on_and_off_per_rule() {
    let body: &'static str = Box::leak("outpost ".repeat(200).into_boxed_str());
    let origin = Origin::start(move |seen, _| {
        let ct = if seen.uri.starts_with("/img") {
            "image/x-raw"
        } else {
            "text/plain"
        };
        Reply::ok(
            body,
            &[("cache-control", "max-age=600"), ("content-type", ct)],
        )
    })
    .await;
    let r = rules(
        r#"
        [[rules]]
        path = "/raw/"
        compress = false
        [[rules]]
        path = "/img/"
        compress = true
        "#,
    );
    let e = edge(&origin, move |c| {
        c.compress = vec![edge_node::config::Coding::Gzip];
        c.sites[0].rules = r;
    })
    .await;
    let gz = [("accept-encoding", "gzip")];
    for (path, want) in [
        ("/text", Some("gzip")),
        ("/raw/t", None),
        ("/img/a", Some("gzip")),
    ] {
        get(&e.url(path), &gz).await;
        let mut r = get(&e.url(path), &gz).await;
        for _ in 0..50 {
            if r.is_hit() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            r = get(&e.url(path), &gz).await;
        }
        assert!(r.is_hit(), "{path}: {}", r.cache_status());
        assert_eq!(r.header("content-encoding"), want, "{path}");
    }
}

#[tokio::test]
async fn a_rule_names_a_login_rate_limit_counted_per_client() {
    let origin = echo(&[]).await;
    let r = rules(
        r#"
        [[rules]]
        path = "/login"
        methods = ["POST"]
        limits = ["login"]
        "#,
    );
    let e = edge(&origin, move |c| {
        c.limits = vec![edge_node::limits::LimitConfig {
            name: "login".into(),
            rate: "2/m".into(),
            burst: Some(2),
            key: "client".into(),
            block: None,
            upstream_only: false,
        }];
        c.sites[0].rules = r;
    })
    .await;
    // Twenty clients from distinct addresses: each gets its own two tries.
    for i in 10..30 {
        let c = client_from(&format!("127.0.0.{i}"));
        for _ in 0..2 {
            assert_eq!(
                send(&c, "POST", &e.url("/login"), &[]).await.status,
                200,
                "client {i}"
            );
        }
        let third = send(&c, "POST", &e.url("/login"), &[]).await;
        assert_eq!(third.status, 429, "client {i}");
        assert!(third.header("retry-after").is_some());
        // The rule's limiter is for the login form only.
        assert_eq!(send(&c, "POST", &e.url("/other"), &[]).await.status, 200);
        assert_eq!(send(&c, "GET", &e.url("/login"), &[]).await.status, 200);
    }
    assert_eq!(origin.count.load(Ordering::SeqCst), 20 * 2 + 20 * 2);
}

#[tokio::test]
async fn inspect_shows_the_rules_a_url_matches() {
    let origin = echo(&[]).await;
    let e = edge_with(
        &origin,
        r#"
        [[rules]]
        name = "static"
        path_glob = "/**/*.css"
        continue = true
        [[rules]]
        name = "upgrade"
        redirect = { https = true }
        "#,
    )
    .await;
    let url = edge_node::purge::UrlTarget {
        host: "127.0.0.1".into(),
        path: "/a/site.css".into(),
    };
    let view = e.proxy.inspect(&url).await.unwrap();
    let got: Vec<(&str, &str)> = view
        .rules
        .iter()
        .map(|r| (r.scheme, r.rule.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![("http", "static"), ("http", "upgrade"), ("https", "static")]
    );
}

#[test]
fn check_config_reports_bad_rules_with_line_and_path() {
    let dir = temp_dir("rules-check");
    let base = r#"
[edge]
listen = ["127.0.0.1:0"]

[[edge.sites]]
hosts = ["example.com"]
origins = ["http://127.0.0.1:9"]
"#;
    let bad = format!(
        "{base}
[[edge.sites.rules]]
path_regex = \"^/(unclosed\"
redirect = {{ to = \"/x/$a\" }}
limits = [\"nope\"]
"
    );
    let (code, err) = check_config(&dir, &bad);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("edge.sites[0].rules[0].path_regex"), "{err}");
    assert!(err.contains("edge.sites[0].rules[0].redirect.to"), "{err}");
    assert!(err.contains("edge.sites[0].rules[0].limits[0]"), "{err}");
    assert!(err.contains("\"nope\" is not a limiter"), "{err}");
    assert!(
        err.contains("line 10") || err.contains(":10"),
        "no line for the regex: {err}"
    );
    let unknown = format!("{base}\n[[edge.sites.rules]]\npath = \"/a/\"\ncache_forever = true\n");
    let (code, err) = check_config(&dir, &unknown);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cache_forever"), "{err}");
    let country = format!("{base}\n[[edge.sites.rules]]\ncountry = [\"DE\"]\n");
    let (code, err) = check_config(&dir, &country);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("edge.geoip"), "{err}");
}
