//! Several origins per site: load balancing, failover on connect errors and hangs, passive and
//! active health checks.

use crate::support::*;
use edge_node::config::Dur;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn uncacheable(name: &'static str) -> impl Fn(&Seen, usize) -> Reply {
    move |_, _| Reply::ok(name, &[("cache-control", "no-store")])
}

#[tokio::test]
async fn requests_are_balanced_across_origins() {
    let a = Origin::start(uncacheable("a")).await;
    let b = Origin::start(uncacheable("b")).await;
    let e = edge(&a, |c| c.sites[0].origins.push(b.url())).await;
    for _ in 0..10 {
        assert_eq!(get(&e.url("/x"), &[]).await.status, 200);
    }
    assert_eq!((a.requests(), b.requests()), (5, 5));
}

#[tokio::test]
async fn a_dead_origin_is_skipped_and_avoided() {
    let a = Origin::start(uncacheable("a")).await;
    let b = Origin::start(uncacheable("b")).await;
    let e = edge(&a, |c| c.sites[0].origins.push(b.url())).await;
    a.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..6 {
        let r = get(&e.url("/x"), &[]).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "b");
    }
    assert_eq!(b.requests(), 6);
}

#[tokio::test]
async fn a_hanging_origin_times_out_and_the_request_moves_on() {
    let a = Origin::start(|_, _| {
        Reply::ok("slow", &[("cache-control", "no-store")]).delay(Duration::from_secs(10))
    })
    .await;
    let b = Origin::start(uncacheable("b")).await;
    let e = edge(&a, |c| {
        c.sites[0].origins.push(b.url());
        c.first_byte_timeout = Dur(Duration::from_millis(300));
    })
    .await;
    let t = Instant::now();
    for _ in 0..2 {
        let r = get(&e.url("/x"), &[]).await;
        assert_eq!(r.text(), "b");
    }
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // With a request body there is no second try: the client learns of the timeout.
    let c = edge(&a, |c| {
        c.first_byte_timeout = Dur(Duration::from_millis(300))
    })
    .await;
    let r = client()
        .post(c.url("/upload"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
}

#[tokio::test]
async fn active_health_checks_take_an_origin_out_and_bring_it_back() {
    let a_up = Arc::new(AtomicBool::new(true));
    let flag = a_up.clone();
    let a = Origin::start(move |seen, _| {
        if seen.uri == "/healthz" {
            let up = flag.load(Ordering::SeqCst);
            return Reply::ok(if up { "ok" } else { "sick" }, &[]).status(if up {
                200
            } else {
                500
            });
        }
        Reply::ok("a", &[("cache-control", "no-store")])
    })
    .await;
    let b = Origin::start(|_, _| Reply::ok("b", &[("cache-control", "no-store")])).await;
    let e = edge(&a, |c| {
        c.sites[0].origins.push(b.url());
        c.sites[0].health_path = Some("/healthz".into());
        c.sites[0].health_interval = Dur(Duration::from_millis(50));
        c.sites[0].unhealthy_after = 2;
        c.sites[0].healthy_after = 2;
    })
    .await;
    let served_by = |n: usize| {
        let url = e.url("/x");
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(get(&url, &[]).await.text());
            }
            out
        }
    };
    assert!(served_by(4).await.contains(&"a".to_string()));
    a_up.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        served_by(6).await.iter().all(|s| s == "b"),
        "unhealthy origin taken out"
    );
    a_up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        served_by(6).await.contains(&"a".to_string()),
        "healthy again"
    );
}

#[tokio::test]
async fn all_origins_down_is_a_clear_502() {
    let a = Origin::start(uncacheable("a")).await;
    let b = Origin::start(uncacheable("b")).await;
    let e = edge(&a, |c| c.sites[0].origins.push(b.url())).await;
    a.stop();
    b.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = get(&e.url("/x"), &[]).await;
    assert_eq!(r.status, 502);
    // A short message and the request id; no internal address.
    let id = r.header("x-request-id").expect("a request id").to_string();
    assert_eq!(
        r.text().trim(),
        format!("outpost: cannot connect to the upstream (request id {id})"),
    );
    assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
}

#[tokio::test]
async fn a_body_that_takes_too_long_is_cut_and_not_stored() {
    use bytes::Bytes;
    let origin = Origin::start(|_, n| {
        let chunks = (0..20)
            .map(|_| {
                (
                    Bytes::from_static(b"0123456789"),
                    Duration::from_millis(100),
                )
            })
            .collect();
        let r = Reply::ok("", &[("cache-control", "max-age=60")]);
        if n == 1 {
            r.body(Body::Chunks(chunks))
        } else {
            r.body(Body::Full(Bytes::from_static(b"quick")))
        }
    })
    .await;
    // Each chunk arrives well within the idle limit; the whole body does not fit the total one.
    let e = edge(&origin, |c| {
        c.body_timeout = Some(Dur(Duration::from_millis(500)))
    })
    .await;
    let t = Instant::now();
    let res = client().get(e.url("/slowbody")).send().await.unwrap();
    assert!(res.bytes().await.is_err(), "the body is cut");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let again = get(&e.url("/slowbody"), &[]).await;
    assert_eq!(
        again.text(),
        "quick",
        "nothing was stored from the cut body"
    );
}
