//! The demo's sample origin: static files with a long max-age, an API route with a short
//! max-age and a `Surrogate-Key`, a slow route, a route that varies on Accept-Encoding, and
//! sized bodies for benchmarks. Every response says how many requests the origin has served,
//! so hits (the count stays put) are easy to see.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;

/// Largest body `/bytes/N` serves.
const MAX_BYTES: usize = 64 << 20;

/// Serves the sample origin on `listener` forever.
pub async fn serve(listener: TcpListener) {
    let count = Arc::new(AtomicU64::new(0));
    let started = SystemTime::now();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let count = count.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let n = count.fetch_add(1, Ordering::Relaxed) + 1;
                async move { Ok::<_, Infallible>(route(req, n, started).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn resp(
    status: StatusCode,
    ctype: &'static str,
    cc: &'static str,
    body: impl Into<Bytes>,
    n: u64,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cc));
    h.insert("x-origin-requests", HeaderValue::from(n));
    if let Ok(d) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        h.insert(header::DATE, d);
    }
    r
}

async fn route(req: Request<Incoming>, n: u64, started: SystemTime) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return resp(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "no-store",
            "GET or HEAD only\n",
            n,
        );
    }
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/" => resp(
            StatusCode::OK,
            "text/html; charset=utf-8",
            "public, max-age=60",
            INDEX,
            n,
        ),
        "/healthz" => resp(StatusCode::OK, "text/plain", "no-store", "ok\n", n),
        "/api/time" => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut r = resp(
                StatusCode::OK,
                "application/json",
                "public, max-age=5, stale-while-revalidate=30",
                format!("{{\"unix_time\":{now},\"origin_request\":{n}}}\n"),
                n,
            );
            r.headers_mut()
                .insert("surrogate-key", HeaderValue::from_static("api time"));
            r
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            resp(
                StatusCode::OK,
                "text/plain",
                "public, max-age=30",
                format!("slow response, origin request #{n}\n"),
                n,
            )
        }
        "/vary" => {
            let text = "This body varies on Accept-Encoding. ".repeat(40);
            let gzip = req
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|c| c.trim().starts_with("gzip")));
            let mut r = if gzip {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                let _ = enc.write_all(text.as_bytes());
                let body = enc.finish().unwrap_or_default();
                let mut r = resp(StatusCode::OK, "text/plain", "public, max-age=60", body, n);
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            } else {
                resp(StatusCode::OK, "text/plain", "public, max-age=60", text, n)
            };
            r.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            r
        }
        p if p.starts_with("/static/") => {
            let name = &p["/static/".len()..];
            let body = format!("/* static asset {name} */\n{}", "x".repeat(1000));
            let mut r = resp(
                StatusCode::OK,
                static_type(name),
                "public, max-age=31536000, immutable",
                body,
                n,
            );
            let lm = httpdate::fmt_http_date(started);
            if let Ok(v) = HeaderValue::from_str(&lm) {
                r.headers_mut().insert(header::LAST_MODIFIED, v);
            }
            if let Ok(v) = HeaderValue::from_str(&format!("\"{:x}\"", xxhash(name.as_bytes()))) {
                r.headers_mut().insert(header::ETAG, v);
            }
            r
        }
        p if p.starts_with("/bytes/") => match p["/bytes/".len()..].parse::<usize>() {
            Ok(len) if len <= MAX_BYTES => {
                let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
                resp(
                    StatusCode::OK,
                    "application/octet-stream",
                    "public, max-age=3600",
                    body,
                    n,
                )
            }
            _ => resp(
                StatusCode::BAD_REQUEST,
                "text/plain",
                "no-store",
                "size must be an integer up to 64MiB\n",
                n,
            ),
        },
        _ => resp(
            StatusCode::NOT_FOUND,
            "text/plain",
            "public, max-age=10",
            "not found\n",
            n,
        ),
    }
}

fn static_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn xxhash(b: &[u8]) -> u64 {
    // FNV-1a: a stable, dependency-free fingerprint for demo ETags.
    b.iter().fold(0xcbf29ce484222325u64, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x100000001b3)
    })
}

const INDEX: &str = "<!doctype html><title>Outpost demo origin</title>
<h1>Outpost demo origin</h1>
<ul>
<li><a href=/static/app.js>/static/app.js</a>: long max-age, immutable</li>
<li><a href=/api/time>/api/time</a>: max-age=5, stale-while-revalidate=30, Surrogate-Key</li>
<li><a href=/slow>/slow</a>: takes 2 s; concurrent misses collapse into one fetch</li>
<li><a href=/vary>/vary</a>: Vary: Accept-Encoding</li>
<li>/bytes/N: N bytes, max-age=3600</li>
</ul>
";
