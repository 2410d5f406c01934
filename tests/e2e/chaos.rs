//! Chaos, with real `outpost` processes: a shield SIGKILLed in the middle of a fill, NATS
//! restarted during a stream of purges, a full disk under the disk tier, origins that send
//! garbage, stall or reset, and the wall clock jumping forward and back.
//!
//! Related cases live elsewhere and are not repeated here: an origin closing mid-body and
//! stalling mid-body (bad_input.rs), a hanging origin and all origins down (origins.rs), a
//! timeout before the head (stale.rs), a failing (not full) disk (disk.rs).

use crate::support::process::Process;
use crate::support::*;
use bytes::Bytes;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET `path` on an admin API with the test token: the JSON answer.
async fn admin_json(admin: &str, path: &str) -> Value {
    client()
        .get(format!("{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

/// GET `path` on an admin API with the test token: the text answer.
async fn admin_text(admin: &str, path: &str) -> String {
    client()
        .get(format!("{admin}{path}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// What `GET /cache?url=` says the node's caches hold for `url`: (tier, body bytes) per entry.
async fn stored(admin: &str, url: &str) -> Vec<(String, u64)> {
    let v: Value = client()
        .get(format!("{admin}/cache"))
        .query(&[("url", url)])
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| n["entries"].as_array().cloned().unwrap_or_default())
        .map(|e| {
            (
                e["tier"].as_str().unwrap_or("?").to_string(),
                e["body_bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// The body of `path` on the test origins: `len` bytes that name the path and their offset,
/// so a shifted or short copy never passes for the real one.
fn body_of(path: &str, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0;
    while out.len() < len {
        out.extend_from_slice(format!("{path}:{i:08};").as_bytes());
        i += 1;
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Checks `got` is the whole body of `path` (without printing 100 KiB when it is not).
fn assert_whole(got: &[u8], path: &str, len: usize) {
    let want = body_of(path, len);
    let same = got
        .iter()
        .zip(want.iter())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        got == &want[..],
        "{path}: {} bytes, the first {same} right, of {len}",
        got.len()
    );
}

/// Reads a streamed response to its end: the bytes that came and whether it ended cleanly.
async fn read_all(mut r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => return (got, true),
            Err(_) => return (got, false),
        }
    }
}

fn admin_section() -> String {
    format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n")
}

// ---------------------------------------------------------------------------------------------
// 1. A shield killed in the middle of a fill.

const BIG: usize = 200 * 1024;

/// An origin whose first answer for each path is slow (20 chunks, 50 ms apart) and whose
/// later ones are quick; `/cl/..` declares its length, `/chunked/..` does not.
async fn slow_first_origin() -> Origin {
    let seen_paths = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    Origin::start(move |seen, _| {
        let path = seen.uri.clone();
        let body = body_of(&path, BIG);
        let mut headers = vec![("cache-control", "max-age=600")];
        let len = BIG.to_string();
        if path.starts_with("/cl/") {
            headers.push(("content-length", &len));
        }
        let first = seen_paths.lock().unwrap().insert(path.clone());
        let r = Reply::ok("", &headers);
        if first {
            let chunks = body
                .chunks(BIG / 20)
                .map(|c| (Bytes::copy_from_slice(c), Duration::from_millis(50)))
                .collect();
            r.body(Body::Chunks(chunks))
        } else {
            r.body(Body::Full(body))
        }
    })
    .await
}

fn shield_toml(origin: &Origin) -> String {
    format!(
        "{}[shield]\nlisten = [\"127.0.0.1:0\"]\nsecret = \"{SHIELD_SECRET}\"\n[[shield.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        origin.url()
    )
}

/// How many fills a shield process has in flight.
async fn inflight(admin: &str) -> u64 {
    admin_json(admin, "/stats").await["shield"][0]["cache"]["inflight"]
        .as_u64()
        .unwrap_or(0)
}

/// Starts a fill of `path` through `edge`, waits for its first body bytes, SIGKILLs the
/// shield (of `shields`) that has it in flight, and checks the client saw the cut. Returns
/// the index of the shield killed.
async fn kill_the_filling_shield(edge: &str, path: &str, shields: &mut [Process]) -> usize {
    let res = client().get(format!("{edge}{path}")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let declared = res.content_length();
    let mut res = res;
    let first = res.chunk().await.unwrap().expect("first bytes");
    let mut who = None;
    for _ in 0..100 {
        for (i, s) in shields.iter_mut().enumerate() {
            if s.is_running() && inflight(&s.url("admin")).await > 0 {
                who = Some(i);
            }
        }
        if who.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let who = who.expect("a shield has the fill in flight");
    shields[who].signal("KILL");
    assert!(shields[who].wait_exit(Duration::from_secs(5)).is_some());
    let (rest, clean) = read_all(res).await;
    let got = first.len() + rest.len();
    assert!(
        !clean,
        "{path}: the client must see the cut (got {got} of {BIG} bytes, declared {declared:?})"
    );
    assert!(got < BIG, "{path}: {got} bytes");
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shield_killed_mid_fill_leaves_no_truncated_object_anywhere() {
    let origin = slow_first_origin().await;
    let dir = temp_dir("chaos-shield");
    let mut shields: Vec<Process> = (0..2)
        .map(|i| Process::start(&dir, &format!("shield{i}"), &shield_toml(&origin), 2))
        .collect();
    let shield_urls: Vec<String> = shields
        .iter()
        .map(|s| format!("\"{}\"", s.url("shield")))
        .collect();
    let edge_toml = format!(
        "{}[edge]\nlisten = [\"127.0.0.1:0\"]\nshields = [{}]\nshield_secret = \"{SHIELD_SECRET}\"\ndisk_path = \"{}\"\ndisk_bytes = \"64MiB\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        shield_urls.join(", "),
        dir.join("cache").display(),
        origin.url()
    );
    let edge = Process::start(&dir, "edge", &edge_toml, 2);
    let (url, admin) = (edge.url("edge"), edge.url("admin"));

    // A body of declared length, cut when its shield dies: the next request is answered in
    // full by the other shield.
    let first = kill_the_filling_shield(&url, "/cl/a", &mut shields).await;
    let next = get(&format!("{url}/cl/a"), &[]).await;
    assert_eq!(next.status, 200);
    assert_whole(&next.body, "/cl/a", BIG);
    assert!(
        next.cache_status().contains("outpost-shield"),
        "through the other shield: {}",
        next.cache_status()
    );

    // A chunked body, cut when the last shield dies: the next request goes to the origin.
    let second = kill_the_filling_shield(&url, "/chunked/b", &mut shields).await;
    assert_ne!(first, second);
    let next = get(&format!("{url}/chunked/b"), &[]).await;
    assert_eq!(next.status, 200);
    assert_whole(&next.body, "/chunked/b", BIG);
    assert!(
        !next.cache_status().contains("outpost-shield"),
        "straight from the origin: {}",
        next.cache_status()
    );

    // Nothing truncated was stored: memory and disk hold the whole objects only, and hits
    // are whole.
    for path in ["/cl/a", "/chunked/b"] {
        let full = format!("http://127.0.0.1{path}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let entries = loop {
            let e = stored(&admin, &full).await;
            if e.iter().any(|(t, _)| t == "disk") || Instant::now() > deadline {
                break e;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        assert!(
            entries.iter().any(|(t, _)| t == "memory") && entries.iter().any(|(t, _)| t == "disk"),
            "{path}: {entries:?}"
        );
        for (tier, len) in &entries {
            assert_eq!(*len, BIG as u64, "{path} in {tier}: a truncated copy");
        }
        let hit = get(&format!("{url}{path}"), &[]).await;
        assert!(hit.is_hit(), "{path}: {}", hit.cache_status());
        assert_whole(&hit.body, path, BIG);
    }
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

// ---------------------------------------------------------------------------------------------
// 2. NATS restarted during a stream of purges.

const PURGES: usize = 200;

fn nats_node_toml(nats: &NatsServer, origin: &Origin, id: &str) -> String {
    format!(
        "{}[edge]\nlisten = [\"127.0.0.1:0\"]\npurge_nats_url = \"{}\"\nnode_id = \"{id}\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        nats.url(),
        origin.url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purges_sent_while_nats_restarts_all_arrive_in_order() {
    let mut nats = NatsServer::start().await;
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("chaos-nats");
    let a = Process::start_env(
        &dir,
        "a",
        &nats_node_toml(&nats, &origin, "a"),
        2,
        &[(
            "OUTPOST_LOG",
            "info,async_nats=trace,edge_node::purge=debug",
        )],
    );
    let b = Process::start(&dir, "b", &nats_node_toml(&nats, &origin, "b"), 2);
    let (a_admin, b_admin) = (a.url("admin"), b.url("admin"));

    // One purge first, so both consumers exist before the stream starts.
    let (status, v) = purge(&a_admin, TOKEN, r#"{"tags":["warm-up"]}"#).await;
    assert_eq!(status, 200, "{v}");

    // A stream of tag purges, one after another, while the server restarts under it.
    let sent = Arc::new(AtomicUsize::new(0));
    let n = sent.clone();
    let admin = a_admin.clone();
    let stream = tokio::spawn(async move {
        let mut answers = Vec::new();
        for i in 0..PURGES {
            let (status, v) = purge(&admin, TOKEN, &format!(r#"{{"tags":["t{i}"]}}"#)).await;
            answers.push((status, v));
            n.store(i + 1, Ordering::SeqCst);
        }
        answers
    });
    assert!(
        eventually(Duration::from_secs(30), || sent.load(Ordering::SeqCst)
            >= PURGES / 4)
        .await
    );
    nats.restart().await;
    let at_restart = sent.load(Ordering::SeqCst);
    let answers = stream.await.unwrap();
    assert!(
        at_restart < PURGES,
        "the stream ended before the restart: it proves nothing"
    );

    // Every purge was accepted, under the next version each: none refused, none twice.
    let versions: Vec<u64> = answers
        .iter()
        .enumerate()
        .map(|(i, (status, v))| {
            assert_eq!(*status, 200, "purge {i} refused: {v}");
            v["version"].as_u64().unwrap()
        })
        .collect();
    let expected: Vec<u64> = (2..=PURGES as u64 + 1).collect();
    assert_eq!(versions, expected, "one version each, in the order sent");

    // Node B applied every one, in order.
    let last = PURGES as u64 + 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let applied = admin_json(&b_admin, "/stats").await["purge"]["applied"]
            .as_u64()
            .unwrap_or(0);
        if applied >= last {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node B applied {applied} of {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = admin_json(&b_admin, "/purge/log?since=1").await;
    let events = log["events"].as_array().unwrap();
    let applied: Vec<(u64, String)> = events
        .iter()
        .map(|e| (e["version"].as_u64().unwrap(), e["target"].to_string()))
        .collect();
    assert_eq!(applied.len(), PURGES, "{log}");
    for (i, (version, target)) in applied.iter().enumerate() {
        assert_eq!(*version, i as u64 + 2);
        assert!(
            target.contains(&format!("\"t{i}\"")),
            "version {version}: {target}"
        );
    }
    let metrics = admin_text(&b_admin, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "outpost_purge_applied_version", &[]),
        Some(last as f64)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. A full disk under the disk tier.

/// Whether this machine lets us mount a tmpfs in a user namespace of our own.
fn private_tmpfs_works(dir: &Path) -> Result<(), String> {
    let probe = dir.join("probe");
    std::fs::create_dir_all(&probe).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-Urm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs \"$0\""])
        .arg(&probe)
        .output()
        .map_err(|e| format!("unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

const OBJ: usize = 100 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_degrades_the_node_which_keeps_serving_and_says_so() {
    let dir = temp_dir("chaos-full");
    if let Err(why) = private_tmpfs_works(&dir) {
        println!("SKIPPED a_full_disk...: cannot mount a private tmpfs: {why}");
        return;
    }
    let origin = Origin::start(|seen, _| {
        let body = body_of(&seen.uri, OBJ);
        Reply::ok("", &[("cache-control", "max-age=600")]).body(Body::Full(body))
    })
    .await;
    let cache = dir.join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    // The disk tier is configured far larger than its file system: 2 MiB of tmpfs.
    let toml = format!(
        "{}[edge]\nlisten = [\"127.0.0.1:0\"]\nmemory_bytes = \"2MiB\"\nmax_object_bytes = \"256KiB\"\ndisk_path = \"{}\"\ndisk_bytes = \"64MiB\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        cache.display(),
        origin.url()
    );
    let mount = format!(
        "mount -t tmpfs -o size=2m tmpfs '{}' && exec \"$@\"",
        cache.display()
    );
    let mut edge = Process::start_wrapped(
        &dir,
        "edge",
        &toml,
        2,
        &[("OUTPOST_LOG_REPEAT_INTERVAL", "60s")],
        &["unshare", "-Urm", "sh", "-c", &mount, "sh"],
    );
    let (url, admin) = (edge.url("edge"), edge.url("admin"));
    let disk = || async { admin_json(&admin, "/stats").await["edge"][0]["cache"]["disk"].clone() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while disk().await["ready"] != true {
        assert!(Instant::now() < deadline, "disk tier never ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // 40 objects of 100 KiB: twice what the file system holds.
    for i in 0..40 {
        let path = format!("/f/{i}");
        let r = get(&format!("{url}{path}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_whole(&r.body, &path, OBJ);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while disk().await["full_errors"].as_u64().unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline,
            "no write found the disk full: {}",
            disk().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // It says so: degraded (not failed: it stays in rotation), a metric, one warning.
    let h = client()
        .get(format!("{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200, "a full disk is not a failed disk");
    let h: Value = h.json().await.unwrap();
    assert_eq!(h["status"], "degraded", "{h}");
    assert!(
        h["reasons"][0]
            .as_str()
            .unwrap()
            .contains("file system is full"),
        "{h}"
    );
    let metrics = admin_text(&admin, "/metrics").await;
    assert_eq!(
        metric_sum(&metrics, "outpost_cache_disk_full", &[]),
        Some(1.0),
        "{metrics}"
    );
    assert!(metric_sum(&metrics, "outpost_cache_disk_full_errors_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        metric_sum(&metrics, "outpost_cache_disk_up", &[]),
        Some(1.0)
    );
    let log = edge.log();
    let warnings = log.matches("the file system is full").count();
    assert!((1..=2).contains(&warnings), "{warnings} warnings: {log}");

    // It keeps serving everything, whole, from memory, disk or origin, and stores nothing
    // torn: every stored copy has the whole body.
    let full = |d: &Value| d["full_errors"].as_u64().unwrap_or(0);
    let before = full(&disk().await);
    let writes_before = disk().await["writes"].as_u64().unwrap();
    for i in 0..40 {
        let path = format!("/f/{i}");
        let r = get(&format!("{url}{path}"), &[]).await;
        assert_eq!(r.status, 200);
        assert_whole(&r.body, &path, OBJ);
        for (tier, len) in stored(&admin, &format!("http://127.0.0.1{path}")).await {
            assert_eq!(len, OBJ as u64, "{path} in {tier}");
        }
    }
    // Writes go on within what the file system holds (the least recently used make room).
    for i in 0..10 {
        get(&format!("{url}/g/{i}"), &[]).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while disk().await["writes"].as_u64().unwrap() <= writes_before {
        assert!(
            Instant::now() < deadline,
            "writes stopped: {}",
            disk().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let d = disk().await;
    assert!(
        full(&d) <= before + 1,
        "writes keep hitting the full disk: {d}"
    );
    // A purge frees the space: writes go on.
    let (status, _) = purge(&admin, TOKEN, r#"{"all":true}"#).await;
    assert_eq!(status, 200);
    let writes = disk().await["writes"].as_u64().unwrap();
    for i in 0..5 {
        let path = format!("/h/{i}");
        assert_whole(&get(&format!("{url}{path}"), &[]).await.body, &path, OBJ);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while disk().await["writes"].as_u64().unwrap() < writes + 5 {
        assert!(
            Instant::now() < deadline,
            "writes did not resume: {}",
            disk().await
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(edge.is_running(), "{}", edge.log());
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

// ---------------------------------------------------------------------------------------------
// 4. Origins that send garbage, stall after the head, or reset the connection.

/// A raw TCP origin: reads a request head, then misbehaves as its path says. Counts requests.
async fn raw_origin() -> (String, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            let c = c.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                c.fetch_add(1, Ordering::SeqCst);
                let line = String::from_utf8_lossy(&head).into_owned();
                let path = line.split(' ').nth(1).unwrap_or("/").to_string();
                let ok_head =
                    "HTTP/1.1 200 OK\r\ncache-control: max-age=600\r\ncontent-length: 1000\r\n\r\n";
                let reset = |s: tokio::net::TcpStream| {
                    s.set_zero_linger().unwrap();
                    drop(s); // SO_LINGER 0: the close is a RST
                };
                match path.as_str() {
                    "/garbage" => {
                        let _ = s
                            .write_all(b"SSH-2.0-OpenSSH_9.2\r\n\x00\x01\x02 not http\r\n\r\n")
                            .await;
                    }
                    "/stall-after-head" => {
                        let _ = s.write_all(ok_head.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    "/reset-before-head" => reset(s),
                    "/reset-mid-body" => {
                        let _ = s.write_all(ok_head.as_bytes()).await;
                        let _ = s.write_all(&[b'x'; 300]).await;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        reset(s);
                    }
                    _ => {}
                }
            });
        }
    });
    (format!("http://{addr}"), count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_origins_get_a_clean_error_nothing_stored_and_others_are_served() {
    let (bad, bad_count) = raw_origin().await;
    let good = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} #{n}", seen.uri),
            &[("cache-control", "no-store")],
        )
    })
    .await;
    let dir = temp_dir("chaos-origins");
    let toml = format!(
        "{}[edge]\nlisten = [\"127.0.0.1:0\"]\nfirst_byte_timeout = \"1s\"\nbody_idle_timeout = \"500ms\"\n[[edge.sites]]\nhosts = [\"bad.test\"]\norigins = [\"{bad}\"]\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        good.url()
    );
    let mut edge = Process::start(&dir, "edge", &toml, 2);
    let (url, admin) = (edge.url("edge"), edge.url("admin"));

    // Other clients of another site are served all along.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, u) = (stop.clone(), url.clone());
    let others = tokio::spawn(async move {
        let mut served = 0;
        while !s.load(Ordering::SeqCst) {
            let r = get(&format!("{u}/other"), &[]).await;
            assert_eq!(r.status, 200, "{}", r.text());
            served += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        served
    });

    // Before a head: an error answer in Outpost's form, in time.
    for (path, status) in [("/garbage", 502), ("/reset-before-head", 502)] {
        let t = Instant::now();
        let r = get(&format!("{url}{path}"), &[("host", "bad.test")]).await;
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{path}: {:?}",
            t.elapsed()
        );
        assert_eq!(r.status, status, "{path}: {}", r.text());
        let id = r.header("x-request-id").expect("a request id").to_string();
        let text = r.text();
        assert!(
            text.starts_with("outpost: ")
                && text.trim_end().ends_with(&format!("(request id {id})")),
            "{path}: {text}"
        );
        assert!(
            !text.contains("127.0.0.1"),
            "{path} names an address: {text}"
        );
    }
    // After a head: the client sees the cut, within the idle timeout.
    for path in ["/stall-after-head", "/reset-mid-body"] {
        let t = Instant::now();
        let res = client()
            .get(format!("{url}{path}"))
            .header("host", "bad.test")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let (got, clean) = read_all(res).await;
        assert!(
            !clean && got.len() < 1000,
            "{path}: {} bytes, clean {clean}",
            got.len()
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{path}: {:?}",
            t.elapsed()
        );
    }
    // Nothing was stored: the cache holds nothing, and each asks the origin again.
    let before = bad_count.load(Ordering::SeqCst);
    for path in [
        "/garbage",
        "/reset-before-head",
        "/stall-after-head",
        "/reset-mid-body",
    ] {
        assert_eq!(
            stored(&admin, &format!("http://bad.test{path}")).await,
            vec![],
            "{path}"
        );
        if let Ok(r) = client()
            .get(format!("{url}{path}"))
            .header("host", "bad.test")
            .send()
            .await
        {
            let _ = r.bytes().await;
        }
    }
    assert!(
        eventually(Duration::from_secs(5), || bad_count.load(Ordering::SeqCst)
            >= before + 4)
        .await,
        "a bad answer was served from the cache"
    );
    stop.store(true, Ordering::SeqCst);
    let served = others.await.unwrap();
    assert!(served > 0);
    assert!(edge.is_running());
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}

// ---------------------------------------------------------------------------------------------
// 5. The wall clock jumping forward and back (libfaketime on the real process).

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The `Date` of the process's own answers as seconds from now (real time): its edge's (a
/// 421 for an unknown host) and its admin API's (`/livez`), which must agree. (A cached
/// response carries its origin's `Date`.)
async fn date_offset(edge: &str, admin: &str) -> i64 {
    let offset = |r: reqwest::Response| {
        let date = r.headers()["date"].to_str().unwrap().to_string();
        offset_of(httpdate::parse_http_date(&date).unwrap())
    };
    let e = client()
        .get(format!("{edge}/"))
        .header("host", "unknown.test")
        .send()
        .await
        .unwrap();
    assert_eq!(e.status(), 421);
    let e = offset(e);
    let a = offset(client().get(format!("{admin}/livez")).send().await.unwrap());
    assert!(
        (e - a).abs() < 5,
        "edge Date {e} s from now, admin Date {a} s"
    );
    e
}

/// `date` as seconds from now.
fn offset_of(date: std::time::SystemTime) -> i64 {
    let now = std::time::SystemTime::now();
    match date.duration_since(now) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    }
}

fn age(r: &Got) -> u64 {
    r.header("age").and_then(|a| a.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_survives_the_wall_clock_jumping_forward_and_back() {
    if !Path::new(LIBFAKETIME).exists() {
        println!("SKIPPED freshness_survives...: {LIBFAKETIME} missing (Debian package faketime)");
        return;
    }
    let origin = Origin::start(|seen, n| {
        let cc = if seen.uri.starts_with("/short") {
            "max-age=2"
        } else {
            "max-age=60"
        };
        Reply::ok(&format!("{} #{n}", seen.uri), &[("cache-control", cc)])
    })
    .await;
    let dir = temp_dir("chaos-clock");
    let offset = dir.join("faketime");
    std::fs::write(&offset, "+0\n").unwrap();
    let toml = format!(
        "{}[edge]\nlisten = [\"127.0.0.1:0\"]\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        admin_section(),
        origin.url()
    );
    let offset_s = offset.display().to_string();
    let mut edge = Process::start_env(
        &dir,
        "edge",
        &toml,
        2,
        &[
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", &offset_s),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    );
    let (url, admin) = (edge.url("edge"), edge.url("admin"));
    let jump = |to: &str| std::fs::write(&offset, format!("{to}\n")).unwrap();

    get(&format!("{url}/a"), &[]).await;
    let r = get(&format!("{url}/a"), &[]).await;
    assert!(r.is_hit());
    assert!(date_offset(&url, &admin).await.abs() < 30);

    // A day forward: Date follows the wall clock; freshness does not.
    jump("+1d");
    let moved = date_offset(&url, &admin).await;
    assert!(
        (86_400 - 60..86_400 + 60).contains(&moved),
        "libfaketime did not move the process's clock (Date {moved} s from now)"
    );
    let r = get(&format!("{url}/a"), &[]).await;
    assert!(
        r.is_hit(),
        "stale at once after a jump: {}",
        r.cache_status()
    );
    assert!(age(&r) < 60, "Age {}", age(&r));
    // A new response (its Date a day behind this clock) is stored fresh, not stale on arrival.
    get(&format!("{url}/b"), &[]).await;
    let r = get(&format!("{url}/b"), &[]).await;
    assert!(r.is_hit(), "stale on arrival: {}", r.cache_status());
    assert!(age(&r) < 60, "Age {}", age(&r));
    // Purges still apply, soft ones included.
    let (status, _) = purge(&admin, TOKEN, r#"{"urls":["http://127.0.0.1/a"]}"#).await;
    assert_eq!(status, 200);
    assert!(!get(&format!("{url}/a"), &[]).await.is_hit(), "hard purge");
    let (status, _) = purge(
        &admin,
        TOKEN,
        r#"{"urls":["http://127.0.0.1/b"],"soft":true}"#,
    )
    .await;
    assert_eq!(status, 200);
    let r = get(&format!("{url}/b"), &[]).await;
    assert!(!r.is_hit(), "soft purge: {}", r.cache_status());
    // Stored now, a day ahead, fresh for 2 s.
    get(&format!("{url}/short"), &[]).await;
    assert!(get(&format!("{url}/short"), &[]).await.is_hit());

    // Back a day behind the real time: what was stored stays fresh as long as it should,
    // not a day longer.
    jump("-1d");
    assert!(date_offset(&url, &admin).await < -86_400 + 60);
    let r = get(&format!("{url}/a"), &[]).await;
    assert!(r.is_hit(), "{}", r.cache_status());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let before = origin.requests();
    let r = get(&format!("{url}/short"), &[]).await;
    assert!(
        !r.is_hit(),
        "immortal after a jump back: {}",
        r.cache_status()
    );
    assert_eq!(origin.requests(), before + 1);
    get(&format!("{url}/c"), &[]).await;
    assert!(get(&format!("{url}/c"), &[]).await.is_hit());
    assert!(edge.is_running());
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
}
