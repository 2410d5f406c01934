//! The web console at `/ui` of the admin listener, against real `outpost run` processes (a purge
//! hub with a shield and a `[dns]` role, and an edge following it): every route refused without
//! a session, the sign-in, CSRF on form posts, a tag purged through the form reaching the edge,
//! the data the pages show; and the same in headless Chromium through the DevTools protocol,
//! with screenshots and the load time of every page.

use crate::support::cdp::{chromium, Browser};
use crate::support::process::Process;
use crate::support::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const TOKEN: &str = "console-t0ken";
const SECRET: &str = "console-shield-s3cret";

/// Console routes beyond `edge_node::admin::console::ROUTES` (which lists every route but the
/// sign-in page and its assets): variants of its paths.
const MORE_ROUTES: &[(&str, &str)] = &[
    ("GET", "/ui/"),
    ("GET", "/ui/purge?done=1"),
    ("GET", "/ui/api/cache?url=http://demo.test/"),
    ("GET", "/ui/api/live?cache=hit"),
];

/// A demo-like fleet: a tagged origin, a hub (shield, purge hub, DNS) and an edge "eu".
struct Fleet {
    _origin: Origin,
    hub: Process,
    edge: Process,
    _dir: TempDir,
}

impl Fleet {
    async fn start(name: &str) -> Fleet {
        let origin = Origin::start(|seen, n| {
            let tag = if seen.uri.starts_with("/static/") {
                "static"
            } else {
                "api"
            };
            Reply::ok(
                &format!("body {} #{n}", seen.uri),
                &[
                    ("cache-control", "max-age=300"),
                    ("content-type", "text/plain"),
                    ("surrogate-key", tag),
                ],
            )
        })
        .await;
        let dir = temp_dir(name);
        let db = dir.join("city.mmdb");
        geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD).unwrap();
        let edge_admin = free_port();
        let hub_cfg = format!(
            r#"[admin]
listen = "127.0.0.1:0"
token = "{TOKEN}"

[telemetry]
service_name = "outpost-shield"

[shield]
listen = ["127.0.0.1:0"]
secret = "{SECRET}"
memory_bytes = "16MiB"

[[shield.sites]]
hosts = ["demo.test", "127.0.0.1"]
origins = ["{origin}"]

[dns]
listen = ["127.0.0.1:0"]
geoip_db = "{db}"
health = {{ interval = "1s", timeout = "500ms", healthy_after = 1, unhealthy_after = 2 }}

[[dns.zones]]
name = "demo.test"
ns = ["ns1"]
records = [{{ name = "ns1", type = "A", value = "127.0.0.1" }}]

[[dns.zones.geo]]
name = "cdn"
default = "eu"
regions = [
  {{ name = "eu", lat = 50.1, lon = 8.7, addresses = ["127.0.0.1"], health = "http://127.0.0.1:{edge_admin}/healthz" }},
]
"#,
            origin = origin.url(),
            db = db.display(),
        );
        let env = [("OUTPOST_CONSOLE_SAMPLE", "1s")];
        let hub = Process::start_env(&dir, "hub", &hub_cfg, 3, &env);
        let edge_cfg = format!(
            r#"[admin]
listen = "127.0.0.1:{edge_admin}"
token = "{TOKEN}"

[telemetry]
service_name = "outpost-edge"
region = "eu"

[edge]
listen = ["127.0.0.1:0"]
memory_bytes = "16MiB"
purge_hub = "{hub_admin}"
shields = ["{shield}"]
shield_secret = "{SECRET}"

[[edge.sites]]
name = "demo"
hosts = ["demo.test", "127.0.0.1"]
origins = ["{origin}"]
"#,
            hub_admin = hub.url("admin"),
            shield = hub.url("shield"),
            origin = origin.url(),
        );
        let edge = Process::start_env(&dir, "edge", &edge_cfg, 2, &env);
        Fleet {
            _origin: origin,
            hub,
            edge,
            _dir: dir,
        }
    }

    fn edge_url(&self, path: &str) -> String {
        format!("{}{path}", self.edge.url("edge"))
    }
}

