//! A small Chrome DevTools Protocol client for the console's browser test: launches headless
//! Chromium (Debian's `chromium`) on an ephemeral debugging port with a temporary profile,
//! opens one page and drives it (navigate, evaluate, screenshot). Every wait is bounded; the
//! browser is killed when dropped.

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The Chromium binary on the PATH, if any.
pub fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A headless browser with one page.
pub struct Browser {
    child: std::process::Child,
    ws: Ws,
    next: u64,
    session: String,
    _profile: super::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `bin` and attaches to a blank page of 1280x900.
    pub async fn launch(bin: &std::path::Path) -> Browser {
        let profile = super::temp_dir("chromium");
        let mut child = std::process::Command::new(bin)
            .args([
                "--headless=new",
                "--remote-debugging-port=0",
                "--remote-debugging-address=127.0.0.1",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--metrics-recording-only",
                "--password-store=basic",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start chromium");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address within 30 s");
        assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        .expect("DevTools connect timed out")
        .expect("DevTools connect");
        let mut b = Browser {
            child,
            ws,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = b
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target = target["targetId"].as_str().unwrap().to_string();
        let attached = b
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await;
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Page.enable", json!({})).await;
        b.call("Runtime.enable", json!({})).await;
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        b
    }

    /// Sends a command (to the page once attached) and waits for its answer.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = self.session.clone().into();
        }
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("{method}: no answer within 20 s"))
                .expect("DevTools closed")
                .expect("DevTools read");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of JavaScript `expr` (promises awaited).
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits up to `limit` for `expr` to be truthy.
    pub async fn wait_for(&mut self, expr: &str, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        loop {
            let v = self.eval(&format!("!!({expr})")).await;
            if v == Value::Bool(true) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens `url` and waits until its document loaded; the navigation's own timing (start to
    /// the end of the load event, as the browser measured it).
    pub async fn goto(&mut self, url: &str) -> Duration {
        self.call("Page.navigate", json!({ "url": url })).await;
        self.loaded(url).await
    }

    /// Waits for a document whose URL starts with `url` to finish loading; its load time.
    pub async fn loaded(&mut self, url: &str) -> Duration {
        let cond = format!(
            "document.readyState === 'complete' && location.href.startsWith({}) && performance.getEntriesByType('navigation').length && performance.getEntriesByType('navigation')[0].loadEventEnd > 0",
            serde_json::to_string(url).unwrap()
        );
        assert!(
            self.wait_for(&cond, Duration::from_secs(15)).await,
            "{url} did not load; at {}",
            self.eval("location.href").await
        );
        let ms = self
            .eval("performance.getEntriesByType('navigation')[0].loadEventEnd")
            .await
            .as_f64()
            .unwrap_or(0.0);
        let server = self
            .eval("(() => { const n = performance.getEntriesByType('navigation')[0]; return n.responseEnd - n.requestStart; })()")
            .await
            .as_f64()
            .unwrap_or(0.0);
        eprintln!("{url}: loaded in {ms:.1} ms, of which request to response end {server:.1} ms");
        Duration::from_micros((ms * 1000.0) as u64)
    }

    /// A PNG of the page as shown, written to `path`.
    pub async fn screenshot(&mut self, path: &std::path::Path) {
        let r = self
            .call(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": false }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}
