//! Test harness: a scriptable origin on 127.0.0.1:0 that counts and records requests, an edge
//! built from the real library in front of it, and small HTTP client helpers.
#![allow(dead_code)]

pub mod cdp;
pub mod otlp;
pub mod pebble;
pub mod pki;
pub mod process;
pub mod tls_origin;

use bytes::Bytes;
use edge_node::config::{EdgeConfig, SiteConfig};
use edge_node::Edge;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What the origin saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

/// How the origin's body is sent.
pub enum Body {
    Full(Bytes),
    /// Chunks, each after its delay.
    Chunks(Vec<(Bytes, Duration)>),
    /// Sends these bytes, then breaks the connection (declared length is larger).
    CutAfter(Bytes),
    /// Sends the first chunk, then waits for the gate to open before sending the rest.
    Gated(Bytes, Arc<tokio::sync::Notify>, Bytes),
}

/// A scripted response.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Delay before the response head.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: &str, headers: &[(&str, &str)]) -> Reply {
        Reply {
            status: 200,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Body::Full(Bytes::copy_from_slice(body.as_bytes())),
            delay: Duration::ZERO,
        }
    }
    pub fn status(mut self, s: u16) -> Reply {
        self.status = s;
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
    pub fn body(mut self, b: Body) -> Reply {
        self.body = b;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// A scripted origin server.
pub struct Origin {
    pub addr: SocketAddr,
    pub count: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
    stop: watch::Sender<bool>,
}

impl Origin {
    /// Starts an origin; `handler(request, n)` answers the n-th request (1-based).
    pub async fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve_on(
            listener,
            Arc::new(Mutex::new(Arc::new(handler))),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(Mutex::new(Vec::new())),
        )
    }

    fn serve_on(
        listener: TcpListener,
        handler: Arc<Mutex<Handler>>,
        count: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<Seen>>>,
    ) -> Origin {
        let addr = listener.local_addr().unwrap();
        let (stop, mut stop_rx) = watch::channel(false);
        let (h, c, s) = (handler.clone(), count.clone(), seen.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                    _ = stop_rx.wait_for(|v| *v) => break,
                };
                let (h, c, s) = (h.clone(), c.clone(), s.clone());
                let mut stop_conn = stop_rx.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (h, c, s) = (h.clone(), c.clone(), s.clone());
                        async move {
                            let seen = Seen {
                                method: req.method().to_string(),
                                uri: req.uri().to_string(),
                                headers: req.headers().clone(),
                            };
                            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                            s.lock().unwrap().push(seen.clone());
                            let handler = h.lock().unwrap().clone();
                            let reply = handler(&seen, n);
                            Ok::<_, Infallible>(render(reply).await)
                        }
                    });
                    let builder =
                        hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop_conn.wait_for(|v| *v) => {}
                    }
                });
            }
        });
        Origin {
            addr,
            count,
            seen,
            handler,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("origin saw no request")
    }

    /// Replaces the handler.
    pub fn set(&self, handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    /// Stops accepting and drops open connections (the origin is "down").
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

type OriginBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

async fn render(reply: Reply) -> Response<OriginBody> {
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut headers = HeaderMap::new();
    for (k, v) in &reply.headers {
        headers.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let body: OriginBody = match reply.body {
        Body::Full(b) => http_body_util::Full::new(b).map_err(|e| match e {}).boxed(),
        Body::Chunks(chunks) => {
            let s = futures_util::stream::unfold(chunks.into_iter(), |mut it| async move {
                let (b, d) = it.next()?;
                tokio::time::sleep(d).await;
                Some((Ok::<_, std::io::Error>(Frame::data(b)), it))
            });
            StreamBody::new(s).boxed()
        }
        Body::CutAfter(b) => {
            let declared = b.len() * 2 + 10;
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(declared));
            let s = futures_util::stream::unfold(Some(b), |state| async move {
                match state {
                    Some(b) => Some((Ok(Frame::data(b)), None)),
                    None => {
                        // Let the head and the first bytes go out before the connection breaks.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let e = std::io::Error::new(
                            std::io::ErrorKind::ConnectionReset,
                            "origin cut the body",
                        );
                        Some((Err(e), None))
                    }
                }
            });
            StreamBody::new(s).boxed()
        }
        Body::Gated(first, gate, rest) => {
            let s = futures_util::stream::unfold(0u8, move |state| {
                let (first, gate, rest) = (first.clone(), gate.clone(), rest.clone());
                async move {
                    match state {
                        0 => Some((Ok::<_, std::io::Error>(Frame::data(first)), 1)),
                        1 => {
                            gate.notified().await;
                            Some((Ok(Frame::data(rest)), 2))
                        }
                        _ => None,
                    }
                }
            });
            StreamBody::new(s).boxed()
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(reply.status).unwrap();
    *r.headers_mut() = headers;
    r
}

/// An edge under test.
pub struct TestEdge {
    pub addr: SocketAddr,
    pub proxy: Arc<edge_node::proxy::Proxy>,
    /// The serving node (its current request path; reloads).
    pub node: Arc<edge_node::Node>,
    stop: watch::Sender<bool>,
}

impl TestEdge {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

impl Drop for TestEdge {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The config of a test edge in front of `origin_url`, answering for Host 127.0.0.1.
pub fn edge_config(origin_url: &str) -> EdgeConfig {
    let site = SiteConfig::new(
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![origin_url.to_string()],
    );
    EdgeConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![site])
}

/// Starts an edge in front of `origin`, with `tweak` applied to its config.
pub async fn edge(origin: &Origin, tweak: impl FnOnce(&mut EdgeConfig)) -> TestEdge {
    let mut cfg = edge_config(&origin.url());
    tweak(&mut cfg);
    start_edge(cfg).await
}

pub async fn start_edge(cfg: EdgeConfig) -> TestEdge {
    serve(Edge::bind(&cfg).await.expect("edge binds"))
}

/// The secret between test edges and test shields.
pub const SHIELD_SECRET: &str = "sh1eld-secret";

/// The config of a test shield in front of `origin_url`, answering for Host 127.0.0.1.
pub fn shield_config(origin_url: &str) -> origin_shield::ShieldConfig {
    let site = SiteConfig::new(
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![origin_url.to_string()],
    );
    origin_shield::ShieldConfig::new(
        SHIELD_SECRET,
        vec!["127.0.0.1:0".parse().unwrap()],
        vec![site],
    )
}

/// Starts a shield of `cfg` with purge marks of its own.
pub async fn start_shield(cfg: origin_shield::ShieldConfig) -> TestEdge {
    let registry = agent::metrics::Registry::default();
    let e = origin_shield::bind(&cfg, Arc::default(), &registry)
        .await
        .expect("shield binds");
    serve(e)
}

/// Serves `e`; its `addr` is the first plain listener, else the first TLS one.
fn serve(e: Edge) -> TestEdge {
    let addr = e
        .local_addrs()
        .into_iter()
        .chain(e.tls_local_addrs())
        .next()
        .expect("a listener");
    let proxy = e.proxy();
    let node = e.node();
    let (stop, rx) = watch::channel(false);
    tokio::spawn(e.serve(rx));
    TestEdge {
        addr,
        proxy,
        node,
        stop,
    }
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn cache_status(&self) -> String {
        self.headers
            .get_all("cache-status")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
    pub fn is_hit(&self) -> bool {
        self.cache_status().contains("outpost-edge; hit")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// GET `url` with extra headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> Got {
    send(&client(), "GET", url, headers).await
}

pub async fn send(c: &reqwest::Client, method: &str, url: &str, headers: &[(&str, &str)]) -> Got {
    let mut rb = c.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.expect("request to the edge failed");
    let status = r.status().as_u16();
    let mut headers = HeaderMap::new();
    for (k, v) in r.headers() {
        headers.append(
            HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
            HeaderValue::from_bytes(v.as_bytes()).unwrap(),
        );
    }
    let body = r.bytes().await.expect("body");
    Got {
        status,
        headers,
        body,
    }
}

/// Waits until `f` holds, polling, for at most `limit`.
pub async fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

/// An HTTP date `secs` from now.
pub fn http_date(offset_secs: i64) -> String {
    let now = std::time::SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs((-offset_secs) as u64)
    };
    httpdate::fmt_http_date(t)
}

/// A whole node in-process: an edge (optional), its purge service and its admin API.
pub struct Node {
    pub edge: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub purge: Arc<edge_node::purge::PurgeService>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

pub const TOKEN: &str = "t0ken";

impl Node {
    /// Starts a node. `hub`: the admin URL of the hub to follow (None: this node is the hub).
    /// `origin`: the origin of its edge (None: admin and purge only).
    pub async fn start(
        origin: Option<&str>,
        hub: Option<String>,
        state_dir: Option<std::path::PathBuf>,
        tweak: impl FnOnce(&mut EdgeConfig),
    ) -> Node {
        use edge_node::purge::Role;
        let role = match hub {
            Some(hub) => Role::Follower {
                hub,
                token: TOKEN.into(),
                ca: None,
            },
            None => Role::Hub,
        };
        Self::start_with_role(origin, role, state_dir, tweak).await
    }

    /// Starts a node with an explicit purge role (hub, follower or NATS).
    pub async fn start_with_role(
        origin: Option<&str>,
        role: edge_node::purge::Role,
        state_dir: Option<std::path::PathBuf>,
        tweak: impl FnOnce(&mut EdgeConfig),
    ) -> Node {
        use edge_node::purge::{PurgeService, PurgeSink};
        let registry = agent::metrics::Registry::default();
        let marks = PurgeService::restore_marks(state_dir.as_deref()).expect("purge state");
        let (stop, rx) = watch::channel(false);
        let mut tasks = Vec::new();
        let mut edges = Vec::new();
        let mut edge_addr = None;
        if let Some(o) = origin {
            let mut cfg = edge_config(o);
            tweak(&mut cfg);
            let e = Edge::builder(&cfg)
                .purge_marks(marks.clone())
                .metrics(&registry)
                .bind()
                .await
                .expect("edge binds");
            edge_addr = Some(e.local_addrs()[0]);
            edges.push(e.node());
            tasks.push(tokio::spawn(e.serve(rx.clone())));
        }
        let sinks = edges
            .iter()
            .map(|e| e.clone() as Arc<dyn PurgeSink>)
            .collect();
        let purge = PurgeService::open(role, state_dir, marks, sinks).expect("purge service");
        purge.register_metrics(&registry.meter());
        let submitter: Arc<dyn edge_node::purge::PurgeSubmitter> = purge.clone();
        for e in &edges {
            e.set_purge_submitter(&submitter);
        }
        if !purge.is_hub() {
            tasks.push(tokio::spawn(purge.clone().follow(rx.clone())));
        }
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = l.local_addr().unwrap();
        let state = edge_node::admin::AdminState::new(TOKEN, edges)
            .with_purge(purge.clone())
            .with_metrics(registry);
        let arx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let _ = edge_node::admin::serve(l, None, state, arx).await;
        }));
        Node {
            edge: edge_addr,
            admin,
            purge,
            stop,
            tasks,
        }
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.edge.expect("node has an edge"), path)
    }

    /// Stops every task of the node and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for t in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// POSTs a purge (raw JSON) to `admin`; returns status and JSON answer.
pub async fn purge(admin: &str, token: &str, json: &str) -> (u16, serde_json::Value) {
    let r = client()
        .post(format!("{admin}/purge"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(json.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let v = r.json().await.unwrap_or(serde_json::Value::Null);
    (status, v)
}

/// A fresh temporary directory, removed with everything in it when dropped (also when the
/// test fails).
pub struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A TCP port free on loopback now (for configs that must name their ports up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh temporary directory under the system's, named for the test.
pub fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!(
        "outpost-{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A real nats-server with JetStream on a loopback port, killed on drop.
pub struct NatsServer {
    pub port: u16,
    pub store: TempDir,
    child: Option<std::process::Child>,
}

impl NatsServer {
    pub async fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = NatsServer {
            port,
            store: temp_dir("nats"),
            child: None,
        };
        n.spawn().await;
        n
    }

    async fn spawn(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&*self.store)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/check installs it)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Restarts on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

/// The value of the series of `name` whose labels include every pair of `labels`, added up
/// (Prometheus text as `/metrics` renders it); `None` when no series matches.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        if n != name {
            continue;
        }
        if labels
            .iter()
            .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        {
            *found.get_or_insert(0.0) += value.parse::<f64>().unwrap_or(f64::NAN);
        }
    }
    found
}

/// Waits until the edge's disk tier has rebuilt its index.
pub async fn disk_ready(e: &TestEdge) {
    let ready = eventually(Duration::from_secs(10), || {
        e.proxy.gauges().disk.is_some_and(|d| d.ready)
    })
    .await;
    assert!(ready, "disk tier not ready: {:?}", e.proxy.gauges().disk);
}

/// Waits until the edge's disk tier has written at least `n` objects.
pub async fn disk_writes(e: &TestEdge, n: u64) {
    let done = eventually(Duration::from_secs(10), || {
        e.proxy.gauges().disk.is_some_and(|d| d.writes >= n)
    })
    .await;
    assert!(
        done,
        "disk tier wrote fewer than {n}: {:?}",
        e.proxy.gauges().disk
    );
}
