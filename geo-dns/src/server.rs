//! The `[dns]` role: UDP and TCP listeners answering from a catalog that reloads atomically.
//!
//! UDP is served by blocking OS threads, several per socket (the kernel hands each datagram to
//! one of them), each reading and writing batches (`udp.rs`): for a request/response protocol
//! with no per-client state this costs less per query than an async reactor. TCP connections are tokio tasks with an idle timeout and a cap on
//! concurrent connections. A reload builds the new catalog beside the old one (off the query
//! path) and swaps it in with one atomic store; queries in flight finish on the old one.
//! At start, with a GeoIP database, the first catalog answers geo names by per-query database
//! lookups (ready in milliseconds) while the walk into merged trees runs in the background;
//! the walked catalog is swapped in the same way, unless a reload stored one first.

use crate::answer::{Catalog, Transport};
use crate::config::DnsConfig;
use crate::geo::GeoDb;
use crate::health::HealthBoard;
use crate::stats::Stats;
use arc_swap::ArcSwap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Most TCP connections served at once; more wait in the accept queue.
const MAX_TCP: usize = 512;

/// A running DNS server.
pub struct DnsServer {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The start-up walk of the GeoIP database, while it runs.
    walking: Option<tokio::task::JoinHandle<()>>,
    stop_tx: watch::Sender<bool>,
}

struct Shared {
    catalog: ArcSwap<Catalog>,
    /// Catalogs stored by reloads so far: the start-up walk stores its catalog only if no reload
    /// came first (held while storing, so the check and the store are one step).
    reloads: std::sync::Mutex<u64>,
    stats: Arc<Stats>,
    board: Arc<HealthBoard>,
    acme: Arc<crate::acme_txt::AcmeTxt>,
    stopping: AtomicBool,
}

/// Opens the configured database for one build; it is dropped once the geo maps are built
/// (they hold everything queries need), so it costs memory only while loading.
fn open_geo_db(cfg: &DnsConfig) -> Result<Option<GeoDb>, String> {
    cfg.geoip_db.as_deref().map(GeoDb::open).transpose()
}

/// Builds `cfg`'s catalog, walking `db` into merged trees (seconds for a full City database).
async fn walk(
    shared: &Arc<Shared>,
    cfg: &DnsConfig,
    db: Option<Arc<GeoDb>>,
) -> Result<Catalog, String> {
    let sh = shared.clone();
    let cfg2 = cfg.clone();
    // The database walk is CPU work: keep it off the async workers.
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let _guard = handle.enter();
        Catalog::build(&cfg2, db.as_deref(), &sh.board, &sh.stats, &sh.acme)
    })
    .await
    .map_err(|e| format!("dns: catalog build failed: {e}"))?
    .map_err(|ps| problems_text(&ps))
}

