//! Open-loop load generator for the soak (`benches/soak/run.sh`): a fixed request rate
//! (requests are due at start + i/rate whether or not earlier ones have finished, and each one's
//! latency counts from when it was due, so a stall shows up in the tail instead of slowing the
//! load down), mixed traffic across several edges, purges through their admin APIs, and one CSV
//! row per interval with the load's counts and latency percentiles next to each node process's
//! RSS and open file descriptors and the machine's load average.
//!
//! Why not an existing tool: `wrk` is closed-loop (a slow answer delays the next request, which
//! hides stalls), and `h2load --rps` is fixed-rate per connection but prints one summary at the
//! end, not per interval, and cannot mix purges or classify errors by cause.
//!
//! Modes (first argument):
//! - `warm`: GET every hot key once on every target (closed-loop, `--conns` at a time).
//! - `peak`: closed-loop with `--conns` workers for `--duration` s, the same mix; prints
//!   `peak_rps=N`.
//! - `run`: open-loop at `--rate` for `--duration` s, with purges; writes `--csv`.
//! - `fill`: GETs `--count` distinct objects once each (`benches/soak/memory_bound.sh`).
//!
//! Without a mode (as under `cargo test --all-targets`) it runs a short self-test against an
//! in-process responder.
//!
//! Traffic, per request (chosen from the request's sequence number, so a run is reproducible):
//! `--hit` ‰ GETs of one of `--hot-keys` keys (`/obj/h00042`), `--miss` ‰ GETs of a key never
//! asked before (`/obj/m<run>-<n>`: the key space grows for the whole run), the rest Range GETs
//! of a hot key. Responses are classed as: ok; stale (served stale because the origin erred:
//! `detail=stale-if-error` in `Cache-Status`); injected (500/503 carrying the origin's
//! `X-Injected`); unexpected status (anything else, including 502/504, a Range answered without
//! 206, a body of the wrong length); connection errors; timeouts (`--timeout`, 10 s); dropped
//! (never sent: it was due more than `--timeout` before its connection was free: the client
//! fell behind).
//!
//! Connections: `run` and `peak` use `--conns` keep-alive HTTP/1.1 connections in all, shared
//! evenly by the targets (a connection the server closes is made again), so the nodes' open
//! descriptors reflect a steady client population rather than the client's backlog. In `run`
//! each connection has its own share of the schedule (as in wrk2): a request due while its
//! connection is busy waits for it, and its latency includes that wait.

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::error::Error;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;
type GetClient = Client<HttpConnector, Empty<Bytes>>;
type PostClient = Client<HttpConnector, Full<Bytes>>;

/// Command-line options (`--name value`).
#[derive(Debug, Clone)]
struct Opts {
    mode: String,
    /// Base URLs of the edges (`http://127.0.0.1:19081`); requests alternate between them.
    targets: Vec<String>,
    /// Admin base URLs purges go to (alternating).
    admins: Vec<String>,
    token: String,
    /// Host named in purged URLs (the sites' host).
    purge_host: String,
    rate: f64,
    duration: f64,
    interval: f64,
    conns: usize,
    hot_keys: u64,
    body_bytes: u64,
    hit: u64,
    miss: u64,
    purge_rate: f64,
    /// Every Nth purge is a tag purge (the rest are URL purges).
    tag_every: u64,
    csv: Option<String>,
    /// `name=pid` of processes to sample.
    procs: Vec<(String, u32)>,
    timeout: Duration,
    run_id: String,
    /// `fill`: how many objects, and the path before each one's number.
    count: u64,
    prefix: String,
}

