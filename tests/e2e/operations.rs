//! The operator's daily tools on `outpost run` as a process: reload (SIGHUP and `POST
//! /reload`) under load, honest health (`/healthz` 503 with a reason, `/livez`), the drain on
//! SIGTERM, per-site statistics, and what the node says at start and stop.

use crate::support::process::Process;
use crate::support::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An edge config: admin on `admin`, edge on `listen`, sites `(host, origin)`.
fn config(admin: u16, listen: &[u16], memory: &str, sites: &[(&str, &str)]) -> String {
    let listen: Vec<String> = listen
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let mut s = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n\n[edge]\nlisten = [{}]\nmemory_bytes = \"{memory}\"\n",
        listen.join(", ")
    );
    for (host, origin) in sites {
        s.push_str(&format!(
            "\n[[edge.sites]]\nhosts = [\"{host}\"]\norigins = [\"{origin}\"]\n"
        ));
    }
    s
}

/// An edge process with site `a.test` on `origin` and `b.test` on a closed port: the process,
/// its admin port and its edge port.
fn live_and_dead_sites(dir: &std::path::Path, origin: &Origin) -> (Process, u16, u16) {
    let (admin, edge) = (free_port(), free_port());
    let dead = format!("http://127.0.0.1:{}", free_port());
    let sites = [("a.test", origin.url()), ("b.test", dead)];
    let sites: Vec<(&str, &str)> = sites.iter().map(|(h, o)| (*h, o.as_str())).collect();
    let node = Process::start(dir, "edge", &config(admin, &[edge], "8MiB", &sites), 2);
    (node, admin, edge)
}

async fn admin_json(c: &reqwest::Client, method: &str, url: &str) -> (u16, serde_json::Value) {
    let req = match method {
        "POST" => c.post(url),
        _ => c.get(url),
    };
    let res = req.bearer_auth("t").send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_default())
}

