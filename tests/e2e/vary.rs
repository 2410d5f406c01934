//! Vary: variants per request header values, normalisation, the variant cap, Vary: *.

use crate::support::*;

fn by_encoding() -> impl Fn(&Seen, usize) -> Reply {
    |seen, n| {
        let ae = seen
            .headers
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let mut r = Reply::ok(
            &format!("enc=[{ae}] #{n}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Encoding")],
        );
        if ae.contains("gzip") {
            r.headers.push(("content-encoding".into(), "gzip".into()));
        }
        r
    }
}

#[tokio::test]
async fn variants_are_kept_apart_and_normalised() {
    let origin = Origin::start(by_encoding()).await;
    let edge = edge(&origin, |_| {}).await;
    let c = reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .build()
        .unwrap();
    let gz = send(
        &c,
        "GET",
        &edge.url("/v"),
        &[("accept-encoding", "gzip, deflate")],
    )
    .await;
    let plain = send(
        &c,
        "GET",
        &edge.url("/v"),
        &[("accept-encoding", "identity")],
    )
    .await;
    assert_eq!(origin.requests(), 2);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(
        origin.seen.lock().unwrap()[0].headers["accept-encoding"],
        "gzip",
        "normalised before forwarding"
    );
    // Equivalent spellings share the variant.
    let gz2 = send(
        &c,
        "GET",
        &edge.url("/v"),
        &[("accept-encoding", "deflate,gzip")],
    )
    .await;
    assert!(gz2.is_hit(), "{}", gz2.cache_status());
    assert_eq!(gz2.text(), gz.text());
    let plain2 = send(&c, "GET", &edge.url("/v"), &[]).await;
    assert!(plain2.is_hit());
    assert_eq!(plain2.text(), plain.text());
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn variant_count_is_capped() {
    let origin = Origin::start(|seen, n| {
        let lang = seen
            .headers
            .get("accept-language")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Reply::ok(
            &format!("{lang} {n}"),
            &[("cache-control", "max-age=60"), ("vary", "Accept-Language")],
        )
    })
    .await;
    let edge = edge(&origin, |c| c.max_variants = 3).await;
    for l in ["en", "de", "fr", "it"] {
        get(&edge.url("/l"), &[("accept-language", l)]).await;
    }
    assert_eq!(origin.requests(), 4);
    assert!(get(&edge.url("/l"), &[("accept-language", "it")])
        .await
        .is_hit());
    assert!(get(&edge.url("/l"), &[("accept-language", "de")])
        .await
        .is_hit());
    let en = get(&edge.url("/l"), &[("accept-language", "en")]).await;
    assert!(!en.is_hit(), "the oldest variant was dropped at the cap");
    assert_eq!(origin.requests(), 5);
    let stats = edge.proxy.gauges();
    assert_eq!(stats.objects, 1, "all variants live under one URL entry");
}

#[tokio::test]
async fn vary_star_is_never_stored() {
    let origin = Origin::start(|_, n| {
        Reply::ok(
            &format!("{n}"),
            &[("cache-control", "max-age=60"), ("vary", "*")],
        )
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    get(&edge.url("/s"), &[]).await;
    get(&edge.url("/s"), &[]).await;
    assert_eq!(origin.requests(), 2);
}

#[tokio::test]
async fn concurrent_requests_for_other_variants_are_not_given_the_wrong_one() {
    let origin = Origin::start(|seen, n| {
        let t = seen
            .headers
            .get("x-theme")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        Reply::ok(
            &format!("theme={t} #{n}"),
            &[("cache-control", "max-age=60"), ("vary", "X-Theme")],
        )
        .delay(std::time::Duration::from_millis(200))
    })
    .await;
    let edge = edge(&origin, |_| {}).await;
    let c = client();
    let url = edge.url("/t");
    let (a, b) = tokio::join!(send(&c, "GET", &url, &[("x-theme", "dark")]), async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        send(&c, "GET", &url, &[("x-theme", "light")]).await
    });
    assert!(a.text().starts_with("theme=dark"), "{}", a.text());
    assert!(b.text().starts_with("theme=light"), "{}", b.text());
}
