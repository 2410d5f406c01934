//! ACME against a real CA: Pebble on loopback resolves the names through Outpost's own DNS
//! and validates HTTP-01 on the edge's plain listener; the edge serves the issued certificate
//! on its TLS listener without a restart, keeps it (mode 0600) in its state directory, and
//! serves it again after a restart while the CA is gone.

use crate::support::pebble::Pebble;
use crate::support::*;
use edge_node::config::{AcmeConfig, EdgeConfig};
use std::net::SocketAddr;
use std::time::Duration;

/// Outpost's DNS with `names` of the zone `acme.test` pointing at 127.0.0.1.
async fn dns(names: &[&str]) -> geo_dns::DnsServer {
    let records: String = names
        .iter()
        .map(|n| format!("  {{ name = \"{n}\", type = \"A\", value = \"127.0.0.1\" }},\n"))
        .collect();
    let src = format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\n\n[[dns.zones]]\nname = \"acme.test\"\n\
         ns = [\"ns1\"]\nrecords = [\n{records}]\n"
    );
    #[derive(serde::Deserialize)]
    struct W {
        dns: geo_dns::DnsConfig,
    }
    let cfg = toml::from_str::<W>(&src).unwrap().dns;
    let registry = agent::metrics::Registry::default();
    geo_dns::DnsServer::start(&cfg, &registry.meter())
        .await
        .unwrap()
}

fn acme_config(pebble: &Pebble) -> AcmeConfig {
    let src = format!(
        "directory = \"{}\"\ncontact = [\"mailto:ops@acme.test\"]\ndirectory_ca = \"{}\"\n\
         retry_after = \"1s\"\n",
        pebble.dir_url,
        pebble.https_ca.ca_pem.display()
    );
    toml::from_str(&src).unwrap()
}

/// An edge with a plain and a TLS listener and one `acme = true` site for `hosts`.
fn edge_cfg(origin: &Origin, hosts: &[&str], state: &std::path::Path) -> EdgeConfig {
    let mut cfg = edge_config(&origin.url());
    cfg.sites[0].hosts = hosts.iter().map(|h| h.to_string()).collect();
    cfg.sites[0].acme = true;
    cfg.tls_listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.state_dir = Some(state.to_path_buf());
    cfg
}

/// GET https://HOST/PATH at `addr`, trusting only `root`: Ok(body) once a certificate for
/// HOST that chains to `root` is served.
async fn https_get(
    root: &[u8],
    host: &str,
    addr: SocketAddr,
    path: &str,
) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root).map_err(|e| e.to_string())?)
        .resolve(host, addr)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let r = client
        .get(format!("https://{host}:{}{path}", addr.port()))
        .send()
        .await
        .map_err(|e| format!("{e:?}"))?;
    r.text().await.map_err(|e| e.to_string())
}

/// A free loopback port (bound, then released for the process or CA that needs it).
/// An edge serving in this process until dropped (or `stop`ped).
struct Running {
    tls: SocketAddr,
    stop: tokio::sync::watch::Sender<bool>,
    served: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Binds the edge of `cfg` with `acme` (instruments on `registry`) and serves it.
    async fn start(
        cfg: &EdgeConfig,
        acme: &AcmeConfig,
        registry: &agent::metrics::Registry,
    ) -> Running {
        let edge = edge_node::Edge::builder(cfg)
            .acme(Some(acme))
            .metrics(registry)
            .bind()
            .await
            .unwrap();
        let tls = edge.tls_local_addrs()[0];
        let (stop, rx) = tokio::sync::watch::channel(false);
        let served = tokio::spawn(edge.serve(rx));
        Running { tls, stop, served }
    }

    /// Stops it and waits for it to drain.
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.served).await;
    }
}