impl Opts {
    fn parse(args: &[String]) -> Res<Self> {
        let mode = args.first().cloned().unwrap_or_default();
        let mut m: HashMap<String, String> = HashMap::new();
        let mut it = args.iter().skip(1);
        while let Some(k) = it.next() {
            let Some(name) = k.strip_prefix("--") else {
                return Err(format!("unexpected argument {k}").into());
            };
            let v = it.next().ok_or(format!("--{name} needs a value"))?;
            m.insert(name.to_string(), v.clone());
        }
        let get = |k: &str, d: &str| m.get(k).cloned().unwrap_or_else(|| d.to_string());
        let num = |k: &str, d: &str| -> Res<f64> {
            get(k, d)
                .parse::<f64>()
                .map_err(|e| format!("--{k}: {e}").into())
        };
        let list = |k: &str| -> Vec<String> {
            get(k, "")
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        let mut procs = Vec::new();
        for p in list("procs") {
            let (n, pid) = p
                .split_once('=')
                .ok_or(format!("--procs: {p} is not name=pid"))?;
            procs.push((n.to_string(), pid.parse()?));
        }
        Ok(Self {
            mode,
            targets: list("targets"),
            admins: list("admins"),
            token: get("token", ""),
            purge_host: get("purge-host", "127.0.0.1"),
            rate: num("rate", "1000")?,
            duration: num("duration", "10")?,
            interval: num("interval", "60")?,
            conns: num("conns", "64")? as usize,
            hot_keys: num("hot-keys", "10000")? as u64,
            body_bytes: num("body-bytes", "1024")? as u64,
            hit: num("hit", "750")? as u64,
            miss: num("miss", "150")? as u64,
            purge_rate: num("purge-rate", "2")?,
            tag_every: (num("tag-every", "4")? as u64).max(1),
            csv: m.get("csv").cloned(),
            procs,
            timeout: Duration::from_secs_f64(num("timeout", "10")?),
            run_id: get("run-id", "0"),
            count: num("count", "1000")? as u64,
            prefix: get("prefix", "/static/o"),
        })
    }
}

/// splitmix64: a well-mixed 64-bit value from a sequence number.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What request number `i` is (its target is `--targets[i % targets]`): path and Range.
struct Planned {
    path: String,
    range: Option<(u64, u64)>,
}

/// Counts of one interval; swapped to zero when reported.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    done: AtomicU64,
    ok: AtomicU64,
    edge_hit: AtomicU64,
    stale: AtomicU64,
    injected: AtomicU64,
    bad_status: AtomicU64,
    conn_err: AtomicU64,
    timeout: AtomicU64,
    dropped: AtomicU64,
    purge_ok: AtomicU64,
    purge_err: AtomicU64,
}

struct Shared {
    opts: Opts,
    c: Counters,
    /// Latency in microseconds, from when the request was due to the end of its body.
    hist: Mutex<Histogram<u64>>,
    /// Miss keys handed out so far.
    miss_seq: AtomicU64,
    /// The first few unexpected answers, for the log.
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn new(opts: Opts) -> Res<Arc<Self>> {
        Ok(Arc::new(Self {
            opts,
            c: Counters::default(),
            hist: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3)?),
            miss_seq: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
        }))
    }

    fn plan(&self, i: u64) -> Planned {
        let o = &self.opts;
        let r = mix64(i);
        let pick = r % 1000;
        let hot = (r >> 10) % o.hot_keys.max(1);
        if pick < o.hit {
            Planned {
                path: format!("/obj/h{hot:05}"),
                range: None,
            }
        } else if pick < o.hit + o.miss {
            let n = self.miss_seq.fetch_add(1, Relaxed);
            Planned {
                path: format!("/obj/m{}-{n:08}", o.run_id),
                range: None,
            }
        } else {
            let len = o.body_bytes.max(2);
            let a = (r >> 40) % (len - 1);
            let b = (a + 1 + (r >> 20) % 256).min(len - 1);
            Planned {
                path: format!("/obj/h{hot:05}"),
                range: Some((a, b)),
            }
        }
    }

    fn note(&self, what: String) {
        if let Ok(mut s) = self.samples.lock() {
            if s.len() < 20 {
                s.push(what);
            }
        }
    }

    fn record(&self, due: Instant) {
        let us = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut h) = self.hist.lock() {
            h.saturating_record(us.max(1));
        }
    }
}

/// One keep-alive HTTP/1.1 connection to one target, made again when the server closes it
/// (after its request limit or an error).
struct Conn {
    authority: String,
    sender: Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>,
}

impl Conn {
    fn new(target: &str) -> Self {
        Self {
            authority: target
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_string(),
            sender: None,
        }
    }

    async fn send(&mut self, req: Request<Empty<Bytes>>) -> Res<hyper::Response<Incoming>> {
        if let Some(tx) = self.sender.as_mut() {
            if tx.ready().await.is_err() {
                self.sender = None;
            }
        }
        let tx = match self.sender.as_mut() {
            Some(tx) => tx,
            None => {
                let tcp = tokio::net::TcpStream::connect(&self.authority).await?;
                tcp.set_nodelay(true)?;
                let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                self.sender.insert(tx)
            }
        };
        Ok(tx.send_request(req).await?)
    }
}