fn problems_text(ps: &[crate::config::Problem]) -> String {
    ps.iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Opens `cfg`'s database (if any) and says which it is.
fn open_described(cfg: &DnsConfig) -> Result<Option<Arc<GeoDb>>, String> {
    let db = open_geo_db(cfg)?;
    if let (Some(db), Some(path)) = (&db, &cfg.geoip_db) {
        tracing::info!(path = %path.display(), "dns: GeoIP database {}", db.describe());
    }
    Ok(db.map(Arc::new))
}

/// The start-up walk: builds the merged trees while the server answers from per-query
/// lookups, then swaps them in (unless a reload has stored a catalog meanwhile).
async fn walk_after_start(shared: Arc<Shared>, cfg: DnsConfig, db: Arc<GeoDb>) {
    let reloads = *shared.reloads.lock().unwrap_or_else(|p| p.into_inner());
    let started = std::time::Instant::now();
    match walk(&shared, &cfg, Some(db)).await {
        Ok(catalog) => {
            let now = shared.reloads.lock().unwrap_or_else(|p| p.into_inner());
            if *now == reloads {
                shared.catalog.store(Arc::new(catalog));
                tracing::info!(
                    "dns: GeoIP database walked in {:.1} s; geo answers now come from the merged trees",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Err(e) => tracing::error!(
            "dns: walking the GeoIP database failed ({e}); geo answers go on from per-query lookups"
        ),
    }
}

impl DnsServer {
    /// Builds the catalog, binds every listen address (UDP and TCP on the same port) and serves.
    /// The server's instruments (`outpost.dns.*`) are registered on `meter`.
    pub async fn start(
        cfg: &DnsConfig,
        meter: &opentelemetry::metrics::Meter,
    ) -> Result<DnsServer, String> {
        let placeholder = Catalog::empty();
        let shared = Arc::new(Shared {
            catalog: ArcSwap::from_pointee(placeholder),
            reloads: std::sync::Mutex::new(0),
            stats: Arc::default(),
            board: Arc::default(),
            acme: Arc::default(),
            stopping: AtomicBool::new(false),
        });
        // With a database, answer at once from per-query lookups, and walk it into merged
        // trees in the background (seconds for a full City database).
        let db = open_described(cfg)?;
        let catalog = match &db {
            Some(db) => Catalog::build_direct(cfg, db, &shared.board, &shared.stats, &shared.acme)
                .map_err(|ps| problems_text(&ps))?,
            None => walk(&shared, cfg, None).await?,
        };
        shared.catalog.store(Arc::new(catalog));
        crate::telemetry::register(meter, shared.stats.clone(), shared.board.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let workers = cfg
            .udp_workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        let mut tasks = Vec::new();
        for listen in &cfg.listen {
            let (udp, tcp) = bind_pair(*listen).await?;
            let addr = udp
                .local_addr()
                .map_err(|e| format!("dns: {listen}: {e}"))?;
            // No read timeout: a blocking receive with a timeout arms a kernel timer every time
            // the thread sleeps, which costs measurably per query at moderate load. `stop()`
            // wakes the threads with datagrams instead.
            for i in 0..workers {
                let sock = udp.try_clone().map_err(|e| format!("dns: {listen}: {e}"))?;
                let sh = shared.clone();
                let t = std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || udp_loop(sock, sh))
                    .map_err(|e| format!("dns: cannot start a thread: {e}"))?;
                threads.push(t);
            }
            tasks.push(tokio::spawn(tcp_loop(
                tcp,
                shared.clone(),
                cfg.tcp_idle_timeout.0,
                stop_rx.clone(),
            )));
            addrs.push(addr);
        }
        let walking = db.map(|db| tokio::spawn(walk_after_start(shared.clone(), cfg.clone(), db)));
        Ok(DnsServer {
            shared,
            addrs,
            threads,
            tasks,
            walking,
            stop_tx,
        })
    }

    /// The ACME DNS-01 records this server publishes (the admin API adds and removes them).
    pub fn acme_txt(&self) -> Arc<crate::acme_txt::AcmeTxt> {
        self.shared.acme.clone()
    }

    /// Whether geo answers come from the merged trees (the start-up walk of the GeoIP database
    /// is done, or there was no database); until then they come from per-query lookups.
    pub fn geo_walked(&self) -> bool {
        !self.shared.catalog.load().is_direct()
    }

    /// The bound addresses (each UDP and TCP).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Replaces zones and geo maps with those of `cfg`; on any error the old ones keep serving.
    /// Listen addresses and worker counts are not changed by a reload.
    pub async fn reload(&self, cfg: &DnsConfig) -> Result<(), String> {
        self.handle().reload(cfg).await
    }

    /// A handle that reloads this server's zones while it runs.
    pub fn handle(&self) -> DnsHandle {
        DnsHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the listeners and probes and waits for the UDP threads.
    pub async fn stop(self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        if let Some(w) = &self.walking {
            w.abort();
        }
        let _ = self.stop_tx.send(true);
        self.shared.board.stop();
        for t in self.tasks {
            let _ = t.await;
        }
        let threads = self.threads;
        let addrs = self.addrs;
        let _ = tokio::task::spawn_blocking(move || {
            // Each datagram wakes one blocked thread, which sees `stopping` and ends (the
            // datagram itself is too short to answer). Repeat until all have ended.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while threads.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
                for a in &addrs {
                    wake(*a);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            for t in threads {
                if t.is_finished() {
                    let _ = t.join();
                }
            }
        })
        .await;
    }
}

/// Sends one empty datagram to a UDP listener (its unspecified address means loopback).
fn wake(addr: SocketAddr) {
    let mut to = addr;
    if to.ip().is_unspecified() {
        to.set_ip(match to {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let bind: SocketAddr = if to.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    if let Ok(s) = UdpSocket::bind(bind) {
        let _ = s.send_to(&[], to);
    }
}

/// Binds UDP and TCP on the same port; with port 0, retries until both get one.
async fn bind_pair(listen: SocketAddr) -> Result<(UdpSocket, TcpListener), String> {
    let mut last = String::new();
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .map_err(|e| format!("dns: cannot listen on udp {listen}: {e}"))?;
        let addr = udp
            .local_addr()
            .map_err(|e| format!("dns: {listen}: {e}"))?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if listen.port() == 0 => last = e.to_string(),
            Err(e) => return Err(format!("dns: cannot listen on tcp {listen}: {e}")),
        }
    }
    Err(format!(
        "dns: cannot bind udp and tcp on one port for {listen}: {last}"
    ))
}

fn udp_loop(sock: UdpSocket, shared: Arc<Shared>) {
    crate::udp::serve(sock, &shared.catalog, &shared.stats, &shared.stopping);
}

async fn tcp_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stop.changed() => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "dns: tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let sh = shared.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            tcp_conn(stream, peer, sh, idle, stop).await;
            drop(permit);
        });
    }
}

/// Serves length-prefixed queries on one connection until idle, EOF, bad framing or stop.
async fn tcp_conn(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 65535];
    // The response goes after a two-byte length: both buffers live as long as the connection.
    let mut out = Vec::with_capacity(4096);
    let mut framed = Vec::with_capacity(4096);
    loop {
        let mut len = [0u8; 2];
        let read = tokio::select! {
            r = tokio::time::timeout(idle, stream.read_exact(&mut len)) => r,
            _ = stop.changed() => return,
        };
        if !matches!(read, Ok(Ok(_))) {
            return;
        }
        let n = u16::from_be_bytes(len) as usize;
        // The whole message must follow promptly: a slow sender holds a slot for at most `idle`.
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[..n])).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        shared.stats.tcp_queries.fetch_add(1, Ordering::Relaxed);
        let catalog = shared.catalog.load();
        if !catalog.respond(
            &buf[..n],
            peer.ip(),
            Transport::Tcp,
            &shared.stats,
            &mut out,
        ) {
            // Not a query: close, as there is no way to say so on a stream.
            return;
        }
        drop(catalog);
        framed.clear();
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if !matches!(
            tokio::time::timeout(idle, stream.write_all(&framed)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

/// Reloads a running [`DnsServer`]'s zones and geo maps.
#[derive(Clone)]
pub struct DnsHandle {
    shared: Arc<Shared>,
}

impl DnsHandle {
    /// Replaces zones and geo maps with those of `cfg`; on any error the old ones keep
    /// serving. Listen addresses and worker counts are not changed by a reload.
    pub async fn reload(&self, cfg: &DnsConfig) -> Result<(), String> {
        let db = open_described(cfg)?;
        let catalog = walk(&self.shared, cfg, db).await?;
        let keep = catalog.health_urls();
        let mut reloads = self
            .shared
            .reloads
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *reloads += 1;
        self.shared.catalog.store(Arc::new(catalog));
        drop(reloads);
        self.shared.board.retain(&keep);
        Ok(())
    }
}
