//! TLS between the tiers: an edge reaches an https:// shield it verifies with the fleet's CA,
//! and is admitted by its fleet certificate (mutual TLS) or by the secret over TLS; an edge
//! without a certificate the shield trusts is refused in the handshake, and nothing of the
//! secret or the request crosses in clear.

use crate::support::pki::{Leaf, TestCa};
use crate::support::process::{Process, BIN};
use crate::support::*;
use edge_node::config::CertConfig;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A shield on TLS only (127.0.0.1) with `leaf`, in front of `origin`; `client_ca` asks edges
/// for certificates; `secret` is required of them when set.
async fn tls_shield(
    origin: &Origin,
    leaf: &Leaf,
    client_ca: Option<&std::path::Path>,
    secret: Option<&str>,
) -> TestEdge {
    let mut cfg = shield_config(&origin.url());
    cfg.listen = Vec::new();
    cfg.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.certificates = vec![CertConfig {
        hosts: vec!["127.0.0.1".into()],
        cert: leaf.cert_pem.clone(),
        key: leaf.key_pem.clone(),
    }];
    cfg.client_ca = client_ca.map(|p| p.to_path_buf());
    cfg.secret = secret.map(str::to_string);
    start_shield(cfg).await
}

/// An edge whose only way to content is `shield` (its own origin is a closed port), trusting
/// `ca` for the shield and presenting `client` if given.
async fn edge_behind(
    shield: &TestEdge,
    ca: &TestCa,
    client: Option<&Leaf>,
    secret: Option<&str>,
) -> TestEdge {
    let mut cfg = edge_config("http://127.0.0.1:1");
    cfg.shields = vec![format!("https://{}", shield.addr)];
    cfg.shield_ca = Some(ca.ca_pem.clone());
    cfg.shield_client_cert = client.map(|l| l.cert_pem.clone());
    cfg.shield_client_key = client.map(|l| l.key_pem.clone());
    cfg.shield_secret = secret.map(str::to_string);
    start_edge(cfg).await
}

fn counting_origin() -> (
    Arc<AtomicUsize>,
    impl Fn(&Seen, usize) -> Reply + Send + Sync,
) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    (n, move |_: &Seen, _| {
        c.fetch_add(1, Ordering::SeqCst);
        Reply::ok("from the origin", &[("cache-control", "max-age=60")])
    })
}

