//! Inspecting the cache: `GET /cache?url=` on the admin API (variants with their Vary values,
//! memory and disk tiers, purge marks, refusals) and `outpost inspect` / `outpost purge log`
//! as processes.

use crate::support::process::{Process, BIN};
use crate::support::*;
use serde_json::Value;
use std::time::Duration;

/// Responses that vary on Accept-Language, tagged, cacheable for a minute.
async fn vary_origin() -> Origin {
    Origin::start(|seen, n| {
        let lang = seen
            .headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        Reply::ok(
            &format!("{lang} #{n}"),
            &[
                ("cache-control", "max-age=60, stale-if-error=30"),
                ("content-type", "text/plain"),
                ("vary", "Accept-Language"),
                ("surrogate-key", "product catalog"),
            ],
        )
    })
    .await
}

/// `GET /cache?url=` with `token`: status and JSON.
async fn inspect(admin: &str, url: Option<&str>, token: Option<&str>) -> (u16, Value) {
    let mut rb = client().get(format!("{admin}/cache"));
    if let Some(u) = url {
        rb = rb.query(&[("url", u)]);
    }
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The entries of the first node of an answer held in `tier`.
fn in_tier<'a>(v: &'a Value, tier: &str) -> Vec<&'a Value> {
    v["nodes"][0]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tier"] == tier)
        .collect()
}

