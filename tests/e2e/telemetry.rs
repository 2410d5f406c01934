//! Telemetry end to end: a real OTLP/gRPC receiver (tonic, with the opentelemetry-proto types)
//! inside the test, and a shield and an edge run as `outpost run` processes exporting to it.
//! One trace crosses client -> edge -> shield -> origin with correct parent links; the
//! metrics arrive by name with seconds buckets; logs carry trace ids and none come from the
//! exporter's own crates; with the collector down, serving goes on and drops are counted.

use crate::support::otlp;

use crate::support::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, Span};
use otlp::{attr, service_of, wait_for, Collector};
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "sh1eld-secret";

// ---------------------------------------------------------------- the receiver: support/otlp.rs

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------- nodes as processes

/// An `outpost run` process in a directory of its own, killed on drop; its stderr goes to a
/// file shown on failure.
struct Node {
    process: crate::support::process::Process,
    _dir: crate::support::TempDir,
}

impl Node {
    fn start(name: &str, toml: &str, banner_lines: usize) -> Node {
        Self::start_env(name, toml, banner_lines, &[])
    }

    fn start_env(name: &str, toml: &str, banner_lines: usize, env: &[(&str, &str)]) -> Node {
        let dir = temp_dir(&format!("telemetry-{name}"));
        let process =
            crate::support::process::Process::start_env(&dir, name, toml, banner_lines, env);
        Node { process, _dir: dir }
    }

