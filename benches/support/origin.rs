//! The origin the criterion benches fill from: every path answers 1 KiB of `x`, cacheable
//! for an hour with an ETag and Last-Modified; paths under `/vary` add `Vary: Accept-Encoding`.
//! Included with `#[path]` by the benches that need it.

use bytes::Bytes;
use http::Request;

/// Starts the origin on an ephemeral loopback port; it serves until the process ends.
pub async fn origin() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let mut r =
                            http::Response::new(http_body_util::Full::new(Bytes::from(vec![
                                b'x';
                                1024
                            ])));
                        let h = r.headers_mut();
                        h.insert("cache-control", "public, max-age=3600".parse().unwrap());
                        h.insert("content-type", "application/octet-stream".parse().unwrap());
                        h.insert("etag", "\"5f3a-1k\"".parse().unwrap());
                        h.insert(
                            "last-modified",
                            "Mon, 23 Nov 2026 10:00:00 GMT".parse().unwrap(),
                        );
                        if req.uri().path().starts_with("/vary") {
                            h.insert("vary", "Accept-Encoding".parse().unwrap());
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    });
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                .await;
            });
        }
    });
    addr
}
