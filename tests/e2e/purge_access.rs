//! Who takes a purge, and for what: a node with nothing that caches refuses (unless it is a
//! dedicated purge hub), a URL for a host no site serves is refused, the CLI names the
//! address and the cause of a failure, and the HTTP `PURGE` method from `purge_from` networks.

use crate::inspect::outpost;
use crate::support::process::{Process, BIN};
use crate::support::*;

/// A DNS-only node: `[admin]` and `[dns]`, nothing that caches.
fn dns_only(dir: &std::path::Path) -> Process {
    let db = dir.join("city.mmdb");
    geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD).unwrap();
    Process::start(
        dir,
        "dns",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[dns]\nlisten = [\"127.0.0.1:0\"]\n\
             geoip_db = \"{}\"\n\n[[dns.zones]]\nname = \"example.test\"\nns = [\"ns1.example.test.\"]\n\
             records = [ {{ name = \"ns1\", type = \"A\", value = \"192.0.2.53\" }} ]\n",
            db.display()
        ),
        2,
    )
}

#[tokio::test]
async fn a_node_that_caches_nothing_refuses_purges_unless_it_is_a_dedicated_hub() {
    let dir = temp_dir("purge-dns-only");
    let dns = dns_only(&dir);
    let admin = dns.url("admin");
    let (status, v) = purge(&admin, TOKEN, r#"{"all":true}"#).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(
        v["error"],
        "this node has no edge or shield role: nothing here caches; send purges to an edge, \
         a shield or the purge hub"
    );
    let (code, _, err) = outpost(&["purge", "--admin", &admin, "--token", TOKEN, "--all"]).await;
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "outpost: the admin API at {admin} answered 409: this node has no edge or shield role"
        )),
        "{err}"
    );

    // An [admin] section alone runs nothing; with purge_hub = true it is a dedicated hub,
    // whose log must survive restarts.
    for (toml, want) in [
        (
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\n",
            "admin.purge_hub: nothing to run",
        ),
        (
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"t\"\npurge_hub = true\n",
            "admin.state_dir: a dedicated purge hub keeps the fleet's purge log",
        ),
    ] {
        let p = dir.join("check.toml");
        std::fs::write(&p, toml).unwrap();
        let out = tokio::process::Command::new(BIN)
            .arg("check-config")
            .arg(&p)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "missing {want:?} in {err}");
    }
    let hub = Process::start(
        &dir,
        "hub",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\npurge_hub = true\nstate_dir = \"{}\"\n",
            dir.join("hub-state").display()
        ),
        1,
    );
    let hub_admin = hub.url("admin");
    // It has no sites to check hosts against: it takes purges for the whole fleet.
    let (status, v) = purge(&hub_admin, TOKEN, r#"{"urls":["http://any.test/x"]}"#).await;
    assert_eq!((status, v["version"].as_u64()), (200, Some(1)), "{v}");
    assert!(dir.join("hub-state/purge.log").exists());
    // A follower edge applies what the hub logged.
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("{n}"), &[("cache-control", "max-age=60")])).await;
    let follower = Node::start(Some(&origin.url()), Some(hub_admin.clone()), None, |_| {}).await;
    assert!(
        follower
            .purge
            .wait_applied(1, std::time::Duration::from_secs(5))
            .await
    );
}

#[tokio::test]
async fn a_purge_for_a_host_no_site_serves_is_refused() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("{n}"), &[("cache-control", "max-age=60")])).await;
    let node = Node::start(Some(&origin.url()), None, None, |_| {}).await;
    let admin = node.admin_url();
    for json in [
        r#"{"urls":["http://127.0.0.1/a","http://nobody.test/a"]}"#,
        r#"{"prefixes":["https://NoBody.test:8443/img/"]}"#,
    ] {
        let (status, v) = purge(&admin, TOKEN, json).await;
        assert_eq!(status, 400, "{json}: {v}");
        assert_eq!(v["error"], "no site of this node serves host nobody.test");
    }
    // Hosts of its sites, tags and everything are taken.
    for json in [
        r#"{"urls":["http://localhost:8080/a"]}"#,
        r#"{"tags":["x"]}"#,
        r#"{"all":true}"#,
    ] {
        let (status, v) = purge(&admin, TOKEN, json).await;
        assert_eq!(status, 200, "{json}: {v}");
    }
    assert_eq!(
        node.purge.latest(),
        3,
        "no version was used by a refused purge"
    );
}

