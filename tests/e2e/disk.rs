//! The disk tier: objects survive a restart (clean or SIGKILL) and are served as hits with their
//! age still counting; damaged entries are dropped and refetched, never served; a failing disk
//! turns the tier off without failing requests; the tier stays within its size.

use crate::support::*;
use edge_node::config::ByteSize;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn body_for(uri: &str) -> String {
    format!("{uri} ").repeat(40)
}

async fn origin() -> Origin {
    Origin::start(|seen, _| {
        Reply::ok(
            &body_for(&seen.uri),
            &[
                ("cache-control", "max-age=600"),
                ("content-type", "text/plain"),
            ],
        )
    })
    .await
}

async fn wait_disk(e: &TestEdge, objects: u64) {
    let ok = eventually(Duration::from_secs(10), || {
        e.proxy
            .gauges()
            .disk
            .is_some_and(|d| d.ready && d.objects >= objects)
    })
    .await;
    assert!(ok, "disk tier has {:?}", e.proxy.gauges().disk);
}

fn disk_edge(dir: &Path) -> impl FnOnce(&mut edge_node::config::EdgeConfig) + '_ {
    move |c| {
        c.disk_path = Some(dir.to_path_buf());
        c.disk_bytes = ByteSize(64 << 20);
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in std::fs::read_dir(dir.join("objects")).unwrap().flatten() {
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

/// Caches `n` objects under `prefix` with a disk tier in `dir`, waits until they are on disk,
/// and stops the edge.
async fn populate_and_stop(origin: &Origin, dir: &Path, prefix: &str, n: u64) {
    let e = edge(origin, disk_edge(dir)).await;
    for i in 0..n {
        get(&e.url(&format!("{prefix}/{i}")), &[]).await;
    }
    wait_disk(&e, n).await;
    drop(e);
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn objects_survive_a_restart_as_hits_with_age_counting() {
    let origin = origin().await;
    let dir = temp_dir("disk-restart");
    populate_and_stop(&origin, &dir, "/o", 50).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let e = edge(&origin, disk_edge(&dir)).await;
    wait_disk(&e, 50).await;
    for i in 0..50 {
        let r = get(&e.url(&format!("/o/{i}")), &[]).await;
        assert!(r.is_hit(), "{i}: {}", r.cache_status());
        assert_eq!(r.text(), body_for(&format!("/o/{i}")));
        assert!(
            r.header("age").unwrap().parse::<u64>().unwrap() >= 1,
            "Age keeps counting across the restart"
        );
    }
    assert_eq!(origin.requests(), 50, "nothing refetched");
    assert_eq!(e.proxy.gauges().disk.unwrap().hits, 50);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn damaged_entries_are_dropped_and_refetched_never_served() {
    let origin = origin().await;
    let dir = temp_dir("disk-corrupt");
    populate_and_stop(&origin, &dir, "/c", 6).await;
    let fs = files(&dir);
    assert_eq!(fs.len(), 6);
    // Flip a byte in a body, in the meta block, and in the checksum table; truncate one file;
    // leave a half-written temporary file and junk.
    let flip = |p: &Path, at_from_end: Option<usize>, at: usize| {
        let mut b = std::fs::read(p).unwrap();
        let i = match at_from_end {
            Some(back) => b.len() - back,
            None => at,
        };
        b[i] ^= 0x55;
        std::fs::write(p, b).unwrap();
    };
    flip(&fs[0], Some(200), 0); // inside the body
    flip(&fs[1], None, 60); // inside the meta
    flip(&fs[2], Some(20), 0); // inside the checksum table
    let b = std::fs::read(&fs[3]).unwrap();
    std::fs::write(&fs[3], &b[..b.len() / 2]).unwrap();
    std::fs::write(dir.join("tmp").join("half-written"), b"OPOBJ001 partial").unwrap();
    std::fs::write(fs[4].parent().unwrap().join("junk"), b"not an entry").unwrap();

    let e = edge(&origin, disk_edge(&dir)).await;
    disk_ready(&e).await;
    let before = origin.requests();
    for i in 0..6 {
        let r = get(&e.url(&format!("/c/{i}")), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(
            r.text(),
            body_for(&format!("/c/{i}")),
            "never a damaged body"
        );
    }
    let refetched = origin.requests() - before;
    let d = e.proxy.gauges().disk.unwrap();
    assert_eq!(
        refetched, 4,
        "the four damaged entries were refetched, the two good ones served"
    );
    assert!(d.corrupt >= 4, "{d:?}");
    assert!(
        !dir.join("tmp").join("half-written").exists(),
        "temporary files are cleaned at start"
    );
    // The refetched entries are written in the background: let them land before the
    // directory goes.
    for _ in 0..100 {
        if e.proxy.gauges().disk.is_some_and(|d| d.writes >= 4) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(e);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_failing_disk_turns_the_tier_off_without_failing_requests() {
    let origin = origin().await;
    let dir = temp_dir("disk-fail");
    let e = edge(&origin, disk_edge(&dir)).await;
    disk_ready(&e).await;
    // The temporary directory becomes a file: every write now fails, as on a broken disk.
    std::fs::remove_dir_all(dir.join("tmp")).unwrap();
    std::fs::write(dir.join("tmp"), b"in the way").unwrap();
    for i in 0..5 {
        let r = get(&e.url(&format!("/f/{i}")), &[]).await;
        assert_eq!(r.status, 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || e
            .proxy
            .gauges()
            .disk
            .unwrap()
            .errors
            >= 1)
        .await
    );
    let d = e.proxy.gauges().disk.unwrap();
    assert!(!d.on, "the tier is off after a write error: {d:?}");
    for i in 0..5 {
        assert!(
            get(&e.url(&format!("/f/{i}")), &[]).await.is_hit(),
            "memory keeps serving"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_tier_stays_within_its_size() {
    let big = "x".repeat(1 << 20);
    let origin =
        Origin::start(move |_, _| Reply::ok(&big, &[("cache-control", "max-age=600")])).await;
    let dir = temp_dir("disk-evict");
    let e = edge(&origin, |c| {
        c.disk_path = Some(dir.to_path_buf());
        c.disk_bytes = ByteSize(16 << 20);
        c.memory_bytes = ByteSize(64 << 20);
    })
    .await;
    disk_ready(&e).await;
    for i in 0..40 {
        get(&e.url(&format!("/big/{i}")), &[]).await;
    }
    disk_writes(&e, 40).await;
    let d = e.proxy.gauges().disk.unwrap();
    assert!(d.bytes <= 16 << 20, "{d:?}");
    assert!(d.evictions >= 20, "{d:?}");
    let on_disk: u64 = files(&dir)
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(on_disk <= 16 << 20, "files on disk: {on_disk}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn every_fully_written_object_survives_sigkill() {
    let origin = origin().await;
    let dir = temp_dir("disk-kill");
    let cfg = dir.join("node.toml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    write!(
        f,
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n[edge]\nlisten = [\"127.0.0.1:0\"]\ndisk_path = \"{}\"\ndisk_bytes = \"64MiB\"\n[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        dir.join("cache").display(),
        origin.url()
    )
    .unwrap();
    drop(f);
    let start = || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_outpost"))
            .args(["run", "--config"])
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("outpost: edge listening on ")
            .unwrap()
            .to_string();
        let admin = lines
            .next()
            .unwrap()
            .unwrap()
            .strip_prefix("outpost: admin listening on ")
            .unwrap()
            .to_string();
        (child, url, admin)
    };
    let stats = |admin: String| async move {
        let r = client()
            .get(format!("{admin}/stats"))
            .bearer_auth("t")
            .send()
            .await
            .unwrap();
        let v: serde_json::Value = r.json().await.unwrap();
        v["edge"][0]["cache"]["disk"].clone()
    };
    let (mut child, url, admin) = start();
    for i in 0..30 {
        assert_eq!(get(&format!("{url}/k/{i}"), &[]).await.status, 200);
    }
    let mut written = 0;
    for _ in 0..200 {
        written = stats(admin.clone()).await["writes"].as_u64().unwrap();
        if written == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(written, 30);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (mut child, url, admin) = start();
    for _ in 0..200 {
        if stats(admin.clone()).await["ready"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let mut served = 0;
    for i in 0..30 {
        let r = get(&format!("{url}/k/{i}"), &[]).await;
        assert_eq!(r.text(), body_for(&format!("/k/{i}")));
        if r.is_hit() {
            served += 1;
        }
    }
    assert_eq!(
        served, 30,
        "all 30 fully written objects served as hits after SIGKILL"
    );
    assert_eq!(origin.requests(), 30);
    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_purge_applied_before_a_restart_still_covers_what_is_on_disk() {
    let origin = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} v{n}", seen.uri),
            &[
                ("cache-control", "max-age=600"),
                ("surrogate-key", "catalog"),
            ],
        )
    })
    .await;
    let dir = temp_dir("disk-purge");
    let state = dir.join("state");
    let node = Node::start(Some(&origin.url()), None, Some(state.clone()), |c| {
        c.disk_path = Some(dir.join("cache"));
        c.disk_bytes = ByteSize(64 << 20);
    })
    .await;
    get(&node.url("/p/1"), &[]).await;
    get(&node.url("/p/2"), &[]).await;
    // Both on disk before the purge.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = purge(&node.admin_url(), TOKEN, r#"{"tags":["catalog"]}"#).await;
    assert_eq!(status, 200);
    node.shutdown().await;
    let node = Node::start(Some(&origin.url()), None, Some(state.clone()), |c| {
        c.disk_path = Some(dir.join("cache"));
        c.disk_bytes = ByteSize(64 << 20);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = get(&node.url("/p/1"), &[]).await;
    assert!(
        !r.is_hit(),
        "the purged object on disk is not served after the restart"
    );
    assert_eq!(r.text(), "/p/1 v3");
    node.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
}