/// A client that shows redirects instead of following them.
fn manual() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A signed-in session on the console at `admin`: its cookie and CSRF token.
struct Session {
    admin: String,
    cookie: String,
    csrf: String,
}

async fn sign_in(admin: &str) -> Session {
    let r = manual()
        .post(format!("{admin}/ui/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/ui");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let page = manual()
        .get(format!("{admin}/ui/purge"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string();
    assert_eq!(csrf.len(), 64);
    Session {
        admin: admin.to_string(),
        cookie,
        csrf,
    }
}

impl Session {
    async fn get(&self, path: &str) -> reqwest::Response {
        manual()
            .get(format!("{}{path}", self.admin))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }

    async fn json(&self, path: &str) -> Value {
        let r = self.get(path).await;
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = manual()
            .post(format!("{}{path}", self.admin))
            .header("cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test]
async fn every_console_route_refuses_without_a_session_and_a_wrong_token_signs_nobody_in() {
    let fleet = Fleet::start("console-refused").await;
    for admin in [fleet.edge.url("admin"), fleet.hub.url("admin")] {
        let c = manual();
        let routes = edge_node::admin::console::ROUTES.iter().chain(MORE_ROUTES);
        for (method, path) in routes {
            for cookie in [
                None,
                Some("outpost_console=forged"),
                Some("outpost_console_1=x"),
            ] {
                let mut rb = c.request(method.parse().unwrap(), format!("{admin}{path}"));
                if let Some(k) = cookie {
                    rb = rb.header("cookie", k);
                }
                // The admin token as a bearer opens the API, not the console.
                let r = rb.bearer_auth(TOKEN).send().await.unwrap();
                let status = r.status().as_u16();
                if *method == "GET" && !path.starts_with("/ui/api/") {
                    assert_eq!(status, 303, "{method} {path}");
                    assert_eq!(r.headers()["location"], "/ui/login", "{path}");
                } else {
                    assert_eq!(status, 401, "{method} {path}");
                }
                assert!(r.headers().get("set-cookie").is_none());
                let body = r.text().await.unwrap();
                assert!(!body.contains(TOKEN) && !body.contains(SECRET));
            }
        }
        // Open: the sign-in page and its assets, all from the binary.
        for path in [
            "/ui/login",
            "/ui/assets/console.css",
            "/ui/assets/console.js",
        ] {
            let r = c.get(format!("{admin}{path}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            // Nothing from elsewhere (the SVG namespace is a name, not a link).
            let body = r
                .text()
                .await
                .unwrap()
                .replace("\"http://www.w3.org/2000/svg\"", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{path} links out"
            );
        }
        let login = c.get(format!("{admin}/ui/login")).send().await.unwrap();
        let csp = login.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        // A wrong token: refused, no session.
        for wrong in ["nope", "", &format!("{TOKEN}x")] {
            let r = c
                .post(format!("{admin}/ui/login"))
                .form(&[("token", wrong)])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403);
            assert!(r.headers().get("set-cookie").is_none());
            assert!(r.text().await.unwrap().contains("That is not this node"));
        }
    }
}

#[tokio::test]
async fn signed_in_a_tag_purged_through_the_form_makes_the_edge_miss() {
    let fleet = Fleet::start("console-purge").await;
    let app = fleet.edge_url("/static/app.js");
    let host = [("host", "demo.test")];
    get(&app, &host).await;
    assert!(get(&app, &host).await.is_hit(), "cached before the purge");
    let s = sign_in(&fleet.edge.url("admin")).await;

    // Without the CSRF token, or with another, the purge is refused and nothing is purged.
    let form = |csrf: Option<&str>| {
        let mut f = vec![("kind", "tag"), ("value", "static"), ("mode", "hard")];
        if let Some(c) = csrf {
            f.push(("csrf", c));
        }
        f.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    };
    let as_ref = |f: &Vec<(String, String)>| {
        f.iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<(String, String)>>()
    };
    for f in [form(None), form(Some(&"0".repeat(64)))] {
        let r = manual()
            .post(format!("{}/ui/purge", s.admin))
            .header("cookie", &s.cookie)
            .form(&as_ref(&f))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let (status, _) = s.post("/ui/logout", &[]).await;
    assert_eq!(status, 403, "sign-out is a form post too");
    assert!(get(&app, &host).await.is_hit(), "nothing purged");

    let (status, page) = s
        .post(
            "/ui/purge",
            &[
                ("csrf", &s.csrf),
                ("kind", "tag"),
                ("value", "static"),
                ("mode", "hard"),
            ],
        )
        .await;
    // Post, redirect, get: reloading the page does not purge again.
    assert_eq!(status, 303, "{page}");
    let page = s.get("/ui/purge?done=1").await.text().await.unwrap();
    assert!(page.contains("Purge accepted: version 1"), "{page}");
    let after = get(&app, &host).await;
    assert!(!after.is_hit(), "{}", after.cache_status());
    assert_eq!(after.status, 200);

    // A host no site serves is refused, as POST /purge refuses it.
    let (status, page) = s
        .post(
            "/ui/purge",
            &[
                ("csrf", &s.csrf),
                ("kind", "url"),
                ("value", "http://nobody.test/x"),
                ("mode", "soft"),
            ],
        )
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("no site of this node serves host nobody.test"));

    // The purge log, on the edge (a follower) and on the hub.
    let log = s.json("/ui/api/purge-log").await;
    assert_eq!(log["events"][0]["target"]["tags"][0], "static", "{log}");
    assert_eq!(log["applied"], 1);
    let hub = sign_in(&fleet.hub.url("admin")).await;
    let hub_log = hub.json("/ui/api/purge-log").await;
    assert_eq!(
        (hub_log["hub"].clone(), hub_log["latest"].clone()),
        (true.into(), 1.into())
    );

    // The inspector: the /cache view.
    get(&app, &host).await;
    let view = s
        .json("/ui/api/cache?url=http%3A%2F%2Fdemo.test%2Fstatic%2Fapp.js")
        .await;
    assert_eq!(view["cached"], true, "{view}");

    // The overview: per tier and per site, from the sampler (every second here).
    let mut overview = Value::Null;
    for _ in 0..50 {
        overview = s.json("/ui/api/overview").await;
        if overview["series"]["edge · demo"]["t"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(overview["series"]["edge"]["rps"].is_array(), "{overview}");
    assert!(
        overview["totals"]["edge · demo"]["requests"]
            .as_u64()
            .unwrap()
            >= 4,
        "{overview}"
    );
    assert_eq!(overview["health"][0]["ready"], true);

    // The config: effective, secrets redacted.
    let cfg = s.json("/ui/api/config").await;
    let text = cfg.to_string();
    assert!(!text.contains(TOKEN) && !text.contains(SECRET), "{text}");
    assert_eq!(cfg["config"]["admin"]["token"], "(redacted)");
    assert_eq!(cfg["config"]["edge"]["shield_secret"], "(redacted)");
    assert_eq!(cfg["config"]["telemetry"]["region"], "eu");

    // The fleet, on the hub: the edge reports itself (role, region, version, purge applied).
    let mut fleet_view = Value::Null;
    for _ in 0..75 {
        fleet_view = hub.json("/ui/api/fleet").await;
        // Reports come every 5 s: one after the purge says it is applied.
        if fleet_view["nodes"][0]["applied"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let node = &fleet_view["nodes"][0];
    assert_eq!(node["region"], "eu", "{fleet_view}");
    assert_eq!(node["roles"][0], "edge");
    assert_eq!(
        (node["applied"].clone(), node["lag"].clone()),
        (1.into(), 0.into())
    );
    assert_eq!(node["stale"], false);
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert!(fleet_view["self"]["roles"]
        .to_string()
        .contains("purge hub"));

    // DNS, on the hub.
    let dns = hub.json("/ui/api/dns").await;
    assert_eq!(dns["enabled"], true, "{dns}");
    assert_eq!(s.json("/ui/api/dns").await["enabled"], false);

    // Signed out: the session is gone.
    let (status, _) = s.post("/ui/logout", &[("csrf", &s.csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(s.get("/ui/api/overview").await.status(), 401);
}

#[tokio::test]
async fn a_node_that_stops_reporting_turns_stale_on_the_hub() {
    let mut fleet = Fleet::start("console-stale").await;
    let hub = sign_in(&fleet.hub.url("admin")).await;
    let mut view = Value::Null;
    for _ in 0..50 {
        view = hub.json("/ui/api/fleet").await;
        if view["nodes"][0]["stale"] == false {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(view["nodes"][0]["stale"], false, "{view}");
    fleet.edge.signal("KILL");
    fleet.edge.wait_exit(Duration::from_secs(5));
    // Stale after 15 s without a report (reports come every 5 s).
    let end = Instant::now() + Duration::from_secs(25);
    while Instant::now() < end {
        view = hub.json("/ui/api/fleet").await;
        if view["nodes"][0]["stale"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(view["nodes"][0]["stale"], true, "{view}");
    assert!(view["nodes"][0]["last_seen_secs"].as_u64().unwrap() >= 15);
}

#[tokio::test]
async fn the_live_tail_streams_requests_with_filters() {
    let fleet = Fleet::start("console-live").await;
    let s = sign_in(&fleet.edge.url("admin")).await;
    let r = s.get("/ui/api/live?cache=miss&status=2xx&site=demo").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut stream = r.bytes_stream();
    use futures_util::StreamExt;
    let mut seen = String::new();
    // The subscription is made before the first event.
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&first.unwrap().unwrap()));
    assert!(seen.contains("event: hello"), "{seen}");
    get(&fleet.edge_url("/static/live.js"), &[("host", "demo.test")]).await; // miss: shown
    get(&fleet.edge_url("/static/live.js"), &[("host", "demo.test")]).await; // hit: filtered
    get(&fleet.edge_url("/api/x"), &[("host", "demo.test")]).await; // miss: shown
    let end = Instant::now() + Duration::from_secs(5);
    while seen.matches("event: request").count() < 2 && Instant::now() < end {
        if let Ok(Some(Ok(b))) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
    }
    assert_eq!(seen.matches("event: request").count(), 2, "{seen}");
    assert!(seen.contains("/static/live.js") && seen.contains("/api/x"));
    assert!(!seen.contains("\"cache\":\"hit\""), "{seen}");
    // An open stream does not hold the node up when it stops.
    let mut fleet = fleet;
    fleet.edge.signal("TERM");
    assert!(
        fleet.edge.wait_exit(Duration::from_secs(10)).is_some(),
        "the edge stops with a live view open"
    );
    drop(stream);
}

/// The console in a real browser: every page against the running fleet, sign-in, a tag purged
/// through the form and the edge missing afterwards; screenshots in a temporary directory (and
/// in `OUTPOST_CONSOLE_SCREENSHOTS`, when set: `docs/console` keeps the README's); each page's
/// load time printed.
#[tokio::test]
async fn the_console_in_headless_chromium() {
    let Some(bin) = chromium() else {
        eprintln!("SKIPPED the_console_in_headless_chromium: no chromium on the PATH (apt-get install chromium; scripts/check installs it)");
        return;
    };
    let fleet = Fleet::start("console-browser").await;
    let shots = temp_dir("console-shots");
    let keep = std::env::var_os("OUTPOST_CONSOLE_SCREENSHOTS").map(std::path::PathBuf::from);
    let edge = fleet.edge.url("admin");
    let hub_admin = fleet.hub.url("admin");
    let app = fleet.edge_url("/static/app.js");
    let host = [("host", "demo.test")];
    for path in [
        "/static/app.js",
        "/static/app.js",
        "/api/time",
        "/static/logo.svg",
        "/api/time",
    ] {
        get(&fleet.edge_url(path), &host).await;
    }
    assert!(get(&app, &host).await.is_hit());

    // Traffic all along, for the overview's charts: hits, misses, and some 4xx.
    let edge_base = fleet.edge.url("edge");
    let traffic = tokio::spawn(async move {
        let c = client();
        for i in 0u64.. {
            let path = match i % 10 {
                0 => format!("/api/item{}", i % 50),
                1 => "/nowhere".to_string(),
                _ => format!("/static/file{}.js", i % 7),
            };
            let host = if i % 10 == 1 {
                "nobody.test"
            } else {
                "demo.test"
            };
            let _ = c
                .get(format!("{edge_base}{path}"))
                .header("host", host)
                .send()
                .await;
            tokio::time::sleep(Duration::from_millis(20 + (i % 5) * 10)).await;
        }
    });

    let mut b = Browser::launch(&bin).await;
    let mut timings: Vec<(String, Duration)> = Vec::new();
    let (dir, keep) = (shots.to_path_buf(), keep.as_deref());

    // Unauthenticated: the sign-in page.
    b.goto(&format!("{edge}/ui")).await;
    assert_eq!(b.eval("location.pathname").await, "/ui/login");
    let t = b.goto(&format!("{edge}/ui/login")).await;
    timings.push(("login".into(), t));
    shot(&mut b, &dir, keep, "login").await;
    b.eval("document.querySelector('input[name=token]').value = 'wrong'; document.querySelector('#login').submit()")
        .await;
    assert!(
        b.wait_for(
            "document.querySelector('#outcome') && location.pathname === '/ui/login'",
            Duration::from_secs(5)
        )
        .await
    );
    b.eval(&format!(
        "document.querySelector('input[name=token]').value = '{TOKEN}'; document.querySelector('#login').submit()"
    ))
    .await;
    assert!(
        b.wait_for(
            "location.pathname === '/ui' && document.readyState === 'complete'",
            Duration::from_secs(5)
        )
        .await
    );
    assert_eq!(
        b.eval("document.cookie").await,
        "",
        "the session cookie is HttpOnly"
    );

    // Overview: cards and charts drawn from the history.
    let t = b.goto(&format!("{edge}/ui")).await;
    timings.push(("overview".into(), t));
    let started = Instant::now();
    assert!(b.wait_for("document.querySelectorAll('#cards .card').length >= 5 && document.querySelector('#c-rps svg path')", Duration::from_secs(15)).await);
    eprintln!("overview: charts drawn {:?} after load", started.elapsed());
    assert!(
        b.wait_for(
            "document.querySelector('#sites').textContent.includes('edge · demo')",
            Duration::from_secs(5)
        )
        .await
    );
    // More samples (every second here; the page polls every 5 s) make lines of the dots.
    assert!(
        b.wait_for(
            "parseInt(document.querySelector('#updated').textContent) >= 12",
            Duration::from_secs(25)
        )
        .await
    );
    shot(&mut b, &dir, keep, "overview").await;

    // Purge: a tag through the form; the edge misses afterwards.
    let t = b.goto(&format!("{edge}/ui/purge")).await;
    timings.push(("purge".into(), t));
    b.eval("document.querySelector('input[value=tag]').checked = true; document.querySelector('textarea[name=value]').value = 'static'; document.querySelector('#purge-form button').click()")
        .await;
    assert!(b.wait_for("document.querySelector('#outcome') && document.querySelector('#outcome').textContent.includes('Purge accepted')", Duration::from_secs(10)).await);
    assert!(b.wait_for("document.querySelector('#purge-log') && document.querySelector('#purge-log').textContent.includes('tags: static')", Duration::from_secs(5)).await);
    shot(&mut b, &dir, keep, "purge").await;
    let after = get(&app, &host).await;
    assert!(
        !after.is_hit(),
        "the edge misses after the purge: {}",
        after.cache_status()
    );

    // Cache inspector.
    let t = b
        .goto(&format!(
            "{edge}/ui/cache?url=http%3A%2F%2Fdemo.test%2Fstatic%2Fapp.js"
        ))
        .await;
    timings.push(("cache".into(), t));
    assert!(b.wait_for("document.querySelector('#result').textContent.includes('cached') && document.querySelector('#result table')", Duration::from_secs(5)).await);
    shot(&mut b, &dir, keep, "cache").await;

    // Live requests: a request made now appears.
    let t = b.goto(&format!("{edge}/ui/live")).await;
    timings.push(("live".into(), t));
    assert!(
        b.wait_for(
            "document.querySelector('#live-state').textContent === 'watching'",
            Duration::from_secs(5)
        )
        .await
    );
    for path in ["/static/live-1.js", "/api/live", "/static/live-1.js"] {
        get(&fleet.edge_url(path), &host).await;
    }
    assert!(
        b.wait_for(
            "document.querySelector('#live tbody').textContent.includes('/static/live-1.js')",
            Duration::from_secs(5)
        )
        .await
    );
    shot(&mut b, &dir, keep, "live").await;

    // Config: redacted.
    let t = b.goto(&format!("{edge}/ui/config")).await;
    timings.push(("config".into(), t));
    assert!(
        b.wait_for(
            "document.querySelector('#config').textContent.includes('(redacted)')",
            Duration::from_secs(5)
        )
        .await
    );
    let text = b.eval("document.body.innerText").await.to_string();
    assert!(!text.contains(TOKEN) && !text.contains(SECRET));
    shot(&mut b, &dir, keep, "config").await;

    // The hub's console: fleet and DNS (sign in there too: its own cookie).
    b.goto(&format!("{hub_admin}/ui/login")).await;
    b.eval(&format!(
        "document.querySelector('input[name=token]').value = '{TOKEN}'; document.querySelector('#login').submit()"
    ))
    .await;
    assert!(
        b.wait_for(
            "location.pathname === '/ui' && document.readyState === 'complete'",
            Duration::from_secs(5)
        )
        .await
    );
    let t = b.goto(&format!("{hub_admin}/ui/fleet")).await;
    timings.push(("fleet".into(), t));
    assert!(b.wait_for("document.querySelector('#fleet').textContent.includes('eu@') && document.querySelector('#fleet').textContent.includes('reporting')", Duration::from_secs(10)).await);
    shot(&mut b, &dir, keep, "fleet").await;
    let dns = fleet.hub.url("dns");
    let dns = dns.trim_start_matches("udp+tcp ");
    for (i, name) in [
        "cdn.demo.test",
        "cdn.demo.test",
        "cdn.demo.test",
        "nope.demo.test",
    ]
    .iter()
    .enumerate()
    {
        dns_query(dns, name, i as u16).await;
    }
    let t = b.goto(&format!("{hub_admin}/ui/dns")).await;
    timings.push(("dns".into(), t));
    assert!(
        b.wait_for(
            "document.querySelector('#dns').textContent.includes('Region health') && document.querySelector('#dns').textContent.includes('NXDOMAIN1') && document.querySelector('#dns').textContent.includes('eu3')",
            Duration::from_secs(5)
        )
        .await
    );
    shot(&mut b, &dir, keep, "dns").await;
    // Still signed in on the edge: each node's console has its own cookie.
    b.goto(&format!("{edge}/ui/config")).await;
    assert_eq!(b.eval("location.pathname").await, "/ui/config");

    traffic.abort();
    for (page, t) in &timings {
        eprintln!("page load {page}: {:.1} ms", t.as_secs_f64() * 1000.0);
    }
}

/// A screenshot of the page as `name.png` in `dir`, copied to `keep` when given.
async fn shot(b: &mut Browser, dir: &std::path::Path, keep: Option<&std::path::Path>, name: &str) {
    let file = dir.join(format!("{name}.png"));
    b.screenshot(&file).await;
    assert!(std::fs::metadata(&file).unwrap().len() > 1000);
    if let Some(k) = keep {
        std::fs::create_dir_all(k).unwrap();
        std::fs::copy(&file, k.join(format!("{name}.png"))).unwrap();
    }
    eprintln!("screenshot: {}", file.display());
}

/// One DNS query for `name` (type A) over UDP to `server`, answered within 2 s.
async fn dns_query(server: &str, name: &str, id: u16) {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&q, server).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("a DNS answer")
        .unwrap();
    assert!(n >= 12 && buf[..2] == id.to_be_bytes());
}