#[tokio::test]
async fn cli_errors_name_the_address_and_the_cause() {
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("{n}"), &[("cache-control", "max-age=60")])).await;
    let node = Node::start(Some(&origin.url()), None, None, |_| {}).await;
    let admin = node.admin_url();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["purge", "--admin", &closed, "--token", TOKEN, "--all"],
            format!("outpost: cannot reach the admin API at {closed}: connection refused"),
        ),
        (
            vec!["purge", "log", "--admin", &closed, "--token", TOKEN],
            format!("outpost: cannot reach the admin API at {closed}: connection refused"),
        ),
        (
            vec!["purge", "--admin", &admin, "--token", "wrong", "--all"],
            format!("outpost: the admin API at {admin} refused the token (403)"),
        ),
        (
            vec!["purge", "log", "--admin", &admin, "--token", "wrong"],
            format!("outpost: the admin API at {admin} refused the token (403)"),
        ),
        (
            vec!["inspect", "http://127.0.0.1/a", "--admin", &admin, "--token", "wrong"],
            format!("outpost: the admin API at {admin} refused the token (403)"),
        ),
        (
            vec!["purge", "--admin", &admin, "--token", TOKEN, "--url", "http://x.test/a"],
            format!("outpost: the admin API at {admin} answered 400: no site of this node serves host x.test"),
        ),
        (
            vec!["inspect", "http://x.test/a", "--admin", &admin, "--token", TOKEN],
            format!("outpost: the admin API at {admin} answered 400: no site of this node serves host x.test"),
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = outpost(&args).await;
        assert_eq!(code, 2, "{args:?}");
        assert_eq!(err.trim_end(), want, "{args:?}");
    }
}

/// An origin that answers every method, counting the requests it sees.
async fn counting_origin() -> Origin {
    Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} #{n}", seen.method),
            &[("cache-control", "max-age=60")],
        )
    })
    .await
}

#[tokio::test]
async fn purge_method_from_a_listed_network_purges_through_the_purge_service() {
    let origin = counting_origin().await;
    let node = Node::start(Some(&origin.url()), None, None, |c| {
        c.sites[0].purge_from = vec!["10.0.0.0/8".into(), "127.0.0.1/32".into()];
    })
    .await;
    let c = client();
    get(&node.url("/a?x=1"), &[]).await;
    get(&node.url("/b"), &[]).await;
    assert!(get(&node.url("/a?x=1"), &[]).await.is_hit());
    let r = send(&c, "PURGE", &node.url("/a?x=1"), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["purged"], "http://127.0.0.1/a?x=1");
    assert!(
        r.cache_status().contains("detail=purge"),
        "{}",
        r.cache_status()
    );
    assert_eq!(node.purge.applied(), 1, "a versioned purge, applied here");
    let after = get(&node.url("/a?x=1"), &[]).await;
    assert!(
        after.cache_status().contains("fwd=miss"),
        "{}",
        after.cache_status()
    );
    assert!(get(&node.url("/b"), &[]).await.is_hit(), "other URLs stay");
    // Never forwarded, never cached.
    let seen = origin.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.method == "GET"), "{seen:?}");
    let r = send(&c, "PURGE", &node.url("/a?x=1"), &[]).await;
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], 2, "each PURGE is a purge of its own");
}

#[tokio::test]
async fn purge_method_from_elsewhere_is_refused_and_changes_nothing() {
    let origin = counting_origin().await;
    for purge_from in [vec!["10.0.0.0/8".to_string()], vec![]] {
        let node = Node::start(Some(&origin.url()), None, None, |c| {
            c.sites[0].purge_from = purge_from.clone();
        })
        .await;
        get(&node.url("/a"), &[]).await;
        let r = send(&client(), "PURGE", &node.url("/a"), &[]).await;
        assert_eq!(r.status, 405, "{purge_from:?}: {}", r.text());
        assert!(r.header("allow").is_some());
        assert!(get(&node.url("/a"), &[]).await.is_hit(), "{purge_from:?}");
        assert_eq!(node.purge.latest(), 0);
    }
    let seen = origin.seen.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.method == "GET"), "{seen:?}");
}

#[test]
fn check_config_refuses_a_bad_purge_from() {
    let dir = temp_dir("purge-from");
    let p = dir.join("node.toml");
    std::fs::write(
        &p,
        "[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"a.test\"]\n\
         origins = [\"http://127.0.0.1:1\"]\npurge_from = [\"127.0.0.1\", \"10.0.0.0/33\", \"::1/128\", \"office\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN)
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let f = p.display();
    for want in [
        format!("{f}:7: edge.sites[0].purge_from[1]: \"10.0.0.0/33\" is not a network"),
        format!("{f}:7: edge.sites[0].purge_from[3]: \"office\" is not a network"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in\n{err}");
    }
    assert_eq!(
        err.lines().count(),
        2,
        "a bare address and IPv6 are fine:\n{err}"
    );
}
