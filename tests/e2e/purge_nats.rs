//! Purge propagation over a real NATS JetStream server: versions are stream sequences, every
//! edge applies every purge in order, and a server restart in the middle loses nothing.

use crate::support::*;
use edge_node::purge::NatsBus;
use edge_node::purge::Role;
use std::time::Duration;

async fn nats_edge(
    origin: &Origin,
    nats: &NatsServer,
    id: &str,
    dir: Option<std::path::PathBuf>,
) -> Node {
    let bus = NatsBus::connect(&nats.url(), "OUTPOST_PURGE", id)
        .await
        .unwrap();
    Node::start_with_role(Some(&origin.url()), Role::Nats(bus), dir, |_| {}).await
}

async fn all_applied(nodes: &[Node], v: u64) {
    for n in nodes {
        assert!(
            n.purge.wait_applied(v, Duration::from_secs(10)).await,
            "a node did not apply {v} (has {})",
            n.purge.applied()
        );
    }
}

#[tokio::test]
async fn purges_reach_every_edge_through_jetstream_across_a_server_restart() {
    let mut nats = NatsServer::start().await;
    let origin = Origin::start(|seen, n| {
        Reply::ok(
            &format!("{} #{n}", seen.uri),
            &[("cache-control", "max-age=60"), ("cache-tag", "all-pages")],
        )
    })
    .await;
    let dir = temp_dir("nats-edge");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let d = (i == 2).then(|| dir.to_path_buf());
        nodes.push(nats_edge(&origin, &nats, &format!("edge-{i}"), d).await);
    }
    for n in &nodes {
        get(&n.url("/a"), &[]).await;
        assert!(get(&n.url("/a"), &[]).await.is_hit());
    }
    let (status, v) = purge(
        &nodes[0].admin_url(),
        TOKEN,
        r#"{"urls":["http://127.0.0.1/a"]}"#,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["version"], 1, "the stream sequence is the version");
    all_applied(&nodes, 1).await;
    for n in &nodes {
        assert!(!get(&n.url("/a"), &[]).await.is_hit());
    }

    // The server restarts; clients reconnect and consumers resume.
    nats.restart().await;
    let mut v2 = None;
    for _ in 0..100 {
        let (status, v) = purge(&nodes[1].admin_url(), TOKEN, r#"{"tags":["all-pages"]}"#).await;
        if status == 200 {
            v2 = v["version"].as_u64();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(v2, Some(2), "versions continue after the restart");
    all_applied(&nodes, 2).await;
    for n in &nodes {
        assert!(
            !get(&n.url("/a"), &[]).await.is_hit(),
            "tag purge applied after the restart"
        );
    }

    // A node that was down catches up from its durable consumer and persisted version.
    let down = nodes.pop().unwrap();
    down.shutdown().await;
    purge(&nodes[0].admin_url(), TOKEN, r#"{"all":true}"#).await;
    purge(
        &nodes[0].admin_url(),
        TOKEN,
        r#"{"prefixes":["http://127.0.0.1/"]}"#,
    )
    .await;
    all_applied(&nodes, 4).await;
    let back = nats_edge(&origin, &nats, "edge-2", Some(dir.to_path_buf())).await;
    assert_eq!(
        back.purge.applied(),
        2,
        "resumes from its persisted version"
    );
    all_applied(std::slice::from_ref(&back), 4).await;
    let log: serde_json::Value = client()
        .get(format!("{}/purge/log?since=2", back.admin_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let versions: Vec<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 4], "applied in order, none skipped");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn publishing_without_a_server_is_a_clear_error() {
    let mut nats = NatsServer::start().await;
    let origin = Origin::start(|_, _| Reply::ok("x", &[("cache-control", "max-age=60")])).await;
    let node = nats_edge(&origin, &nats, "lonely", None).await;
    nats.kill();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, v) = purge(&node.admin_url(), TOKEN, r#"{"all":true}"#).await;
    assert_eq!(status, 502, "{v}");
    assert!(v["error"].is_string());
}