fn langs(entries: &[&Value]) -> Vec<String> {
    let mut out: Vec<String> = entries
        .iter()
        .map(|e| {
            e["variant"]["accept-language"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// Polls `GET /cache` until `done` holds for the answer.
async fn inspect_until(admin: &str, url: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = inspect(admin, Some(url), Some(TOKEN)).await;
        assert_eq!(status, 200, "{v}");
        if done(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {v:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shows_each_variant_in_memory_and_on_disk_without_touching_them() {
    let origin = vary_origin().await;
    let disk = temp_dir("inspect-disk");
    let with_disk = |c: &mut edge_node::config::EdgeConfig| {
        c.disk_path = Some(disk.to_path_buf());
        c.disk_bytes = edge_node::config::ByteSize(64 << 20);
    };
    let node = Node::start(Some(&origin.url()), None, None, with_disk).await;
    let admin = node.admin_url();
    let url = "http://127.0.0.1/p?b=2&a=1";
    for lang in ["de", "fr"] {
        get(&node.url("/p?b=2&a=1"), &[("accept-language", lang)]).await;
    }
    let v = inspect_until(&admin, url, |v| in_tier(v, "disk").len() == 2).await;
    assert_eq!(v["cached"], true);
    let n = &v["nodes"][0];
    assert_eq!(
        (n["tier"].as_str(), n["site"].as_str()),
        (Some("edge"), Some("127.0.0.1"))
    );
    assert_eq!(n["disk"], true);
    let keys = n["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "one key per scheme");
    assert_eq!(keys[0]["scheme"], "http");
    assert_eq!(keys[0]["key"].as_str().unwrap().len(), 32);
    let memory = in_tier(&v, "memory");
    assert_eq!(langs(&memory), ["de", "fr"], "{v:#}");
    assert_eq!(langs(&in_tier(&v, "disk")), ["de", "fr"]);
    for e in memory.iter().chain(&in_tier(&v, "disk")) {
        assert_eq!(e["scheme"], "http");
        assert_eq!(e["key"], keys[0]["key"]);
        assert_eq!(e["vary"], serde_json::json!(["accept-language"]));
        assert_eq!(e["status"], 200);
        assert_eq!(e["state"], "fresh");
        assert_eq!(e["lifetime_secs"], 60);
        assert!(e["ttl_secs"].as_u64().unwrap() >= 55, "{e}");
        assert_eq!(e["stale_if_error_secs"], 30);
        assert_eq!(e["tags"], serde_json::json!(["product", "catalog"]));
        assert_eq!(e["purge_version"], 0);
        assert_eq!(e["purge"], "none");
        assert!(e["body_bytes"].as_u64().unwrap() > 0);
        let headers = e["headers"].as_array().unwrap();
        assert!(
            headers.contains(&serde_json::json!(["content-type", "text/plain"])),
            "{e}"
        );
    }
    // The query is normalised by the site's rules, as purges do: `?a=1&b=2` is another URL
    // under the default `query = "keep"`, so it is not cached.
    let (status, other) = inspect(&admin, Some("http://127.0.0.1/p?a=1&b=2"), Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(other["cached"], false);

    // After a restart the memory tier is empty and the disk tier has both variants; looking
    // does not promote them into memory.
    node.shutdown().await;
    let node = Node::start(Some(&origin.url()), None, None, with_disk).await;
    let admin = node.admin_url();
    let v = inspect_until(&admin, url, |v| in_tier(v, "disk").len() == 2).await;
    assert!(in_tier(&v, "memory").is_empty(), "{v:#}");
    let (_, again) = inspect(&admin, Some(url), Some(TOKEN)).await;
    assert!(
        in_tier(&again, "memory").is_empty(),
        "inspecting promoted: {again:#}"
    );
    // A request does promote.
    let r = get(&node.url("/p?b=2&a=1"), &[("accept-language", "fr")]).await;
    assert!(r.is_hit(), "{}", r.cache_status());
    let (_, v) = inspect(&admin, Some(url), Some(TOKEN)).await;
    assert_eq!(langs(&in_tier(&v, "memory")), ["fr"]);

    // A soft purge by tag: both tiers' variants are now stale (served if the origin fails).
    let (status, p) = purge(&admin, TOKEN, r#"{"tags":["catalog"],"soft":true}"#).await;
    assert_eq!(status, 200, "{p}");
    let v = inspect_until(&admin, url, |v| v["nodes"][0]["purge_applied"] == 1).await;
    let entries = v["nodes"][0]["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["purge"], "soft", "{e}");
        assert_eq!(e["state"], "stale-if-error", "{e}");
        assert_eq!(e["ttl_secs"], 0);
    }
    node.shutdown().await;
}

#[tokio::test]
async fn refuses_what_it_cannot_look_up() {
    let origin = vary_origin().await;
    let node = Node::start(Some(&origin.url()), None, None, |_| {}).await;
    let admin = node.admin_url();
    let (status, v) = inspect(&admin, Some("http://127.0.0.1/nothing"), Some(TOKEN)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["cached"], false);
    assert_eq!(v["nodes"][0]["entries"], serde_json::json!([]));
    assert_eq!(v["nodes"][0]["disk"], Value::Null, "memory only");
    let (status, v) = inspect(&admin, Some("http://nobody.test/a"), Some(TOKEN)).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"], "no site of this node serves host nobody.test");
    for bad in [None, Some(""), Some("/relative"), Some("ftp://127.0.0.1/a")] {
        let (status, v) = inspect(&admin, bad, Some(TOKEN)).await;
        assert_eq!(status, 400, "{bad:?}: {v}");
        assert!(v["error"].is_string());
    }
    let (status, _) = inspect(&admin, Some("http://127.0.0.1/a"), None).await;
    assert_eq!(status, 401);
    let (status, _) = inspect(&admin, Some("http://127.0.0.1/a"), Some("wrong")).await;
    assert_eq!(status, 403);
    // A purge hub with no cache of its own has nothing to show.
    let hub = Node::start(None, None, None, |_| {}).await;
    let (status, v) = inspect(&hub.admin_url(), Some("http://127.0.0.1/a"), Some(TOKEN)).await;
    assert_eq!(status, 409);
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("no edge or shield role"));
}

/// Runs the `outpost` binary with `args`: exit code, stdout, stderr.
/// `outpost inspect URL` against the admin API at `admin`, with `more` arguments.
async fn inspect_cli(admin: &str, url: &str, more: &[&str]) -> (i32, String, String) {
    let mut args = vec!["inspect", url, "--admin", admin, "--token", TOKEN];
    args.extend_from_slice(more);
    outpost(&args).await
}

pub async fn outpost(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(BIN)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn outpost_inspect_and_purge_log_print_what_the_node_holds_and_did() {
    let origin = vary_origin().await;
    let dir = temp_dir("inspect-cli");
    let node = Process::start(
        &dir,
        "edge",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[edge]\nlisten = [\"127.0.0.1:0\"]\n\n\
             [[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
            origin.url()
        ),
        2,
    );
    let edge = node.url("edge");
    let admin = node.url("admin");
    for lang in ["de", "fr"] {
        get(&format!("{edge}/p"), &[("accept-language", lang)]).await;
    }
    let (code, out, err) = inspect_cli(&admin, "http://127.0.0.1/p", &[]).await;
    assert_eq!(code, 0, "{err}");
    for want in [
        "http://127.0.0.1/p: cached",
        "edge (site 127.0.0.1, purge version 0 applied, memory tier only)",
        "  key http  ",
        "  memory:",
        "    variant accept-language: \"de\"",
        "    variant accept-language: \"fr\"",
        // Age 0s or 1s: the fetch and the inspection may straddle a second.
        "      status 200, fresh: age ",
        "s, ttl ",
        " of 1m",
        "stale windows: while-revalidate 0s, if-error 30s",
        "      tags: product catalog",
        "        content-type: text/plain",
    ] {
        assert!(out.contains(want), "missing {want:?} in\n{out}");
    }
    let (code, out, _) = inspect_cli(&admin, "http://127.0.0.1/p", &["--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["cached"], true);
    assert_eq!(v["nodes"][0]["entries"].as_array().unwrap().len(), 2);
    let (code, out, _) = inspect_cli(&admin, "http://127.0.0.1/none", &[]).await;
    assert_eq!(code, 0);
    assert!(out.contains("http://127.0.0.1/none: not cached") && out.contains("  not cached"));

    // Two purges, then the log.
    for args in [
        &["--url", "http://127.0.0.1/p"][..],
        &["--tag", "catalog", "--tag", "api", "--soft"],
    ] {
        let mut a = vec!["purge", "--admin", &admin, "--token", TOKEN];
        a.extend_from_slice(args);
        let (code, out, err) = outpost(&a).await;
        assert_eq!(code, 0, "{err}");
        assert!(out.starts_with("purge accepted: version "), "{out}");
    }
    let (code, out, err) = outpost(&["purge", "log", "--admin", &admin, "--token", TOKEN]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("VERSION  TIME (UTC)"), "{out}");
    let cols = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    let first = cols(lines[1]);
    assert_eq!(first[0], "1");
    assert_eq!(&first[3..], ["url", "hard", "127.0.0.1/p"], "{out}");
    let second = cols(lines[2]);
    assert_eq!(&second[3..], ["tag", "soft", "catalog", "api"], "{out}");
    let (_, out, _) = outpost(&[
        "purge", "log", "--admin", &admin, "--token", TOKEN, "--limit", "1",
    ])
    .await;
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains(" tag "), "{out}");
    // `outpost purge` without the subcommand still needs what to purge.
    let (code, _, err) = outpost(&["purge", "--admin", &admin, "--token", TOKEN]).await;
    assert_eq!(code, 2);
    assert!(err.contains("name what to purge"), "{err}");
    // And the URL purge made it a miss again.
    let (_, out, _) = inspect_cli(&admin, "http://127.0.0.1/p", &[]).await;
    assert!(out.contains(": not cached"), "{out}");
}