#[tokio::test]
async fn an_edge_with_a_fleet_certificate_is_admitted_by_an_mtls_shield() {
    let fleet = TestCa::new("fleet");
    let (count, reply) = counting_origin();
    let origin = Origin::start(reply).await;
    let shield_leaf = fleet.leaf("shield-1", &["127.0.0.1"]);
    let shield = tls_shield(&origin, &shield_leaf, Some(&fleet.ca_pem), None).await;
    let edge_leaf = fleet.leaf("edge-1", &["edge-1.fleet.test"]);
    let edge = edge_behind(&shield, &fleet, Some(&edge_leaf), None).await;
    let r = get(&edge.url("/a"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body, "from the origin");
    assert!(
        r.cache_status().contains("outpost-shield"),
        "{}",
        r.cache_status()
    );
    let again = get(&edge.url("/b"), &[]).await;
    assert_eq!(again.status, 200);
    assert_eq!(count.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_edge_without_a_trusted_certificate_is_refused_by_an_mtls_shield() {
    let fleet = TestCa::new("fleet");
    let stranger = TestCa::new("stranger");
    let (count, reply) = counting_origin();
    let origin = Origin::start(reply).await;
    let shield_leaf = fleet.leaf("shield-1", &["127.0.0.1"]);
    let shield = tls_shield(&origin, &shield_leaf, Some(&fleet.ca_pem), None).await;
    // The secret is no way around the certificate.
    let none = edge_behind(&shield, &fleet, None, Some(SHIELD_SECRET)).await;
    let foreign_leaf = stranger.leaf("edge-x", &["edge-x.test"]);
    let foreign = edge_behind(&shield, &fleet, Some(&foreign_leaf), None).await;
    for edge in [&none, &foreign] {
        let r = get(&edge.url("/a"), &[]).await;
        assert_eq!(r.status, 502, "{:?}", r.body);
    }
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "nothing reached the origin"
    );
}

#[tokio::test]
async fn an_edge_verifies_the_shield_with_the_fleet_ca() {
    let fleet = TestCa::new("fleet");
    let other = TestCa::new("impostor");
    let (count, reply) = counting_origin();
    let origin = Origin::start(reply).await;
    // A shield whose certificate the fleet CA did not sign.
    let impostor_leaf = other.leaf("shield-x", &["127.0.0.1"]);
    let impostor = tls_shield(&origin, &impostor_leaf, None, Some(SHIELD_SECRET)).await;
    let edge = edge_behind(&impostor, &fleet, None, Some(SHIELD_SECRET)).await;
    let r = get(&edge.url("/a"), &[]).await;
    assert_eq!(
        r.status, 502,
        "the secret never goes to an unverified shield"
    );
    assert_eq!(count.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn the_secret_admits_an_edge_over_tls_and_a_wrong_one_is_refused() {
    let fleet = TestCa::new("fleet");
    let (count, reply) = counting_origin();
    let origin = Origin::start(reply).await;
    let shield_leaf = fleet.leaf("shield-1", &["127.0.0.1"]);
    let shield = tls_shield(&origin, &shield_leaf, None, Some(SHIELD_SECRET)).await;
    let good = edge_behind(&shield, &fleet, None, Some(SHIELD_SECRET)).await;
    let r = get(&good.url("/a"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let bad = edge_behind(&shield, &fleet, None, Some("not-the-secret")).await;
    let r = get(&bad.url("/b"), &[]).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// The purge hub's admin API on TLS with a fleet certificate: the follower edge verifies it
/// with the fleet CA and receives a purge made there; the admin API speaks no plain HTTP.
#[tokio::test]
async fn purges_reach_a_follower_from_a_hub_whose_admin_api_is_on_tls() {
    let fleet = TestCa::new("fleet");
    let hub_leaf = fleet.leaf("hub", &["127.0.0.1"]);
    let origin =
        Origin::start(|_, n| Reply::ok(&format!("v{n}"), &[("cache-control", "max-age=600")]))
            .await;
    let dir = temp_dir("fleet-hub");
    let site = format!(
        "[[edge.sites]]\nhosts = [\"127.0.0.1\"]\norigins = [\"{}\"]\n",
        origin.url()
    );
    let hub = Process::start(
        &dir,
        "hub",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\ncert = \"{}\"\nkey = \"{}\"\n\n\
             [edge]\nlisten = [\"127.0.0.1:0\"]\n\n{site}",
            hub_leaf.cert_pem.display(),
            hub_leaf.key_pem.display()
        ),
        2,
    );
    let hub_admin = hub.url("admin");
    assert!(hub_admin.starts_with("https://127.0.0.1:"), "{hub_admin}");
    let follower = Process::start(
        &dir,
        "follower",
        &format!(
            "[edge]\nlisten = [\"127.0.0.1:0\"]\npurge_hub = \"{hub_admin}\"\n\
             purge_hub_token = \"{TOKEN}\"\npurge_hub_ca = \"{}\"\n\n{site}",
            fleet.ca_pem.display()
        ),
        1,
    );
    let edge = follower.url("edge");
    assert_eq!(get(&format!("{edge}/x"), &[]).await.body, "v1");
    assert!(get(&format!("{edge}/x"), &[])
        .await
        .cache_status()
        .contains("hit"));

    // `outpost purge` verifies the hub with the fleet CA; with another CA it refuses.
    let purge = |ca: &std::path::Path| {
        std::process::Command::new(BIN)
            .args(["purge", "--admin", &hub_admin, "--token", TOKEN, "--ca"])
            .arg(ca)
            .args(["--url", "http://127.0.0.1/x"])
            .output()
            .unwrap()
    };
    let stranger = TestCa::new("stranger");
    let refused = purge(&stranger.ca_pem);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(err.contains("certificate"), "{err}");
    let done = purge(&fleet.ca_pem);
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );

    let purged = async {
        loop {
            let r = get(&format!("{edge}/x"), &[]).await;
            if !r.cache_status().contains("hit") {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), purged)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the purge never reached the follower: {}",
                std::fs::read_to_string(&follower.log).unwrap_or_default()
            )
        });
    assert_eq!(r.body, "v2");

    // Plain HTTP to the admin port gets no answer: the token never crosses in clear.
    let plain = hub_admin.replace("https://", "http://");
    let r = reqwest::Client::builder()
        .no_proxy()
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{plain}/purge/log"))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
}