/// Waits (60 s at most) until `host` is served at `tls` with a certificate chaining to
/// `root`; returns the body of `/`.
async fn until_served(root: &[u8], host: &str, tls: SocketAddr, pebble: &Pebble) -> String {
    let mut last = String::new();
    let served = async {
        loop {
            match https_get(root, host, tls, "/").await {
                Ok(body) => return body,
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    match tokio::time::timeout(Duration::from_secs(60), served).await {
        Ok(body) => body,
        Err(_) => panic!(
            "no certificate for {host}: {last}\npebble: {}",
            pebble.log()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_certificate_that_is_served_at_once_and_kept() {
    let origin =
        Origin::start(|_, _| Reply::ok("over tls", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["www", "shop"]).await;
    let state = temp_dir("acme-state");
    let hosts = ["www.acme.test", "shop.acme.test"];
    // Bound first, so Pebble knows where to validate.
    let mut cfg = edge_cfg(&origin, &hosts, &state);
    let http_port = free_port();
    cfg.listen = vec![format!("127.0.0.1:{http_port}").parse().unwrap()];
    let pebble = Pebble::start(http_port, dns.local_addrs()[0]).await;
    let edge = Running::start(&cfg, &acme_config(&pebble), &Default::default()).await;
    let tls = edge.tls;
    let root = pebble.root_pem().await;

    let body = until_served(&root, "www.acme.test", tls, &pebble).await;
    assert_eq!(body, "over tls");
    // One certificate for every host of the site.
    assert_eq!(
        https_get(&root, "shop.acme.test", tls, "/y").await.unwrap(),
        "over tls"
    );
    // A name the site does not have gets no certificate.
    assert!(https_get(&root, "other.acme.test", tls, "/").await.is_err());

    // Kept on disk, private.
    use std::os::unix::fs::PermissionsExt;
    for f in [
        "acme/account.json",
        "acme/certs/www.acme.test.key",
        "acme/certs/www.acme.test.pem",
    ] {
        let mode = std::fs::metadata(state.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }

    // The CA goes away and the node restarts: the saved certificate serves at once.
    edge.stop().await;
    let mut pebble = pebble;
    pebble.stop();
    let mut cfg = edge_cfg(&origin, &hosts, &state);
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let edge = Running::start(&cfg, &acme_config(&pebble), &Default::default()).await;
    let tls = edge.tls;
    assert_eq!(
        https_get(&root, "www.acme.test", tls, "/z").await.unwrap(),
        "over tls"
    );
    edge.stop().await;
    dns.stop().await;
}

/// Renewal under load: with `renew_before` longer than the lifetime, the edge renews as often
/// as `retry_after` allows; clients opening new connections all along see the new
/// certificates come in, and not one request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificates_are_swapped_in_under_load_with_no_failed_request() {
    let origin = Origin::start(|_, _| Reply::ok("ok", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["live"]).await;
    let state = temp_dir("acme-renew");
    let mut cfg = edge_cfg(&origin, &["live.acme.test"], &state);
    let http_port = free_port();
    cfg.listen = vec![format!("127.0.0.1:{http_port}").parse().unwrap()];
    let pebble = Pebble::start(http_port, dns.local_addrs()[0]).await;
    let mut acme = acme_config(&pebble);
    acme.renew_before = Some(agent::units::Dur(Duration::from_secs(100_000 * 86400)));
    let edge = Running::start(&cfg, &acme, &Default::default()).await;
    let tls = edge.tls;
    let root = pebble.root_pem().await;
    until_served(&root, "live.acme.test", tls, &pebble).await;

    // Four clients, each request on a new connection (a new handshake), for six seconds.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let root = root.clone();
        workers.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut certs) =
                (0u32, Vec::new(), std::collections::HashSet::new());
            while std::time::Instant::now() < until {
                let client = reqwest::Client::builder()
                    .no_proxy()
                    .tls_built_in_root_certs(false)
                    .add_root_certificate(reqwest::Certificate::from_pem(&root).unwrap())
                    .resolve("live.acme.test", tls)
                    .tls_info(true)
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                match client
                    .get(format!("https://live.acme.test:{}/r", tls.port()))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 200 => {
                        if let Some(info) = r.extensions().get::<reqwest::tls::TlsInfo>() {
                            certs.insert(info.peer_certificate().map(<[u8]>::to_vec));
                        }
                        ok += 1;
                    }
                    Ok(r) => failed.push(format!("status {}", r.status())),
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (ok, failed, certs)
        }));
    }
    let (mut ok, mut failed, mut certs) = (0, Vec::new(), std::collections::HashSet::new());
    for w in workers {
        let (o, f, c) = w.await.unwrap();
        ok += o;
        failed.extend(f);
        certs.extend(c);
    }
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 20, "only {ok} requests");
    assert!(
        certs.len() >= 2,
        "renewed certificates were served without a restart: saw {}",
        certs.len()
    );
    edge.stop().await;
    dns.stop().await;
}

/// The CA goes down while a renewal is due: the current certificate keeps serving, failed
/// orders are counted and retried with a doubling wait (1 s, 2 s, 4 s: three in five seconds,
/// not five), and the expiry gauge still reports the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_ca_down_the_current_certificate_serves_and_retries_back_off() {
    let origin = Origin::start(|_, _| Reply::ok("ok", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["down"]).await;
    let state = temp_dir("acme-down");
    let mut cfg = edge_cfg(&origin, &["down.acme.test"], &state);
    let http_port = free_port();
    cfg.listen = vec![format!("127.0.0.1:{http_port}").parse().unwrap()];
    let mut pebble = Pebble::start(http_port, dns.local_addrs()[0]).await;
    let mut acme = acme_config(&pebble);
    // Due again right after it is issued.
    acme.renew_before = Some(agent::units::Dur(Duration::from_secs(100_000 * 86400)));
    let registry = agent::metrics::Registry::default();
    let edge = Running::start(&cfg, &acme, &registry).await;
    let tls = edge.tls;
    let root = pebble.root_pem().await;
    until_served(&root, "down.acme.test", tls, &pebble).await;
    pebble.stop();
    let counted = |outcome: &str| -> u64 {
        let text = registry.render();
        text.lines()
            .find(|l| {
                l.starts_with("outpost_acme_orders_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let failed_before = counted("failed");
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            https_get(&root, "down.acme.test", tls, "/").await.unwrap(),
            "ok",
            "the current certificate keeps serving"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let failed = counted("failed") - failed_before;
    assert!(
        (1..=3).contains(&failed),
        "failed orders in 5 s with retry_after 1 s and doubling: {failed}"
    );
    let text = registry.render();
    assert!(
        text.lines().any(
            |l| l.starts_with("outpost_tls_certificate_expiry") && l.contains("down.acme.test")
        ),
        "{text}"
    );
    edge.stop().await;
    dns.stop().await;
}

/// TLS-ALPN-01 (RFC 8737) with no plain listener at all: the CA's `acme-tls/1` handshake gets
/// the challenge certificate, the order succeeds, and ordinary clients get the issued one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_alpn01_issues_on_the_tls_listener_alone() {
    let origin = Origin::start(|_, _| Reply::ok("alpn", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["alpn"]).await;
    let state = temp_dir("acme-alpn");
    let mut cfg = edge_cfg(&origin, &["alpn.acme.test"], &state);
    cfg.listen = Vec::new();
    let tls_port = free_port();
    cfg.tls_listen = vec![format!("127.0.0.1:{tls_port}").parse().unwrap()];
    let closed_http = free_port();
    let pebble = Pebble::start_with(closed_http, tls_port, dns.local_addrs()[0]).await;
    let mut acme = acme_config(&pebble);
    acme.challenge = edge_node::config::AcmeChallenge::TlsAlpn01;
    let edge = Running::start(&cfg, &acme, &Default::default()).await;
    let tls = edge.tls;
    let root = pebble.root_pem().await;
    let body = until_served(&root, "alpn.acme.test", tls, &pebble).await;
    assert_eq!(body, "alpn");
    edge.stop().await;
    dns.stop().await;
}

/// The fleet: the purge hub orders, and the CA's validator reaches a *different* edge (the
/// follower), which answers with the token it got from the hub; the follower then serves the
/// hub's certificate too, without ordering one of its own. Both as `outpost run` processes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_is_answered_by_another_edge_and_the_fleet_shares_the_certificate() {
    fleet_shares("http-01").await;
}

/// The same with TLS-ALPN-01: the follower shows the hub's challenge certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_alpn_challenge_is_answered_by_another_edge() {
    fleet_shares("tls-alpn-01").await;
}

async fn fleet_shares(challenge: &str) {
    use crate::support::process::Process;
    let origin = Origin::start(|_, _| Reply::ok("fleet", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["fleet"]).await;
    let dir = temp_dir("acme-fleet");
    let free = || {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let (follower_http, follower_https) = (free(), free());
    // Pebble validates on the follower's ports only.
    let pebble = Pebble::start_with(follower_http, follower_https, dns.local_addrs()[0]).await;
    let acme = format!(
        "[acme]\ndirectory = \"{}\"\ndirectory_ca = \"{}\"\nretry_after = \"1s\"\n\
         challenge = \"{challenge}\"\n",
        pebble.dir_url,
        pebble.https_ca.ca_pem.display()
    );
    let site = format!(
        "[[edge.sites]]\nhosts = [\"fleet.acme.test\"]\norigins = [\"{}\"]\nacme = true\n",
        origin.url()
    );
    let hub = Process::start(
        &dir,
        "hub",
        &format!(
            "{acme}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[edge]\n\
             listen = [\"127.0.0.1:0\"]\ntls_listen = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\n\n{site}",
            dir.join("hub-state").display()
        ),
        3,
    );
    let hub_admin = hub.url("admin");
    let follower = Process::start(
        &dir,
        "follower",
        &format!(
            "{acme}\n[edge]\nlisten = [\"127.0.0.1:{follower_http}\"]\n\
             tls_listen = [\"127.0.0.1:{follower_https}\"]\n\
             state_dir = \"{}\"\npurge_hub = \"{hub_admin}\"\npurge_hub_token = \"{TOKEN}\"\n\n{site}",
            dir.join("follower-state").display()
        ),
        2,
    );
    let root = pebble.root_pem().await;
    let tls_of = |p: &Process| -> SocketAddr {
        p.banner
            .iter()
            .find_map(|l| l.strip_prefix("outpost: edge listening on https://"))
            .unwrap_or_else(|| panic!("{:?}", p.banner))
            .parse()
            .unwrap()
    };
    let (hub_tls, follower_tls) = (tls_of(&hub), tls_of(&follower));
    let mut last = String::new();
    let both = async {
        loop {
            let a = https_get(&root, "fleet.acme.test", hub_tls, "/").await;
            let b = https_get(&root, "fleet.acme.test", follower_tls, "/").await;
            match (a, b) {
                (Ok(a), Ok(b)) => return (a, b),
                (a, b) => last = format!("hub: {a:?}; follower: {b:?}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (a, b) = tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{last}\nhub log: {}\nfollower log: {}\npebble: {}",
                std::fs::read_to_string(&hub.log).unwrap_or_default(),
                std::fs::read_to_string(&follower.log).unwrap_or_default(),
                pebble.log()
            )
        });
    assert_eq!((a.as_str(), b.as_str()), ("fleet", "fleet"));
    let follower_log = std::fs::read_to_string(&follower.log).unwrap_or_default();
    assert!(
        follower_log.contains("received from the hub"),
        "{follower_log}"
    );
    assert!(
        !follower_log.contains("ACME certificate issued"),
        "{follower_log}"
    );
    assert!(
        !follower_log.contains("ACME account created"),
        "the follower never orders: {follower_log}"
    );
    // The follower keeps it on disk too.
    assert!(dir
        .join("follower-state/acme/certs/fleet.acme.test.pem")
        .exists());
    dns.stop().await;
}

/// Certificate keys never cross in clear: a hub whose admin API is plain HTTP on a
/// non-loopback address refuses `/acme/state`; so does any request without the token.
#[tokio::test]
async fn keys_are_not_served_over_a_plain_public_admin_api() {
    use crate::support::process::Process;
    let dir = temp_dir("acme-refuse");
    let hub = Process::start(
        &dir,
        "hub",
        &format!(
            "[acme]\ndirectory = \"https://127.0.0.1:1/dir\"\n\n[admin]\nlisten = \"0.0.0.0:0\"\n\
             token = \"{TOKEN}\"\n\n[edge]\nlisten = [\"127.0.0.1:0\"]\nstate_dir = \"{}\"\n\n\
             [[edge.sites]]\nhosts = [\"x.acme.test\"]\norigins = [\"http://127.0.0.1:1\"]\nacme = true\n",
            dir.join("state").display()
        ),
        2,
    );
    let admin = hub.url("admin").replace("0.0.0.0", "127.0.0.1");
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let r = c
        .get(format!("{admin}/acme/state"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("only shared over TLS"));
    let r = c.get(format!("{admin}/acme/state")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// DNS-01 through Outpost's own DNS: the edge publishes `_acme-challenge` TXT records through
/// the `[dns]` node's admin API, Pebble reads them from that DNS server, and the wildcard
/// certificate serves any name under it; the records are withdrawn afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_outposts_dns_issues_a_wildcard() {
    use crate::support::process::Process;
    let origin = Origin::start(|_, _| Reply::ok("wild", &[("cache-control", "max-age=60")])).await;
    let dir = temp_dir("acme-dns01");
    let dns_node = Process::start(
        &dir,
        "dns",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n[dns]\nlisten = [\"127.0.0.1:0\"]\n\n\
             [[dns.zones]]\nname = \"acme.test\"\nns = [\"ns1\"]\nrecords = [\n  {{ name = \"ns1\", type = \"A\", value = \"127.0.0.1\" }},\n]\n"
        ),
        2,
    );
    let dns_addr: SocketAddr = dns_node
        .url("dns")
        .strip_prefix("udp+tcp ")
        .unwrap_or_else(|| panic!("{:?}", dns_node.banner))
        .parse()
        .unwrap();
    let pebble = Pebble::start(1, dns_addr).await;
    let mut acme = acme_config(&pebble);
    acme.challenge = edge_node::config::AcmeChallenge::Dns01;
    acme.dns_api = Some(dns_node.url("admin"));
    acme.dns_api_token = Some(TOKEN.into());
    let state = temp_dir("acme-dns01-state");
    let mut cfg = edge_cfg(&origin, &["wild.acme.test", "*.wild.acme.test"], &state);
    cfg.listen = Vec::new();
    let edge = Running::start(&cfg, &acme, &Default::default()).await;
    let tls = edge.tls;
    let root = pebble.root_pem().await;
    let body = until_served(&root, "a.wild.acme.test", tls, &pebble).await;
    assert_eq!(body, "wild");
    assert_eq!(
        https_get(&root, "wild.acme.test", tls, "/").await.unwrap(),
        "wild"
    );
    assert_eq!(
        https_get(&root, "b.wild.acme.test", tls, "/")
            .await
            .unwrap(),
        "wild"
    );
    // Two levels down is not covered by the wildcard.
    assert!(https_get(&root, "x.b.wild.acme.test", tls, "/")
        .await
        .is_err());
    // The challenge records are gone.
    let out = tokio::process::Command::new("dig")
        .args([
            "+short",
            "-p",
            &dns_addr.port().to_string(),
            "@127.0.0.1",
            "TXT",
            "_acme-challenge.wild.acme.test",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "{out:?}"
    );
    // Bad input to the DNS node's admin API: clear 400s and 401, nothing published.
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = format!("{}/dns/acme-challenge", dns_node.url("admin"));
    for (body, words) in [
        ("not json", "send JSON"),
        (
            r#"{"name":"www.acme.test","value":"x"}"#,
            "only _acme-challenge",
        ),
        (
            r#"{"name":"_acme-challenge.acme.test","value":"has space"}"#,
            "visible ASCII",
        ),
    ] {
        let r = c
            .post(&api)
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.text().await.unwrap().contains(words), "{body}");
    }
    let r = c.post(&api).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 401);
    edge.stop().await;
}

/// External account binding: a CA that requires it issues with the configured key id and HMAC
/// key, and refuses an account without them (the order fails and is counted, nothing served).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_sent_when_configured() {
    const KID: &str = "kid-1";
    const KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let origin = Origin::start(|_, _| Reply::ok("eab", &[("cache-control", "max-age=60")])).await;
    let dns = dns(&["eab", "noeab"]).await;
    let http_port = free_port();
    let pebble = Pebble::start_with_eab(http_port, dns.local_addrs()[0], KID, KEY).await;
    let root = pebble.root_pem().await;

    // Without the binding: refused.
    let state = temp_dir("acme-noeab");
    let mut cfg = edge_cfg(&origin, &["noeab.acme.test"], &state);
    cfg.listen = vec![format!("127.0.0.1:{http_port}").parse().unwrap()];
    let registry = agent::metrics::Registry::default();
    let edge = Running::start(&cfg, &acme_config(&pebble), &registry).await;
    let failed = async {
        while !registry
            .render()
            .lines()
            .any(|l| l.starts_with("outpost_acme_orders_total") && l.contains("failed"))
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), failed)
        .await
        .expect("the order without a binding fails");
    assert!(https_get(&root, "noeab.acme.test", edge.tls, "/")
        .await
        .is_err());
    edge.stop().await;

    // With it: issued.
    let state = temp_dir("acme-eab");
    let mut cfg = edge_cfg(&origin, &["eab.acme.test"], &state);
    cfg.listen = vec![format!("127.0.0.1:{http_port}").parse().unwrap()];
    let mut acme = acme_config(&pebble);
    acme.eab_kid = Some(KID.into());
    acme.eab_hmac_key = Some(KEY.into());
    let edge = Running::start(&cfg, &acme, &Default::default()).await;
    assert_eq!(
        until_served(&root, "eab.acme.test", edge.tls, &pebble).await,
        "eab"
    );
    edge.stop().await;
    dns.stop().await;
}