async fn status_of(c: &reqwest::Client, url: &str, host: &str) -> u16 {
    send(c, "GET", url, &[("host", host)]).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_reloads_under_load_fail_no_request_and_apply_what_changed() {
    let origin = Origin::start(|_, _| Reply::ok("hello", &[("cache-control", "max-age=1")])).await;
    let dir = temp_dir("reload-load");
    let (admin, p1, p2) = (free_port(), free_port(), free_port());
    let a_only = config(admin, &[p1], "64MiB", &[("a.test", &origin.url())]);
    let both = config(
        admin,
        &[p1, p2],
        "16MiB",
        &[("a.test", &origin.url()), ("b.test", &origin.url())],
    );
    let node = Process::start(&dir, "edge", &a_only, 2);
    let c = client();
    let edge1 = format!("http://127.0.0.1:{p1}/x");
    let edge2 = format!("http://127.0.0.1:{p2}/x");
    let admin_url = format!("http://127.0.0.1:{admin}");
    assert_eq!(status_of(&c, &edge1, "b.test").await, 421);

    // Load on a.test through every reload: many clients, keep-alive, hits and misses.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for i in 0..8 {
        let (stop, ok, failed, url) = (stop.clone(), ok.clone(), failed.clone(), edge1.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && n < 20_000 {
                n += 1;
                let url = format!("{url}?k={}", (n + i) % 50);
                let good = match c.get(&url).header("host", "a.test").send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                let counter = if good { &ok } else { &failed };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for round in 0..20 {
        let (text, by_signal) = if round % 2 == 0 {
            (&both, true)
        } else {
            (&a_only, false)
        };
        std::fs::write(&node.config, text).unwrap();
        if by_signal {
            node.signal("HUP");
        } else {
            let (st, body) = admin_json(&c, "POST", &format!("{admin_url}/reload")).await;
            assert_eq!(st, 200, "{body}");
            assert_eq!(body["reloaded"], true, "{body}");
            assert!(
                body["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c.as_str().unwrap().starts_with("edge.sites[1]: removed")),
                "{body}"
            );
        }
        // The new config is what answers: b.test, the second listener, the memory size.
        let want_b = if round % 2 == 0 { 200 } else { 421 };
        let mut seen = 0;
        for _ in 0..100 {
            seen = status_of(&c, &edge1, "b.test").await;
            if seen == want_b {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(seen, want_b, "round {round}: b.test on the first listener");
        let second = c.get(&edge2).header("host", "b.test").send().await;
        match round % 2 {
            0 => assert_eq!(
                second.unwrap().status(),
                200,
                "round {round}: second listener"
            ),
            _ => assert!(
                second.is_err() || second.unwrap().status() != 200,
                "round {round}: the second listener was removed"
            ),
        }
        let (_, stats) = admin_json(&c, "GET", &format!("{admin_url}/stats")).await;
        let capacity = stats["edge"][0]["cache"]["memory_capacity_bytes"]
            .as_u64()
            .unwrap();
        let want = if round % 2 == 0 { 16 << 20 } else { 64 << 20 };
        assert_eq!(capacity, want, "round {round}: memory tier size");
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "the load ran: {ok} requests");
    assert_eq!(failed, 0, "failed requests during 20 reloads ({ok} ok)");

    // An invalid file: refused with the reason; the old config keeps serving.
    std::fs::write(&node.config, both.replace("16MiB", "lots")).unwrap();
    let (st, body) = admin_json(&c, "POST", &format!("{admin_url}/reload")).await;
    assert_eq!(st, 422, "{body}");
    assert!(
        body["errors"].to_string().contains("memory_bytes"),
        "{body}"
    );
    assert_eq!(status_of(&c, &edge1, "a.test").await, 200);
    assert_eq!(status_of(&c, &edge1, "b.test").await, 421);
    // What only a restart can change is refused by name.
    std::fs::write(&node.config, a_only.replace(&format!(":{admin}"), ":1")).unwrap();
    let (st, body) = admin_json(&c, "POST", &format!("{admin_url}/reload")).await;
    assert_eq!(st, 422, "{body}");
    assert!(
        body["errors"].to_string().contains("[admin] changed"),
        "{body}"
    );
    // Nothing changed: said so, not "reloaded".
    std::fs::write(&node.config, &a_only).unwrap();
    let (_, body) = admin_json(&c, "POST", &format!("{admin_url}/reload")).await;
    assert_eq!(body["changes"], serde_json::json!([]), "{body}");
    // `outpost reload` does the same from the command line.
    let cli = |args: &[&str]| {
        std::process::Command::new(crate::support::process::BIN)
            .args(["reload", "--admin", &admin_url, "--token", "t"])
            .args(args)
            .output()
            .unwrap()
    };
    std::fs::write(&node.config, &both).unwrap();
    let out = cli(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.starts_with("reloaded: "), "{stdout}");
    assert!(stdout.contains("edge.sites[1]: added"), "{stdout}");
    std::fs::write(&node.config, both.replace("16MiB", "lots")).unwrap();
    let out = cli(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("nothing was reloaded") && stderr.contains("memory_bytes"),
        "{stderr}"
    );
    let log = node.log();
    assert!(
        log.contains("reload changed edge.memory_bytes: \"64MiB\" -> \"16MiB\""),
        "{log}"
    );
    assert!(
        log.contains("reload rejected, the old config keeps serving"),
        "{log}"
    );
    assert!(log.contains("the config file is unchanged"), "{log}");
}

#[tokio::test]
async fn healthz_says_503_with_a_reason_when_no_upstream_serves_and_livez_stays_up() {
    let origin = Origin::start(|_, _| Reply::ok("up", &[])).await;
    let dir = temp_dir("healthz");
    let (node, admin, _) = live_and_dead_sites(&dir, &origin);
    let c = client();
    let health = format!("http://127.0.0.1:{admin}/healthz");
    // One site has a live origin: healthy.
    let r = c.get(&health).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Every origin down: 503 and why, without internal addresses.
    origin.stop();
    let mut last = (0, String::new());
    for _ in 0..50 {
        let r = c.get(&health).send().await.unwrap();
        last = (r.status().as_u16(), r.text().await.unwrap());
        if last.0 == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last.0, 503, "{}", last.1);
    assert!(
        last.1.contains("no site has a healthy upstream"),
        "{}",
        last.1
    );
    assert!(!last.1.contains("127.0.0.1"), "no addresses: {}", last.1);
    let live = c
        .get(format!("http://127.0.0.1:{admin}/livez"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
    drop(node);
}

#[tokio::test]
async fn sigterm_drains_the_requests_under_way_and_says_so() {
    let origin = Origin::start(|s, _| {
        if s.uri.starts_with("/slow") {
            Reply::ok("slow", &[]).delay(Duration::from_millis(1500))
        } else {
            Reply::ok("fast", &[])
        }
    })
    .await;
    let dir = temp_dir("drain");
    let (admin, edge) = (free_port(), free_port());
    let mut node = Process::start(
        &dir,
        "edge",
        &config(admin, &[edge], "8MiB", &[("a.test", &origin.url())]),
        2,
    );
    let c = client();
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            send(
                &c,
                "GET",
                &format!("http://127.0.0.1:{edge}/slow"),
                &[("host", "a.test")],
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.signal("TERM");
    // While it drains: health says so; new connections are refused.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = c
        .get(format!("http://127.0.0.1:{admin}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("draining"));
    assert!(
        reqwest::Client::new()
            .get(format!("http://127.0.0.1:{edge}/fast"))
            .header("host", "a.test")
            .send()
            .await
            .is_err(),
        "a draining edge accepts no new connection"
    );
    // The request under way finishes.
    let got = slow.await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "slow");
    let st = tokio::task::spawn_blocking(move || {
        let st = node.wait_exit(Duration::from_secs(10));
        (st, node.log())
    })
    .await
    .unwrap();
    assert!(
        st.0.is_some_and(|s| s.success()),
        "exit: {:?}\n{}",
        st.0,
        st.1
    );
    for line in [
        "draining: no new connections",
        "drained: every request under way finished",
        "stopped",
    ] {
        assert!(st.1.contains(line), "{line:?} in\n{}", st.1);
    }
}

#[tokio::test]
async fn stats_and_metrics_are_per_site_and_startup_says_what_runs() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("per-site");
    let (node, admin, edge) = live_and_dead_sites(&dir, &origin);
    let c = client();
    let url = format!("http://127.0.0.1:{edge}/p");
    for _ in 0..3 {
        status_of(&c, &url, "a.test").await;
    }
    assert_eq!(status_of(&c, &url, "b.test").await, 502);
    let (_, stats) = admin_json(&c, "GET", &format!("http://127.0.0.1:{admin}/stats")).await;
    let sites = &stats["edge"][0]["sites"];
    assert_eq!(sites["a.test"]["requests"], 3, "{stats}");
    assert_eq!(sites["a.test"]["hits"], 2, "{stats}");
    assert_eq!(sites["a.test"]["hit_ratio"], 0.667, "{stats}");
    assert_eq!(sites["b.test"]["requests"], 1, "{stats}");
    assert!(
        sites["b.test"]["upstream"]["errors"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    let metrics = c
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .bearer_auth("t")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_sum(
            &metrics,
            "http_client_request_duration_seconds_count",
            &[("cdn_site", "b.test")]
        )
        .is_some_and(|n| n >= 1.0),
        "{metrics}"
    );
    let log = node.log();
    for line in [
        "roles: edge, admin",
        "edge: cache: memory 8MiB, no disk tier",
        &format!(
            "edge: site a.test: hosts a.test -> origins {}",
            origin.url()
        ),
        "edge: purges: this node is the purge hub",
    ] {
        assert!(log.contains(line), "{line:?} in\n{log}");
    }
}

#[tokio::test]
async fn the_access_log_writes_a_line_per_request_and_reopens_on_sigusr1() {
    let origin = Origin::start(|_, _| Reply::ok("hi", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("access-log");
    let (admin, edge) = (free_port(), free_port());
    let path = dir.join("access.log");
    let cfg = config(admin, &[edge], "8MiB", &[("a.test", &origin.url())]).replace(
        "memory_bytes = \"8MiB\"\n",
        &format!(
            "memory_bytes = \"8MiB\"\naccess_log = {{ path = \"{}\", format = \"json\" }}\n",
            path.display()
        ),
    );
    let node = Process::start(&dir, "edge", &cfg, 2);
    let c = client();
    let url = format!("http://127.0.0.1:{edge}/page?q=1");
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for _ in 0..2 {
        send(
            &c,
            "GET",
            &url,
            &[
                ("host", "a.test"),
                ("user-agent", "probe/1"),
                ("traceparent", tp),
            ],
        )
        .await;
    }
    assert_eq!(status_of(&c, &url, "nobody.test").await, 421);
    let lines = |p: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || lines(&path).len() == 3).await,
        "{:?}",
        lines(&path)
    );
    let l = lines(&path);
    assert_eq!(l[0]["site"], "a.test");
    assert_eq!(l[0]["method"], "GET");
    assert_eq!(l[0]["target"], "/page?q=1");
    assert_eq!(l[0]["status"], 200);
    assert_eq!(l[0]["cache"], "miss");
    assert_eq!(l[1]["cache"], "hit");
    assert_eq!(l[1]["upstream_time"], serde_json::Value::Null);
    assert!(l[0]["upstream_time"].as_f64().is_some(), "{}", l[0]);
    assert_eq!(l[0]["client"], "127.0.0.1");
    assert_eq!(l[0]["tier"], "edge");
    assert_eq!(l[0]["user_agent"], "probe/1");
    assert_eq!(l[0]["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(l[0]["bytes"], 2);
    assert_ne!(l[0]["request_id"], l[1]["request_id"]);
    assert_eq!(l[2]["status"], 421);
    assert_eq!(l[2]["site"], "-");
    // logrotate: move the file away, SIGUSR1, and new lines go to a new file.
    let rotated = dir.join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    node.signal("USR1");
    assert!(
        eventually(Duration::from_secs(5), || {
            path.exists() || node.log().contains("access log reopened")
        })
        .await
    );
    send(&c, "GET", &url, &[("host", "a.test")]).await;
    assert!(
        eventually(Duration::from_secs(5), || lines(&path).len() == 1).await,
        "{}",
        node.log()
    );
    assert_eq!(lines(&rotated).len(), 3);
    // Never on stderr.
    assert!(!node.log().contains("/page?q=1"), "{}", node.log());
}

#[test]
fn a_bad_access_log_format_is_refused_by_check_config() {
    let dir = temp_dir("access-log-bad");
    let cfg = config(1, &[2], "8MiB", &[("a.test", "http://127.0.0.1:3")]).replace(
        "memory_bytes = \"8MiB\"\n",
        "memory_bytes = \"8MiB\"\naccess_log = { path = \"stderr\", format = \"status nonsense\", buffer = 0 }\n",
    );
    let (code, err) = crate::support::process::check_config(&dir, &cfg);
    assert_eq!(code, Some(2));
    assert!(err.contains("edge.access_log.format"), "{err}");
    assert!(err.contains("\"nonsense\" is not a field"), "{err}");
    assert!(err.contains("edge.access_log.buffer"), "{err}");
}

#[tokio::test]
async fn a_shield_reports_as_a_shield() {
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("shield-stats");
    let (admin, listen) = (free_port(), free_port());
    let cfg = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin}\"\ntoken = \"t\"\n\n[shield]\nlisten = [\"127.0.0.1:{listen}\"]\nsecret = \"s3cret-long\"\n\n[[shield.sites]]\nhosts = [\"a.test\"]\norigins = [\"{}\"]\n",
        origin.url()
    );
    let node = Process::start(&dir, "shield", &cfg, 2);
    let c = client();
    let url = format!("http://127.0.0.1:{listen}/p");
    let got = send(
        &c,
        "GET",
        &url,
        &[("host", "a.test"), ("outpost-shield-secret", "s3cret-long")],
    )
    .await;
    assert_eq!(got.status, 200);
    let (_, stats) = admin_json(&c, "GET", &format!("http://127.0.0.1:{admin}/stats")).await;
    assert!(stats.get("edge").is_none(), "{stats}");
    assert_eq!(stats["shield"][0]["tier"], "shield", "{stats}");
    assert_eq!(
        stats["shield"][0]["sites"]["a.test"]["requests"], 1,
        "{stats}"
    );
    assert!(
        node.log().contains("roles: shield, admin"),
        "{}",
        node.log()
    );
}