/// Sends request `i` (due at `due`) on `conn` and classes the answer.
async fn one(s: &Shared, conn: &mut Conn, i: u64, due: Instant) {
    let p = s.plan(i);
    s.c.sent.fetch_add(1, Relaxed);
    let fut = async {
        let mut b = Request::get(&p.path).header("host", &conn.authority);
        if let Some((a, z)) = p.range {
            b = b.header("range", format!("bytes={a}-{z}"));
        }
        let req = b.body(Empty::new())?;
        let res = conn.send(req).await?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await?.to_bytes();
        Res::Ok((parts, body))
    };
    let r = tokio::time::timeout(s.opts.timeout, fut).await;
    s.record(due);
    s.c.done.fetch_add(1, Relaxed);
    let (parts, body) = match r {
        Err(_) => {
            conn.sender = None;
            s.c.timeout.fetch_add(1, Relaxed);
            return;
        }
        Ok(Err(e)) => {
            conn.sender = None;
            s.c.conn_err.fetch_add(1, Relaxed);
            s.note(format!("{}{}: {e}", conn.authority, p.path));
            return;
        }
        Ok(Ok(x)) => x,
    };
    // Each tier adds a Cache-Status field of its own: read them all, the edge's last.
    let cs = parts
        .headers
        .get_all("cache-status")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let injected = parts.headers.contains_key("x-injected");
    let st = parts.status;
    if (st == StatusCode::INTERNAL_SERVER_ERROR || st == StatusCode::SERVICE_UNAVAILABLE)
        && injected
    {
        s.c.injected.fetch_add(1, Relaxed);
        return;
    }
    let expect_len = match p.range {
        Some((a, z)) => z - a + 1,
        None => s.opts.body_bytes,
    };
    let want = if p.range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    if st != want || body.len() as u64 != expect_len {
        s.c.bad_status.fetch_add(1, Relaxed);
        s.note(format!(
            "{}{} range={:?}: {st} body {} bytes, cache-status: {cs}",
            conn.authority,
            p.path,
            p.range,
            body.len()
        ));
        return;
    }
    if cs.contains("detail=stale-if-error") {
        s.c.stale.fetch_add(1, Relaxed);
    } else {
        s.c.ok.fetch_add(1, Relaxed);
    }
    if cs
        .rsplit(',')
        .next()
        .is_some_and(|e| e.trim_start().starts_with("outpost-edge; hit"))
    {
        s.c.edge_hit.fetch_add(1, Relaxed);
    }
}

/// One connection's worker in `run`, paced as wrk2 paces its connections: of the `n` workers,
/// worker `k` sends requests `k`, `k + n`, `k + 2n`, ..., request `i` due at `start + i / rate`
/// on its own keep-alive connection. A request due while its connection is still busy waits,
/// and its latency counts from when it was due; one more than `--timeout` late is not sent
/// (the client fell behind: counted as dropped). No queue, lock or timer is shared between
/// workers, so the client's own cost stays small beside the servers it shares the cores with.
async fn paced(s: Arc<Shared>, target: String, k: u64, n: u64, start: Instant, total: u64) {
    let mut conn = Conn::new(&target);
    let mut i = k;
    while i < total {
        let due = start + Duration::from_secs_f64(i as f64 / s.opts.rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
        if due.elapsed() > s.opts.timeout {
            s.c.dropped.fetch_add(1, Relaxed);
        } else {
            one(&s, &mut conn, i, due).await;
        }
        i += n;
    }
}

fn get_client() -> GetClient {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(usize::MAX)
        .build(http)
}

/// One purge: a URL purge of a hot key, or every `tag_every`th a tag purge of one of the 100
/// tags (`g00`..`g99`, the last two digits of the key, as the soak origin tags them).
async fn purge(s: Arc<Shared>, client: PostClient, n: u64) {
    let o = &s.opts;
    if o.admins.is_empty() {
        return;
    }
    let admin = &o.admins[(n % o.admins.len() as u64) as usize];
    let r = mix64(n ^ 0xA5A5);
    let body = if n % o.tag_every == 0 {
        format!(r#"{{"tags":["g{:02}"]}}"#, r % 100)
    } else {
        format!(
            r#"{{"urls":["http://{}/obj/h{:05}"]}}"#,
            o.purge_host,
            r % o.hot_keys.max(1)
        )
    };
    let req = Request::post(format!("{admin}/purge"))
        .header("authorization", format!("Bearer {}", o.token))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)));
    let ok = match req {
        Ok(req) => match tokio::time::timeout(o.timeout, client.request(req)).await {
            Ok(Ok(res)) => {
                let st = res.status();
                let _ = res.into_body().collect().await;
                if !st.is_success() {
                    s.note(format!("purge via {admin}: {st}"));
                }
                st.is_success()
            }
            Ok(Err(e)) => {
                s.note(format!("purge via {admin}: {e}"));
                false
            }
            Err(_) => {
                s.note(format!("purge via {admin}: timeout"));
                false
            }
        },
        Err(_) => false,
    };
    if ok {
        s.c.purge_ok.fetch_add(1, Relaxed);
    } else {
        s.c.purge_err.fetch_add(1, Relaxed);
    }
}

