//! Origin names resolved with hickory-resolver against a DNS server on loopback: the answer's
//! TTL is honoured, and a name that does not resolve is a clear 502 naming it.

use crate::support::*;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A tiny authoritative stub: `origin.test` is 127.0.0.1 with a 1 s TTL; every other name is
/// NXDOMAIN. Counts the A queries it answers.
async fn dns_stub() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut r = Message::response(q.metadata.id, q.metadata.op_code);
            r.metadata.authoritative = true;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            for query in &q.queries {
                r.add_query(query.clone());
                let name = query.name().to_ascii().to_lowercase();
                if name == "origin.test." {
                    if query.query_type() == RecordType::A {
                        c.fetch_add(1, Ordering::SeqCst);
                        r.add_answer(Record::from_rdata(
                            query.name().clone(),
                            1,
                            RData::A(A(Ipv4Addr::LOCALHOST)),
                        ));
                    }
                } else {
                    r.metadata.response_code = ResponseCode::NXDomain;
                }
            }
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    });
    (addr, count)
}

#[tokio::test]
async fn origin_names_resolve_through_hickory_with_ttl_caching() {
    let (dns, queries) = dns_stub().await;
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("by name {n}"),
            &[("cache-control", "no-store"), ("connection", "close")],
        )
    })
    .await;
    let port = origin.addr.port();
    let e = edge(&origin, |c| {
        c.resolvers = vec![dns];
        c.sites[0].origins = vec![format!("http://origin.test:{port}")];
    })
    .await;
    for _ in 0..3 {
        let r = get(&e.url("/x"), &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("by name"));
    }
    assert_eq!(
        queries.load(Ordering::SeqCst),
        1,
        "three connections, one lookup: the answer is cached"
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(get(&e.url("/x"), &[]).await.status, 200);
    assert_eq!(
        queries.load(Ordering::SeqCst),
        2,
        "looked up again after the 1 s TTL"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_clear_502() {
    let (dns, _) = dns_stub().await;
    let origin = Origin::start(|_, _| Reply::ok("never", &[])).await;
    let e = edge(&origin, |c| {
        c.resolvers = vec![dns];
        c.sites[0].origins = vec!["http://missing.test:80".into()];
    })
    .await;
    let r = get(&e.url("/x"), &[]).await;
    assert_eq!(r.status, 502);
    // The kind of failure, not the origin's name (that goes to the log).
    assert!(
        r.text().contains("cannot resolve the upstream's name"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("missing.test"), "{}", r.text());
    assert_eq!(origin.requests(), 0);
}
