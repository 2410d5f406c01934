//! Talking to a node's admin API from the command line (`purge`, `purge log`, `inspect`): one
//! request, a JSON answer, and every failure as one line naming the address and the cause.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// How long one admin request may take.
const TIMEOUT: Duration = Duration::from_secs(15);

/// Where a node's admin API is, and how to get in.
#[derive(clap::Args, Clone)]
pub struct AdminArgs {
    /// Admin URL of the node (`http://127.0.0.1:9901`, or `https://` when its admin API is on
    /// TLS).
    #[arg(long, required = true)]
    pub admin: Option<String>,
    /// PEM file of the CAs that sign an https:// admin API's certificate (the fleet CA);
    /// default: the system's roots.
    #[arg(long)]
    pub ca: Option<std::path::PathBuf>,
    /// Admin bearer token.
    #[arg(
        long,
        env = "OUTPOST_ADMIN_TOKEN",
        required = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
}

/// A node's admin API.
pub struct AdminApi {
    base: String,
    token: String,
    ca: Option<std::path::PathBuf>,
}

impl AdminApi {
    /// The admin API `args` name.
    pub fn new(args: &AdminArgs) -> Result<Self, String> {
        let (Some(admin), Some(token)) = (&args.admin, &args.token) else {
            return Err("--admin and --token are required".into());
        };
        let base = admin.trim_end_matches('/').to_string();
        match base.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {}
            _ => {
                return Err(format!(
                    "invalid --admin URL {admin:?}: give http://HOST:PORT or https://HOST:PORT"
                ))
            }
        }
        Ok(Self {
            base,
            token: token.clone(),
            ca: args.ca.clone(),
        })
    }

    /// `GET path` (with its query): the JSON answer.
    pub async fn get(&self, path: &str) -> Result<serde_json::Value, String> {
        self.send(http::Method::GET, path, Bytes::new()).await
    }

    /// `POST path` with a JSON body: the JSON answer.
    pub async fn post(&self, path: &str, body: Vec<u8>) -> Result<serde_json::Value, String> {
        self.send(http::Method::POST, path, Bytes::from(body)).await
    }

    async fn send(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
    ) -> Result<serde_json::Value, String> {
        let base = &self.base;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("invalid request to the admin API at {base}: {e}"))?;
        let client = edge_node::upstream::tls::admin_client::<Full<Bytes>>(self.ca.as_deref())?;
        let res = tokio::time::timeout(TIMEOUT, client.request(req))
            .await
            .map_err(|_| format!("the admin API at {base} did not answer within 15s"))?
            .map_err(|e| format!("cannot reach the admin API at {base}: {}", cause(&e)))?;
        let status = res.status();
        let bytes = tokio::time::timeout(TIMEOUT, res.into_body().collect())
            .await
            .map_err(|_| format!("the admin API at {base} did not finish its answer within 15s"))?
            .map_err(|e| format!("the admin API at {base} broke off its answer: {e}"))?
            .to_bytes();
        let json: Result<serde_json::Value, _> = serde_json::from_slice(&bytes);
        let code = status.as_u16();
        if code == 401 || code == 403 {
            return Err(format!(
                "the admin API at {base} refused the token ({code})"
            ));
        }
        if !status.is_success() {
            let msg = json
                .ok()
                .and_then(|j| j.get("error").and_then(|e| e.as_str()).map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
            return Err(format!("the admin API at {base} answered {code}: {msg}"));
        }
        json.map_err(|e| {
            format!("the admin API at {base} answered with something that is not JSON: {e}")
        })
    }
}

/// Why a connection failed, in a few words: the OS error (`connection refused`), else the
/// chain of causes under the client's own wrapper (TLS: `invalid peer certificate: ...`).
fn cause(e: &hyper_util::client::legacy::Error) -> String {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            let plain = match io.kind() {
                ConnectionRefused => Some("connection refused"),
                TimedOut => Some("connection timed out"),
                ConnectionReset => Some("connection reset"),
                HostUnreachable => Some("host unreachable"),
                NetworkUnreachable => Some("network unreachable"),
                _ => None,
            };
            if let Some(p) = plain {
                return p.to_string();
            }
        }
        cur = c.source();
    }
    let chain = edge_node::upstream::error_chain(e);
    // The client's wrapper ("client error (Connect)") says nothing an operator can act on.
    match std::error::Error::source(e) {
        Some(inner) => edge_node::upstream::error_chain(inner),
        None => chain,
    }
}