/// VmRSS (KiB) and open fds of a process; `None` once it is gone.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((rss, fds))
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

fn csv_header(o: &Opts) -> String {
    let mut h = String::from(
        "minute,t_s,load1,requests,rate,ok,stale,injected,unexpected_status,conn_errors,\
         timeouts,dropped,edge_hit_pct,p50_ms,p99_ms,p999_ms,max_ms,purges_ok,purges_failed",
    );
    for (n, _) in &o.procs {
        h.push_str(&format!(",{n}_rss_kib,{n}_fds"));
    }
    h
}

/// Takes this interval's counts and histogram and formats one CSV row.
fn csv_row(s: &Shared, k: u64, t: f64, secs: f64) -> String {
    let c = &s.c;
    let take = |a: &AtomicU64| a.swap(0, Relaxed);
    let (done, ok, stale, injected) = (
        take(&c.done),
        take(&c.ok),
        take(&c.stale),
        take(&c.injected),
    );
    let (bad, conn, timeout, dropped) = (
        take(&c.bad_status),
        take(&c.conn_err),
        take(&c.timeout),
        take(&c.dropped),
    );
    let (hit, pok, perr) = (take(&c.edge_hit), take(&c.purge_ok), take(&c.purge_err));
    take(&c.sent);
    let ms = |v: u64| v as f64 / 1000.0;
    let (p50, p99, p999, max) = match s.hist.lock() {
        Ok(mut h) => {
            let r = (
                ms(h.value_at_quantile(0.5)),
                ms(h.value_at_quantile(0.99)),
                ms(h.value_at_quantile(0.999)),
                ms(h.max()),
            );
            h.reset();
            r
        }
        Err(_) => (0.0, 0.0, 0.0, 0.0),
    };
    let hit_pct = if done > 0 {
        100.0 * hit as f64 / done as f64
    } else {
        0.0
    };
    let mut row = format!(
        "{k},{t:.0},{},{done},{:.0},{ok},{stale},{injected},{bad},{conn},{timeout},{dropped},\
         {hit_pct:.1},{p50:.2},{p99:.2},{p999:.2},{max:.2},{pok},{perr}",
        load1(),
        done as f64 / secs
    );
    for (_, pid) in &s.opts.procs {
        match proc_sample(*pid) {
            Some((rss, fds)) => row.push_str(&format!(",{rss},{fds}")),
            None => row.push_str(",,"),
        }
    }
    row
}

/// Open-loop run: requests at `rate`, purges at `purge_rate`, a CSV row every `interval`.
async fn run(s: Arc<Shared>) -> Res<()> {
    let o = s.opts.clone();
    let mut out: Box<dyn Write + Send> = match &o.csv {
        Some(p) => Box::new(std::fs::File::create(p)?),
        None => Box::new(std::io::stdout()),
    };
    writeln!(out, "{}", csv_header(&o))?;
    out.flush()?;
    let start = Instant::now();
    // `--conns` connections, worker k on target k % targets, each with its share of the
    // schedule (see `paced`).
    let total = (o.duration * o.rate).ceil() as u64;
    let n = o.conns.max(o.targets.len()).max(1) as u64;
    let workers: Vec<_> = (0..n)
        .map(|k| {
            let target = o.targets[(k % o.targets.len() as u64) as usize].clone();
            tokio::spawn(paced(s.clone(), target, k, n, start, total))
        })
        .collect();
    let dispatch = tokio::spawn(async move {
        for w in workers {
            let _ = w.await;
        }
    });
    let purger = {
        let s = s.clone();
        let o = s.opts.clone();
        tokio::spawn(async move {
            if o.purge_rate <= 0.0 || o.admins.is_empty() {
                return;
            }
            let mut http = HttpConnector::new();
            http.set_nodelay(true);
            let pc: PostClient = Client::builder(TokioExecutor::new()).build(http);
            let period = Duration::from_secs_f64(1.0 / o.purge_rate);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < o.duration {
                tick.tick().await;
                tokio::spawn(purge(s.clone(), pc.clone(), n));
                n += 1;
            }
        })
    };
    let rows = (o.duration / o.interval).ceil().max(1.0) as u64;
    let mut last = start;
    let mut tasks = Some((dispatch, purger));
    for k in 1..=rows {
        let at = start + Duration::from_secs_f64((k as f64 * o.interval).min(o.duration));
        tokio::time::sleep_until(at.into()).await;
        if let Some((dispatch, purger)) = if k == rows { tasks.take() } else { None } {
            // Every queued request answered (or timed out), then the last purges.
            let _ = dispatch.await;
            let _ = purger.await;
        }
        let now = Instant::now();
        let row = csv_row(
            &s,
            k,
            start.elapsed().as_secs_f64(),
            (now - last).as_secs_f64(),
        );
        last = now;
        writeln!(out, "{row}")?;
        out.flush()?;
        eprintln!("soak_load: {row}");
    }
    print_samples(&s);
    Ok(())
}