    /// The URL after "outpost: {what} listening on ".
    fn url(&self, what: &str) -> String {
        self.process.url(what)
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

fn telemetry_section(service: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[telemetry]\nservice_name = \"{service}\"\nregion = \"test-1\"\nnode_id = \"{service}-1\"\notlp_endpoint = \"{endpoint}\"\nmetrics_interval = \"500ms\"\nbatch_interval = \"200ms\"\nexport_timeout = \"2s\"\n{extra}\n"
    )
}

fn shield_toml(endpoint: &str, origin: &str) -> String {
    format!(
        "{}[shield]\nlisten = [\"127.0.0.1:0\"]\nsecret = \"{SECRET}\"\n\n[[shield.sites]]\nhosts = [\"127.0.0.1\", \"localhost\"]\norigins = [\"{origin}\"]\n\n[[shield.sites]]\nhosts = [\"down.test\"]\norigins = [\"http://127.0.0.1:1\"]\nhealth_path = \"/healthz\"\nhealth_interval = \"100ms\"\nunhealthy_after = 1\n",
        telemetry_section("outpost-shield", endpoint, "")
    )
}

fn edge_toml(endpoint: &str, origin: &str, shield: Option<&str>, extra: &str) -> String {
    let shields = shield
        .map(|s| format!("shields = [\"{s}\"]\nshield_secret = \"{SECRET}\"\n"))
        .unwrap_or_default();
    format!(
        "{}[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[edge]\nlisten = [\"127.0.0.1:0\"]\n{shields}\n[[edge.sites]]\nhosts = [\"127.0.0.1\", \"localhost\"]\norigins = [\"{origin}\"]\n\n[[edge.sites]]\nhosts = [\"down.test\"]\norigins = [\"http://127.0.0.1:1\"]\nhealth_path = \"/healthz\"\nhealth_interval = \"100ms\"\nunhealthy_after = 1\n",
        telemetry_section("outpost-edge", endpoint, extra)
    )
}

fn find_span<'a>(
    spans: &'a [(String, Span)],
    service: &str,
    kind: SpanKind,
    trace: &[u8],
) -> Option<&'a Span> {
    spans
        .iter()
        .find(|(s, sp)| s == service && sp.kind == kind as i32 && sp.trace_id == trace)
        .map(|(_, sp)| sp)
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_edge_shield_and_origin_with_metrics_and_logs() {
    let col = Collector::start("127.0.0.1:0").await;
    let endpoint = format!("http://{}", col.addr);
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let shield = Node::start("shield", &shield_toml(&endpoint, &origin.url()), 1);
    let shield_url = shield.url("shield");
    let edge = Node::start(
        "edge",
        &edge_toml(
            &endpoint,
            &origin.url(),
            Some(&shield_url),
            "sampling_ratio = 1.0\n",
        ),
        2,
    );
    let edge_url = edge.url("edge");

    // A client that is itself traced: its traceparent is the root of the whole trace.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let tp = format!("00-{client_trace}-{client_span}-01");
    let a = get(&format!("{edge_url}/x"), &[("traceparent", &tp)]).await;
    assert_eq!(a.status, 200);
    assert!(
        a.cache_status().contains("outpost-edge; fwd=miss"),
        "{}",
        a.cache_status()
    );
    let b = get(&format!("{edge_url}/x"), &[]).await;
    assert!(b.is_hit(), "{}", b.cache_status());

    let trace = (0..16)
        .map(|i| u8::from_str_radix(&client_trace[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let got = col.got.clone();
    let (edge_server, edge_client, fill, shield_server, shield_client) =
        wait_for("edge and shield spans", Duration::from_secs(20), || {
            let spans = got.spans.lock().unwrap();
            let es = find_span(&spans, "outpost-edge", SpanKind::Server, &trace)?.clone();
            let ec = find_span(&spans, "outpost-edge", SpanKind::Client, &trace)?.clone();
            let fill = spans
                .iter()
                .find(|(s, sp)| {
                    s == "outpost-edge" && sp.name == "cache fill" && sp.trace_id == trace
                })?
                .1
                .clone();
            let ss = find_span(&spans, "outpost-shield", SpanKind::Server, &trace)?.clone();
            let sc = find_span(&spans, "outpost-shield", SpanKind::Client, &trace)?.clone();
            Some((es, ec, fill, ss, sc))
        })
        .await;
    // Parent links: client -> edge server -> fill -> edge client -> shield server -> ... -> origin.
    for (svc, sp) in [
        ("outpost-edge", &edge_server),
        ("outpost-edge", &fill),
        ("outpost-edge", &edge_client),
        ("outpost-shield", &shield_server),
        ("outpost-shield", &shield_client),
    ] {
        eprintln!(
            "trace {} span {} parent {:16} {svc:15} {:?} {}",
            hex(&sp.trace_id),
            hex(&sp.span_id),
            hex(&sp.parent_span_id),
            SpanKind::try_from(sp.kind).unwrap_or(SpanKind::Unspecified),
            sp.name
        );
    }
    assert_eq!(hex(&edge_server.parent_span_id), client_span);
    assert_eq!(fill.parent_span_id, edge_server.span_id);
    assert_eq!(edge_client.parent_span_id, fill.span_id);
    assert_eq!(
        shield_server.parent_span_id, edge_client.span_id,
        "the shield's server span is a child of the edge's upstream span"
    );
    let seen = origin.last();
    let origin_tp = seen.headers["traceparent"].to_str().unwrap().to_string();
    assert_eq!(
        origin_tp,
        format!("00-{client_trace}-{}-01", hex(&shield_client.span_id)),
        "the origin gets the shield's client span as parent"
    );
    // HTTP semantic conventions and the cdn.* attributes.
    let ea = &edge_server.attributes;
    assert_eq!(edge_server.name, "GET");
    assert_eq!(attr(ea, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(ea, "url.path").as_deref(), Some("/x"));
    assert_eq!(
        attr(ea, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attr(ea, "server.address").as_deref(), Some("127.0.0.1"));
    assert_eq!(attr(ea, "cdn.cache.status").as_deref(), Some("miss"));
    assert_eq!(attr(ea, "cdn.tier").as_deref(), Some("edge"));
    assert_eq!(attr(ea, "cdn.cache.key").map(|k| k.len()), Some(32));
    assert_eq!(
        attr(&shield_server.attributes, "cdn.tier").as_deref(),
        Some("shield")
    );
    assert_eq!(
        attr(&edge_client.attributes, "cdn.upstream").as_deref(),
        Some("shield")
    );
    assert_eq!(
        attr(&shield_client.attributes, "cdn.upstream").as_deref(),
        Some("origin")
    );
    // The second request was a hit at the edge, in a trace of its own.
    wait_for("the hit's span", Duration::from_secs(10), || {
        let spans = got.spans.lock().unwrap();
        spans
            .iter()
            .any(|(s, sp)| {
                s == "outpost-edge"
                    && sp.kind == SpanKind::Server as i32
                    && sp.trace_id != trace
                    && sp.parent_span_id.is_empty()
                    && attr(&sp.attributes, "cdn.cache.status").as_deref() == Some("hit")
            })
            .then_some(())
    })
    .await;

    // Metrics by name, from both tiers, durations in seconds with explicit buckets.
    let want = [
        "http.server.request.duration",
        "http.client.request.duration",
        "outpost.http.response.body.bytes",
        "outpost.cache.objects",
        "outpost.cache.memory.bytes",
        "outpost.purge.applied_version",
        "outpost.upstream.up",
        "outpost.telemetry.dropped",
    ];
    wait_for("metrics", Duration::from_secs(20), || {
        let m = got.metrics.lock().unwrap();
        let all = want
            .iter()
            .all(|w| m.iter().any(|(s, x)| s == "outpost-edge" && x.name == *w))
            && m.iter()
                .any(|(s, x)| s == "outpost-shield" && x.name == "http.server.request.duration");
        all.then_some(())
    })
    .await;
    {
        let m = got.metrics.lock().unwrap();
        let names: std::collections::BTreeSet<String> =
            m.iter().map(|(s, x)| format!("{s}: {}", x.name)).collect();
        eprintln!("metrics received: {names:#?}");
        let (_, d) = m
            .iter()
            .find(|(s, x)| s == "outpost-edge" && x.name == "http.server.request.duration")
            .unwrap();
        assert_eq!(d.unit, "s");
        let Some(metric::Data::Histogram(h)) = &d.data else {
            panic!("not a histogram: {d:?}")
        };
        let p = &h.data_points[0];
        assert_eq!(
            p.explicit_bounds,
            [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0]
        );
        let statuses: Vec<String> = h
            .data_points
            .iter()
            .filter_map(|p| attr(&p.attributes, "cdn.cache.status"))
            .collect();
        assert!(
            statuses.iter().any(|s| s == "hit") && statuses.iter().any(|s| s == "miss"),
            "{statuses:?}"
        );
    }

    // Logs carry the trace id of the request they belong to: a shield whose origin is down
    // logs the failed fetch inside the request's trace.
    let down = get(&format!("{edge_url}/gone"), &[("host", "down.test")]).await;
    assert_eq!(down.status, 502, "{}", down.cache_status());
    let (log, scope) = wait_for(
        "a shield log with a trace id",
        Duration::from_secs(20),
        || {
            let logs = got.logs.lock().unwrap();
            logs.iter()
                .find(|(s, _, l)| {
                    s == "outpost-shield"
                        && l.trace_id.len() == 16
                        && l.severity_text == "WARN"
                        && format!("{:?}", l.body).contains("requests to origin")
                })
                .map(|(_, scope, l)| (l.clone(), scope.clone()))
        },
    )
    .await;
    assert!(scope.starts_with("edge_node"), "{scope}");
    // Spans and logs leave in batches of their own: the span may come a moment later.
    let traced = wait_for("the log's span, exported", Duration::from_secs(20), || {
        let spans = got.spans.lock().unwrap();
        spans
            .iter()
            .find(|(s, sp)| s == "outpost-shield" && sp.span_id == log.span_id)
            .map(|(_, sp)| sp.clone())
    })
    .await;
    assert_eq!(traced.trace_id, log.trace_id);
    wait_for(
        "the edge's span of the shield's log (same trace)",
        Duration::from_secs(10),
        || {
            got.spans
                .lock()
                .unwrap()
                .iter()
                .any(|(s, sp)| {
                    s == "outpost-edge"
                        && sp.kind == SpanKind::Server as i32
                        && sp.trace_id == log.trace_id
                })
                .then_some(())
        },
    )
    .await;
    // The exporter's own crates never feed the log exporter.
    let logs = got.logs.lock().unwrap();
    for (_, scope, _) in logs.iter() {
        for bad in ["h2", "tonic", "hyper", "tower", "opentelemetry"] {
            assert!(!scope.starts_with(bad), "exported a log of {scope}");
        }
    }
    // stderr lines inside a request carry the trace id too.
    assert!(
        shield
            .log()
            .contains(&format!("trace_id={}", hex(&log.trace_id))),
        "{}",
        shield.log()
    );
    drop(edge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_down_serving_goes_on_and_drops_are_counted() {
    // A port with nothing behind it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let edge = Node::start(
        "edge-dead-collector",
        &edge_toml(
            &endpoint,
            &origin.url(),
            None,
            "queue_size = 16\nbatch_size = 8\nsampling_ratio = 1.0\n",
        ),
        2,
    );
    let edge_url = edge.url("edge");
    let admin = edge.url("admin");
    let c = client();
    let start = Instant::now();
    for i in 0..200 {
        let r = send(&c, "GET", &format!("{edge_url}/obj{}", i % 4), &[]).await;
        assert_eq!(r.status, 200);
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "200 requests took {took:?} with the collector down"
    );
    assert_eq!(origin.requests(), 4);
    let metrics = wait_for("a drop count", Duration::from_secs(20), || {
        let text = admin_metrics(&admin);
        let dropped: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("outpost_telemetry_dropped_total{signal=\"spans\"} "))?
            .trim()
            .parse()
            .ok()?;
        (dropped > 0).then_some(text)
    })
    .await;
    assert!(
        metrics.contains("outpost_telemetry_failed_exports_total{signal=\"spans\"}"),
        "{metrics}"
    );
    assert!(edge.log().len() < 1_000_000, "export errors flood stderr");
}

/// An OTLP/HTTP receiver: protobuf bodies on /v1/traces (decoded), /v1/metrics and /v1/logs.
async fn http_collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<(String, Span)>>>) {
    use prost::Message;
    let spans: Arc<Mutex<Vec<(String, Span)>>> = Arc::default();
    let s = spans.clone();
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let s = s.clone();
                async move {
                    let req = ExportTraceServiceRequest::decode(body).unwrap();
                    let mut s = s.lock().unwrap();
                    for rs in req.resource_spans {
                        let svc = service_of(rs.resource.as_ref());
                        for ss in rs.scope_spans {
                            for sp in ss.spans {
                                s.push((svc.clone(), sp));
                            }
                        }
                    }
                    ""
                }
            }),
        )
        .route("/v1/metrics", axum::routing::post(|| async { "" }))
        .route("/v1/logs", axum::routing::post(|| async { "" }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, spans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_over_http_and_json_logs_with_trace_ids() {
    let (addr, spans) = http_collector().await;
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let edge = Node::start_env(
        "edge-http",
        &edge_toml(
            &format!("http://{addr}"),
            &origin.url(),
            None,
            "protocol = \"http\"\nsampling_ratio = 1.0\n",
        ),
        2,
        &[("OUTPOST_LOG_FORMAT", "json")],
    );
    let edge_url = edge.url("edge");
    assert_eq!(get(&format!("{edge_url}/a"), &[]).await.status, 200);
    let down = get(&format!("{edge_url}/gone"), &[("host", "down.test")]).await;
    assert_eq!(down.status, 502);
    let server = wait_for(
        "a server span over OTLP/HTTP",
        Duration::from_secs(20),
        || {
            spans
                .lock()
                .unwrap()
                .iter()
                .find(|(s, sp)| {
                    s == "outpost-edge"
                        && sp.kind == SpanKind::Server as i32
                        && attr(&sp.attributes, "url.path").as_deref() == Some("/gone")
                })
                .map(|(_, sp)| sp.clone())
        },
    )
    .await;
    // Every stderr line is one JSON object; the failed fetch's line names the trace.
    let log = edge.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let warn = lines
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("requests to origin"))
        })
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(warn["level"], "WARN");
    assert_eq!(warn["trace_id"], hex(&server.trace_id));
    assert_eq!(warn["span"], "fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_requests_make_no_spans_on_any_tier() {
    let col = Collector::start("127.0.0.1:0").await;
    let endpoint = format!("http://{}", col.addr);
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let shield = Node::start("shield-sampling", &shield_toml(&endpoint, &origin.url()), 1);
    let edge = Node::start(
        "edge-sampling",
        &edge_toml(
            &endpoint,
            &origin.url(),
            Some(&shield.url("shield")),
            "sampling_ratio = 0.0\n",
        ),
        2,
    );
    let edge_url = edge.url("edge");
    // Sampled out at the edge: the next tiers get an unsampled traceparent and record nothing.
    assert_eq!(get(&format!("{edge_url}/a"), &[]).await.status, 200);
    let tp = origin.last().headers["traceparent"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(tp.starts_with("00-") && tp.ends_with("-00"), "{tp}");
    // A malformed traceparent is not passed on: it is replaced by a well-formed unsampled one.
    assert_eq!(
        get(
            &format!("{edge_url}/c"),
            &[("traceparent", "00-garbage-01"), ("tracestate", "k=v")]
        )
        .await
        .status,
        200
    );
    let seen = origin.last();
    let tp = seen.headers["traceparent"].to_str().unwrap();
    assert!(
        tp.len() == 55 && tp.starts_with("00-") && tp.ends_with("-00"),
        "{tp}"
    );
    assert!(!seen.headers.contains_key("tracestate"));
    // A caller that samples wins over the ratio: recorded on both tiers.
    let sampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(
        get(&format!("{edge_url}/b"), &[("traceparent", sampled)])
            .await
            .status,
        200
    );
    let got = col.got.clone();
    wait_for(
        "the sampled request's spans",
        Duration::from_secs(20),
        || {
            let spans = got.spans.lock().unwrap();
            let trace: Vec<u8> = (0..16)
                .map(|i| u8::from_str_radix(&sampled[3 + 2 * i..5 + 2 * i], 16).unwrap())
                .collect();
            (find_span(&spans, "outpost-edge", SpanKind::Server, &trace).is_some()
                && find_span(&spans, "outpost-shield", SpanKind::Server, &trace).is_some())
            .then_some(())
        },
    )
    .await;
    let spans = got.spans.lock().unwrap();
    assert!(
        spans
            .iter()
            .all(|(_, sp)| attr(&sp.attributes, "url.path").as_deref() != Some("/a")),
        "the unsampled request made spans"
    );
}

/// A `[dns]` section: zone example.test with the geo name `cdn` in eu and us.
fn dns_section(db: &std::path::Path) -> String {
    format!(
        r#"
[dns]
listen = ["127.0.0.1:0"]
geoip_db = "{db}"

[[dns.zones]]
name = "example.test"
ns = ["ns1.example.test."]
records = [{{ name = "ns1", type = "A", value = "192.0.2.53" }}]

[[dns.zones.geo]]
name = "cdn"
default = "us"
regions = [
  {{ name = "eu", lat = 50.1, lon = 8.7, addresses = ["192.0.2.10"] }},
  {{ name = "us", lat = 39.0, lon = -77.5, addresses = ["192.0.2.20"] }},
]
"#,
        db = db.display()
    )
}

/// The admin `/metrics` text of a node (curl, with the token).
fn admin_metrics(admin: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "-H", &format!("Authorization: Bearer {TOKEN}")])
        .arg(format!("{admin}/metrics"))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_metrics_over_otlp_and_the_instruments_on_the_admin_metrics() {
    let col = Collector::start("127.0.0.1:0").await;
    let endpoint = format!("http://{}", col.addr);
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("telemetry-dns-db");
    let db = dir.join("city.mmdb");
    geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD).unwrap();
    let toml = format!(
        "{}{}",
        edge_toml(&endpoint, &origin.url(), None, ""),
        dns_section(&db)
    );
    let node = Node::start("edge-dns", &toml, 3);
    let dns = node.url("dns");
    let dns: std::net::SocketAddr = dns.trim_start_matches("udp+tcp ").parse().unwrap();
    let edge_url = node.url("edge");
    for _ in 0..2 {
        assert_eq!(get(&format!("{edge_url}/a"), &[]).await.status, 200);
    }
    // Three geo answers for a Frankfurt client (ECS), one NXDOMAIN.
    for name in [
        "cdn.example.test",
        "cdn.example.test",
        "cdn.example.test",
        "nope.example.test",
    ] {
        let out = tokio::process::Command::new("dig")
            .arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), "+time=2", "+tries=1"])
            .args([name, "A", "+subnet=81.2.3.0/24", "+short"])
            .output()
            .await
            .expect("dig (bind9-dnsutils) is installed by scripts/check");
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if name.starts_with("cdn") {
            assert_eq!(answer, "192.0.2.10");
        }
    }
    // Over OTLP: the DNS instruments with their attributes and values.
    let got = col.got.clone();
    let point = |name: &str, attrs: &[(&str, &str)]| -> Option<u64> {
        let m = got.metrics.lock().unwrap();
        m.iter()
            .rev()
            .filter(|(s, x)| s == "outpost-edge" && x.name == name)
            .find_map(|(_, x)| {
                let Some(metric::Data::Sum(sum)) = &x.data else {
                    return None;
                };
                use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
                let p = sum.data_points.iter().find(|p| {
                    attrs
                        .iter()
                        .all(|(k, v)| attr(&p.attributes, k).as_deref() == Some(*v))
                })?;
                Some(match p.value {
                    Some(Value::AsInt(i)) => i as u64,
                    Some(Value::AsDouble(d)) => d as u64,
                    None => 0,
                })
            })
    };
    wait_for("the DNS metrics over OTLP", Duration::from_secs(20), || {
        let answers = point(
            "outpost.dns.geo.answers",
            &[
                ("dns.question.name", "cdn.example.test"),
                ("cdn.region", "eu"),
            ],
        )?;
        let nx = point(
            "outpost.dns.responses",
            &[("dns.response_code", "NXDOMAIN")],
        )?;
        let udp = point("outpost.dns.queries", &[("network.transport", "udp")])?;
        (answers == 3 && nx == 1 && udp == 4).then_some(())
    })
    .await;
    // The admin /metrics: the OpenTelemetry instruments as Prometheus text (HTTP histogram in
    // seconds with the cache status), the DNS series under the same names and labels, and no
    // family twice.
    let text = admin_metrics(&node.url("admin"));
    for want in [
        "# TYPE http_server_request_duration_seconds histogram",
        "le=\"0.005\"",
        "cdn_cache_status=\"hit\"",
        "# TYPE outpost_http_response_body_bytes_total counter",
        "# TYPE outpost_cache_objects gauge",
        "outpost_purge_lag ",
        "outpost_dns_geo_answers_total{cdn_region=\"eu\",dns_question_name=\"cdn.example.test\"} 3",
        "outpost_dns_responses_total{dns_response_code=\"NXDOMAIN\"} 1",
        "target_info{",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let mut seen = std::collections::HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(l.to_string()), "family twice: {l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_the_instruments_are_still_on_the_admin_metrics() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let toml = format!(
        "[telemetry]\nservice_name = \"solo\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n\n[[edge.sites]]\nhosts = [\"down.test\"]\norigins = [\"http://127.0.0.1:1\"]\nhealth_path = \"/healthz\"\nhealth_interval = \"100ms\"\nunhealthy_after = 1\n",
        origin.url()
    );
    let node = Node::start("edge-solo", &toml, 2);
    let edge_url = node.url("edge");
    for _ in 0..3 {
        assert_eq!(get(&format!("{edge_url}/a"), &[]).await.status, 200);
    }
    let text = admin_metrics(&node.url("admin"));
    let hits = text
        .lines()
        .find(|l| {
            l.starts_with("http_server_request_duration_seconds_count{")
                && l.contains("cdn_cache_status=\"hit\"")
        })
        .unwrap_or_else(|| panic!("no hit count in\n{text}"));
    assert!(hits.ends_with(" 2"), "{hits}");
    assert!(text.contains("service_name=\"solo\""), "{text}");
    // Upstream health: the live origin up; the dead one down once its health check fails.
    let live = origin.url().rsplit(':').next().unwrap().to_string();
    assert!(
        text.contains(&format!(
            "outpost_upstream_up{{cdn_tier=\"edge\",cdn_upstream=\"origin\",server_address=\"127.0.0.1\",server_port=\"{live}\"}} 1"
        )),
        "{text}"
    );
    let admin = node.url("admin");
    let text = wait_for(
        "the dead origin reported down",
        Duration::from_secs(10),
        || {
            let t = admin_metrics(&admin);
            t.contains("server_port=\"1\"} 0").then_some(t)
        },
    )
    .await;
    assert!(
        text.contains("outpost_upstream_up{cdn_tier=\"edge\",cdn_upstream=\"origin\",server_address=\"127.0.0.1\",server_port=\"1\"} 0"),
        "{text}"
    );
}

