//! https:// origins: verified against the system's roots or a site's CA file, HTTP/2 by ALPN
//! on one reused connection, the Host/SNI override for bucket-style origins, verification
//! skipped only when a site says so, and a certificate that does not verify is a 502 with a
//! log line naming the origin and the reason, never a silent insecure fetch.

use crate::support::pki::TestCa;
use crate::support::tls_origin::TlsOrigin;
use crate::support::*;
use edge_node::config::{EdgeConfig, SiteConfig};

/// An edge in front of `origin`, its site changed by `tweak`.
async fn tls_edge(origin: &TlsOrigin, tweak: impl FnOnce(&mut SiteConfig)) -> TestEdge {
    let mut cfg: EdgeConfig = edge_config(&origin.url());
    tweak(&mut cfg.sites[0]);
    start_edge(cfg).await
}

#[tokio::test]
async fn an_https_origin_is_verified_with_the_sites_ca_and_reached_over_one_h2_connection() {
    let ca = TestCa::new("origin");
    let origin = TlsOrigin::start(&ca.leaf("origin", &["127.0.0.1"])).await;
    let edge = tls_edge(&origin, |s| s.origin_ca = Some(ca.ca_pem.clone())).await;
    let a = get(&edge.url("/a"), &[]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body, "tls HTTP/2.0 host=127.0.0.1");
    let again = get(&edge.url("/a"), &[]).await;
    assert!(
        again.cache_status().contains("hit"),
        "{}",
        again.cache_status()
    );
    for path in ["/b", "/pass/1", "/pass/2"] {
        assert_eq!(get(&edge.url(path), &[]).await.status, 200);
    }
    let seen = origin.seen();
    assert_eq!(seen.len(), 4, "{seen:?}");
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_2));
    assert_eq!(origin.connections(), 1, "one connection, reused");
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_is_a_502_and_nothing_is_fetched() {
    let ca = TestCa::new("real");
    let other = TestCa::new("other");
    let origin = TlsOrigin::start(&ca.leaf("origin", &["127.0.0.1"])).await;
    // The system's roots do not know the test CA; neither does another CA.
    let system = tls_edge(&origin, |_| {}).await;
    let wrong = tls_edge(&origin, |s| s.origin_ca = Some(other.ca_pem.clone())).await;
    // A certificate for another name, from the right CA.
    let named = TlsOrigin::start(&ca.leaf("named", &["elsewhere.test"])).await;
    let misnamed = tls_edge(&named, |s| s.origin_ca = Some(ca.ca_pem.clone())).await;
    for edge in [&system, &wrong, &misnamed] {
        let r = get(&edge.url("/x"), &[]).await;
        assert_eq!(r.status, 502);
        let body = String::from_utf8_lossy(&r.body).to_lowercase();
        assert!(body.contains("certificate"), "{body}");
        assert!(
            r.cache_status().contains("upstream-connect"),
            "{}",
            r.cache_status()
        );
    }
    assert!(origin.seen().is_empty() && named.seen().is_empty());
}

#[tokio::test]
async fn origin_host_is_the_host_and_the_sni_of_a_bucket_style_origin() {
    let ca = TestCa::new("bucket");
    let origin = TlsOrigin::start(&ca.leaf("bucket", &["media.bucket.test"])).await;
    let edge = tls_edge(&origin, |s| {
        s.origin_ca = Some(ca.ca_pem.clone());
        s.origin_host = Some("media.bucket.test".into());
    })
    .await;
    let r = get(&edge.url("/img.png"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let seen = origin.seen();
    assert_eq!(seen[0].host, "media.bucket.test");
    assert_eq!(seen[0].sni.as_deref(), Some("media.bucket.test"));
    // origin_sni names the certificate when Host must stay something else.
    let edge = tls_edge(&origin, |s| {
        s.origin_ca = Some(ca.ca_pem.clone());
        s.origin_sni = Some("media.bucket.test".into());
    })
    .await;
    let r = get(&edge.url("/other.png"), &[]).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let last = origin.seen().pop().unwrap();
    assert_eq!(
        (last.host.as_str(), last.sni.as_deref()),
        ("127.0.0.1", Some("media.bucket.test"))
    );
}

#[tokio::test]
async fn verification_is_skipped_only_when_the_site_says_so() {
    let ca = TestCa::new("unknown");
    let origin = TlsOrigin::start(&ca.leaf("origin", &["127.0.0.1"])).await;
    let edge = tls_edge(&origin, |s| s.origin_insecure_skip_verify = true).await;
    let r = get(&edge.url("/x"), &[]).await;
    assert_eq!(r.status, 200);
}

/// As a process: a site that skips verification is warned about at start; a certificate that
/// does not verify leaves a log line with the origin and the reason.
#[tokio::test]
async fn the_log_says_when_verification_is_off_and_why_an_origin_was_refused() {
    use crate::support::process::Process;
    let ca = TestCa::new("log");
    let origin = TlsOrigin::start(&ca.leaf("origin", &["127.0.0.1"])).await;
    let dir = temp_dir("https-origin-log");
    let node = Process::start(
        &dir,
        "node",
        &format!(
            "[edge]\nlisten = [\"127.0.0.1:0\"]\n\n[[edge.sites]]\nhosts = [\"a.test\"]\n\
             origins = [\"{0}\"]\n\n[[edge.sites]]\nhosts = [\"b.test\"]\norigins = [\"{0}\"]\n\
             origin_insecure_skip_verify = true\n",
            origin.url()
        ),
        1,
    );
    let url = node.url("edge");
    let c = reqwest::Client::builder().no_proxy().build().unwrap();
    let refused = c
        .get(format!("{url}/x"))
        .header("host", "a.test")
        .send()
        .await
        .unwrap();
    let skipped = c
        .get(format!("{url}/x"))
        .header("host", "b.test")
        .send()
        .await
        .unwrap();
    let (refused, skipped) = (refused.status(), skipped.status());
    let text = std::fs::read_to_string(&node.log).unwrap();
    assert_eq!((refused.as_u16(), skipped.as_u16()), (502, 200), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "a log file gets no colour codes: {text}"
    );
    assert!(
        text.contains("origin certificates are NOT verified") && text.contains("b.test"),
        "{text}"
    );
    let failed = text
        .lines()
        .find(|l| l.contains("requests to origin"))
        .unwrap_or_else(|| panic!("no failure line: {text}"));
    assert!(
        failed.contains(&origin.url()) && failed.to_lowercase().contains("certificate"),
        "{failed}"
    );
}