fn print_samples(s: &Shared) {
    if let Ok(v) = s.samples.lock() {
        for x in v.iter() {
            eprintln!("soak_load: sample of an unexpected answer: {x}");
        }
    }
}

/// Closed-loop: `conns` workers, each sending its next request when the last one is done.
/// Returns completed requests per second.
async fn peak(s: Arc<Shared>) -> Res<f64> {
    let nt = s.opts.targets.len() as u64;
    let seqs: Arc<Vec<AtomicU64>> = Arc::new((0..nt).map(|_| AtomicU64::new(0)).collect());
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(s.opts.duration);
    let mut tasks = Vec::new();
    for w in 0..s.opts.conns.max(1) {
        let t = w as u64 % nt;
        let (s, seqs) = (s.clone(), seqs.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(&s.opts.targets[t as usize]);
            while Instant::now() < end {
                let i = seqs[t as usize].fetch_add(1, Relaxed) * nt + t;
                one(&s, &mut conn, i, Instant::now()).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let el = start.elapsed().as_secs_f64();
    let done: u64 = seqs.iter().map(|a| a.load(Relaxed)).sum();
    let row = csv_row(&s, 1, el, el);
    eprintln!("soak_load: peak: {}", csv_header(&s.opts));
    eprintln!("soak_load: peak: {row}");
    print_samples(&s);
    Ok(done as f64 / el)
}

/// GETs every hot key once on every target.
async fn warm(s: Arc<Shared>) -> Res<()> {
    let client = get_client();
    let o = &s.opts;
    let total = o.hot_keys * o.targets.len() as u64;
    let seq = Arc::new(AtomicU64::new(0));
    let fails = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..o.conns {
        let (s, client, seq, fails) = (s.clone(), client.clone(), seq.clone(), fails.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = seq.fetch_add(1, Relaxed);
                if i >= total {
                    break;
                }
                let t = &s.opts.targets[(i % s.opts.targets.len() as u64) as usize];
                let url = format!("{t}/obj/h{:05}", i / s.opts.targets.len() as u64);
                let ok = match Request::get(&url).body(Empty::<Bytes>::new()) {
                    Ok(req) => match client.request(req).await {
                        Ok(res) => {
                            let st = res.status();
                            res.into_body().collect().await.is_ok() && st.is_success()
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if !ok {
                    fails.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    eprintln!(
        "soak_load: warm: {total} requests, {} not 2xx (injected origin errors among them)",
        fails.load(Relaxed)
    );
    Ok(())
}

/// GETs `--count` distinct objects (`{target}{--prefix}{n}`, n = 0..count) once each,
/// `--conns` at a time, printing every `--every` requests (and at the end) the progress and
/// the sampled processes' RSS and fds; returns the count of answers that were not 200.
async fn fill(s: Arc<Shared>, count: u64, prefix: String, every: u64) -> Res<u64> {
    let client = get_client();
    let o = &s.opts;
    let seq = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let fails = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..o.conns {
        let (s, client, seq) = (s.clone(), client.clone(), seq.clone());
        let (done, fails, prefix) = (done.clone(), fails.clone(), prefix.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = seq.fetch_add(1, Relaxed);
                if i >= count {
                    break;
                }
                let t = &s.opts.targets[(i % s.opts.targets.len() as u64) as usize];
                let url = format!("{t}{prefix}{i}");
                let ok = match Request::get(&url).body(Empty::<Bytes>::new()) {
                    Ok(req) => match client.request(req).await {
                        Ok(res) => {
                            let st = res.status();
                            res.into_body().collect().await.is_ok() && st == StatusCode::OK
                        }
                        Err(_) => false,
                    },
                    Err(_) => false,
                };
                if !ok {
                    fails.fetch_add(1, Relaxed);
                }
                let n = done.fetch_add(1, Relaxed) + 1;
                if n % every == 0 && n < count {
                    fill_progress(&s, n, start);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    fill_progress(&s, done.load(Relaxed), start);
    Ok(fails.load(Relaxed))
}

fn fill_progress(s: &Shared, n: u64, start: Instant) {
    let mut line = format!(
        "fill: {n} objects, {:.0} s, {:.0} req/s",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
    for (name, pid) in &s.opts.procs {
        if let Some((rss, fds)) = proc_sample(*pid) {
            line.push_str(&format!(", {name} rss_kib={rss} fds={fds}"));
        }
    }
    println!("{line}");
}

/// A tiny keep-alive HTTP/1.1 responder for the self-test: every request gets `body` with a
/// `Cache-Status` hit, or a 503 marked injected for paths ending in 7.
async fn selftest_server(body: usize) -> Res<std::net::SocketAddr> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut c, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let Ok(n) = c.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split_whitespace().nth(1).unwrap_or("");
                        let res = if path.ends_with('7') {
                            "HTTP/1.1 503 Service Unavailable\r\nx-injected: 503\r\ncontent-length: 0\r\n\r\n".to_string()
                        } else {
                            format!(
                                "HTTP/1.1 200 OK\r\ncache-status: outpost-edge; hit\r\ncontent-length: {body}\r\n\r\n{}",
                                "x".repeat(body)
                            )
                        };
                        if c.write_all(res.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Self-test: 2 s at 500 requests/s of plain GETs against the responder; every request is
/// answered and classed (ok or injected), none unexpected.
async fn selftest() -> Res<()> {
    let addr = selftest_server(100).await?;
    let csv = std::env::temp_dir().join(format!("soak_load-selftest-{}.csv", std::process::id()));
    let args: Vec<String> = [
        "run",
        "--targets",
        &format!("http://{addr}"),
        "--rate",
        "500",
        "--duration",
        "2",
        "--interval",
        "1",
        "--hit",
        "500",
        "--miss",
        "500",
        "--body-bytes",
        "100",
        "--purge-rate",
        "0",
        "--csv",
        &csv.to_string_lossy(),
        "--procs",
        &format!("self={}", std::process::id()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let s = Shared::new(Opts::parse(&args)?)?;
    run(s).await?;
    let text = std::fs::read_to_string(&csv)?;
    let _ = std::fs::remove_file(&csv);
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().ok_or("empty csv")?.split(',').collect();
    let col = |name: &str| {
        head.iter()
            .position(|h| *h == name)
            .ok_or(format!("no column {name}"))
    };
    let (req, ok, inj) = (col("requests")?, col("ok")?, col("injected")?);
    let (bad, conn, to, dr) = (
        col("unexpected_status")?,
        col("conn_errors")?,
        col("timeouts")?,
        col("dropped")?,
    );
    let (mut total, mut good) = (0u64, 0u64);
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        total += n(req);
        good += n(ok) + n(inj);
        if n(bad) + n(conn) + n(to) + n(dr) > 0 {
            return Err(format!("unexpected errors in self-test row: {l}").into());
        }
    }
    if total != 1000 || good != total {
        return Err(format!("self-test: {total} requests answered, {good} classed ok").into());
    }
    eprintln!("soak_load: self-test passed ({total} requests)");
    Ok(())
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench" && a != "--test")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if !matches!(
        args.first().map(String::as_str),
        Some("warm" | "peak" | "run" | "fill")
    ) {
        return rt.block_on(selftest());
    }
    let opts = Opts::parse(&args)?;
    if opts.targets.is_empty() {
        return Err("--targets is required".into());
    }
    let s = Shared::new(opts)?;
    rt.block_on(async move {
        match s.opts.mode.as_str() {
            "warm" => warm(s).await,
            "peak" => {
                let rps = peak(s).await?;
                println!("peak_rps={rps:.0}");
                Ok(())
            }
            "run" => run(s).await,
            "fill" => {
                let count = s.opts.count;
                let every = (count / 20).max(1);
                let fails = fill(s.clone(), count, s.opts.prefix.clone(), every).await?;
                println!("fill_failed={fails}");
                Ok(())
            }
            m => Err(format!("unknown mode {m:?}: warm, peak or run").into()),
        }
    })
}