/// Edge, shield and DNS in one process, no collector: the admin `/metrics` renders each
/// family once, with a series per tier, and Prometheus's own linter accepts the scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_in_one_process_scrapes_cleanly_with_promtool() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("telemetry-all-roles");
    let db = dir.join("city.mmdb");
    geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD).unwrap();
    let toml = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [edge]\nlisten = [\"127.0.0.1:0\"]\ndisk_path = \"{disk}\"\ndisk_bytes = \"64MiB\"\n\n\
         [[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{o}\"]\n\n\
         [shield]\nlisten = [\"127.0.0.1:0\"]\nsecret = \"{SECRET}\"\n\n\
         [[shield.sites]]\nname = \"origin\"\nhosts = [\"127.0.0.1\"]\norigins = [\"{o}\"]\n{dns}",
        disk = dir.join("disk").display(),
        o = origin.url(),
        dns = dns_section(&db),
    );
    let node = Node::start("all-roles", &toml, 4);
    let edge = node.url("edge");
    let shield = node.url("shield");
    for _ in 0..2 {
        assert_eq!(get(&format!("{edge}/a"), &[]).await.status, 200);
        let s = get(&format!("{shield}/a"), &[("outpost-shield-secret", SECRET)]).await;
        assert_eq!(s.status, 200);
    }
    assert_eq!(get(&format!("{shield}/a"), &[]).await.status, 403);
    assert_eq!(
        get(&format!("{edge}/a"), &[("host", "nobody.test")])
            .await
            .status,
        421
    );
    let dns: std::net::SocketAddr = node
        .url("dns")
        .trim_start_matches("udp+tcp ")
        .parse()
        .unwrap();
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", dns.ip()))
        .args(["-p", &dns.port().to_string(), "+time=2", "+tries=1"])
        .args(["cdn.example.test", "A", "+short"])
        .output()
        .await
        .expect("dig (bind9-dnsutils) is installed by scripts/check");
    assert!(out.status.success());
    let text = admin_metrics(&node.url("admin"));
    let mut seen = std::collections::HashSet::new();
    for l in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        assert!(seen.insert(l.to_string()), "family twice: {l}\n{text}");
    }
    let count = "http_server_request_duration_seconds_count";
    for (labels, want) in [
        (vec![("cdn_tier", "edge"), ("cdn_cache_status", "hit")], 1.0),
        (
            vec![("cdn_tier", "edge"), ("cdn_cache_status", "error")],
            1.0,
        ),
        (vec![("cdn_tier", "shield"), ("cdn_site", "origin")], 3.0),
        (
            vec![("cdn_tier", "shield"), ("cdn_cache_status", "error")],
            1.0,
        ),
    ] {
        assert_eq!(
            metric_sum(&text, count, &labels),
            Some(want),
            "{labels:?}\n{text}"
        );
    }
    for family in [
        "outpost_cache_disk_bytes",
        "outpost_dns_queries_total",
        "outpost_purge_applied_version",
        "outpost_upstream_up",
        "target_info",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "no {family} in\n{text}"
        );
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) is installed by scripts/check");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    drop(node);
    let _ = std::fs::remove_dir_all(dir);
}
