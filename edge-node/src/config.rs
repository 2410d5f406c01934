//! The `[edge]` and `[admin]` config sections: serde structs, defaults in one place, and a
//! `validate()` that returns every problem at once, each naming its key path.

pub use crate::access_log::AccessLogConfig;
pub use crate::cache::compress::Coding;
pub use crate::cache::key::QueryMode;
pub use agent::units::{ByteSize, Dur};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use agent::config::ConfigProblem;

/// The `[edge]` section: an HTTP caching reverse proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Plain HTTP listen addresses (HTTP/1.1 and h2c prior knowledge).
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// TLS listen addresses (HTTP/1.1 and HTTP/2 by ALPN); certificates chosen by SNI.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// Certificates for `tls_listen`, chosen by the SNI host name.
    #[serde(default)]
    pub certificates: Vec<CertConfig>,
    /// PEM file of CAs: `tls_listen` then requires client certificates they signed (mutual
    /// TLS: a shield admitting only its fleet's edges).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Memory tier size, in bytes.
    #[serde(default = "defaults::memory_bytes")]
    pub memory_bytes: ByteSize,
    /// Directory of the persistent disk tier; absent: memory only.
    #[serde(default)]
    pub disk_path: Option<PathBuf>,
    /// Size of the disk tier.
    #[serde(default = "defaults::disk_bytes")]
    pub disk_bytes: ByteSize,
    /// Largest single object the memory tier stores; larger responses are passed through.
    #[serde(default)]
    pub max_object_bytes: Option<ByteSize>,
    /// Most `Vary` variants kept per URL; the least recently stored is replaced beyond this.
    #[serde(default = "defaults::max_variants")]
    pub max_variants: usize,
    /// Stale-while-revalidate window used when the origin names none (a Varnish-style grace).
    #[serde(default = "defaults::zero")]
    pub stale_while_revalidate: Dur,
    /// Stale-if-error window used when the origin names none.
    #[serde(default = "defaults::zero")]
    pub stale_if_error: Dur,
    /// How long a stale object with a validator (ETag or Last-Modified) is kept for revalidation.
    #[serde(default = "defaults::keep")]
    pub keep: Dur,
    /// How long past its freshness a response may be served when the next tier cannot be
    /// reached (RFC 9111 4.2.4), unless its directives forbid stale use; a site may set its own.
    #[serde(default = "defaults::stale_if_unreachable")]
    pub stale_if_unreachable: Dur,
    /// How long a request waits on another request's fetch of the same key before fetching itself.
    #[serde(default = "defaults::collapse_timeout")]
    pub collapse_timeout: Dur,
    /// Time a client has to send its request headers.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: Dur,
    /// On stop (SIGTERM), how long requests under way may take to finish.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Dur,
    /// Largest request head (request line plus headers) accepted, in bytes.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Client connections the node holds at most, over all its listeners (0: no bound).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Client connections one client address holds at most (0: no bound).
    #[serde(default = "defaults::max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// Requests one client connection may carry before the node closes it (0: no bound).
    #[serde(default = "defaults::max_requests_per_connection")]
    pub max_requests_per_connection: u64,
    /// Every listener (plain and TLS) expects a PROXY protocol header (v1 or v2) first, from
    /// a peer in `trusted_proxies`: a load balancer in front passing on the client's address.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Networks of the proxies and load balancers in front (CIDR, `"10.0.0.0/8"`; a bare
    /// address is one host): the only peers whose PROXY header or `real_ip_header` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy puts the client's address in: `"x-forwarded-for"` (the
    /// default) or `"forwarded"` (RFC 7239).
    #[serde(default)]
    pub real_ip_header: RealIpHeader,
    /// Time to connect to an upstream.
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    /// Time from sending a request upstream to its response head.
    #[serde(default = "defaults::first_byte_timeout")]
    pub first_byte_timeout: Dur,
    /// Longest pause between two body chunks from an upstream before the fetch is abandoned.
    #[serde(default = "defaults::body_idle_timeout")]
    pub body_idle_timeout: Dur,
    /// Longest time a whole upstream body may take (absent: no limit, only the idle limit).
    #[serde(default)]
    pub body_timeout: Option<Dur>,
    /// Codings the edge produces for clients from uncompressed stored responses
    /// (`"gzip"`, `"br"`); empty: pass through what the origin sent.
    #[serde(default)]
    pub compress: Vec<crate::cache::Coding>,
    /// Media types worth compressing (`text/*` matches a major type).
    #[serde(default = "default_compress_types")]
    pub compress_types: Vec<String>,
    /// Smallest body worth compressing.
    #[serde(default = "defaults::compress_min_bytes")]
    pub compress_min_bytes: ByteSize,
    /// One line per request, to a file or stderr (none by default).
    #[serde(default)]
    pub access_log: Option<AccessLogConfig>,
    /// Name of this cache in `Cache-Status` (RFC 9211).
    #[serde(default = "defaults::cache_name")]
    pub cache_name: String,
    /// DNS servers (`ip:port`) for resolving origin and shield names; empty: the system's
    /// (/etc/resolv.conf and /etc/hosts).
    #[serde(default)]
    pub resolvers: Vec<SocketAddr>,
    /// Shields (parent tier) to send misses to, as `http://host:port`; absent: go to the
    /// origins directly.
    #[serde(default)]
    pub shields: Vec<String>,
    /// The secret the shields expect from edges.
    #[serde(default)]
    pub shield_secret: Option<String>,
    /// PEM file of the CAs that sign https:// shields' certificates (the fleet CA), instead
    /// of the system's roots.
    #[serde(default)]
    pub shield_ca: Option<PathBuf>,
    /// This node's certificate (PEM, with its chain) presented to https:// shields that
    /// require one (mutual TLS).
    #[serde(default)]
    pub shield_client_cert: Option<PathBuf>,
    /// The key of `shield_client_cert`.
    #[serde(default)]
    pub shield_client_key: Option<PathBuf>,
    /// Admin URL of the purge hub this node follows (`http://127.0.0.1:9900`); absent: this
    /// node is its own hub.
    #[serde(default)]
    pub purge_hub: Option<String>,
    /// Token for the hub's admin API; defaults to this node's `[admin]` token.
    #[serde(default)]
    pub purge_hub_token: Option<String>,
    /// PEM file of the CAs that sign an https:// hub's certificate (the fleet CA), instead
    /// of the system's roots.
    #[serde(default)]
    pub purge_hub_ca: Option<PathBuf>,
    /// NATS server for scaled-out purge propagation (`nats://127.0.0.1:4222`); instead of
    /// `purge_hub`.
    #[serde(default)]
    pub purge_nats_url: Option<String>,
    /// JetStream stream holding the purges.
    #[serde(default = "defaults::purge_nats_stream")]
    pub purge_nats_stream: String,
    /// This node's name, unique in the cluster (names its durable NATS consumer).
    #[serde(default)]
    pub node_id: Option<String>,
    /// Directory for state that must survive a restart (the hub's purge log, the applied
    /// purge version and marks).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Named rate limiters (`[[edge.limits]]`), which sites use by name in `limits`.
    #[serde(default)]
    pub limits: Vec<crate::limits::LimitConfig>,
    /// A MaxMind-format City or Country database (`.mmdb`) for the `country` condition of
    /// site rules.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// Sites, routed by the request's Host.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
}

/// The request header a trusted proxy names the client in (`real_ip_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum RealIpHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    #[default]
    #[serde(rename = "x-forwarded-for", alias = "X-Forwarded-For")]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    #[serde(rename = "forwarded", alias = "Forwarded")]
    Forwarded,
}

/// A TLS certificate and key (PEM files) and the host names it serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    /// Host names (SNI) this certificate answers for; `*.example.com` matches one label.
    pub hosts: Vec<String>,
    /// Certificate chain, PEM.
    pub cert: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One site: the host names it answers for and where its content comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The site's name in metrics (`cdn.site`) and logs; default: its first host.
    #[serde(default)]
    pub name: Option<String>,
    /// Host names; `*.example.com` matches any single label in front of `example.com`.
    pub hosts: Vec<String>,
    /// Origin base URLs (`http://host:port`); requests go to the first that answers.
    pub origins: Vec<String>,
    /// Query string handling in the cache key.
    #[serde(default)]
    pub query: QueryMode,
    /// Query parameters left out of the cache key and of the upstream request
    /// (`utm_*` matches a prefix).
    #[serde(default)]
    pub drop_params: Vec<String>,
    /// This site's window for serving stale when its upstream cannot be reached (default:
    /// the section's `stale_if_unreachable`).
    #[serde(default)]
    pub stale_if_unreachable: Option<Dur>,
    /// Path of the active health check of each origin (`/healthz`); absent: passive only.
    #[serde(default)]
    pub health_path: Option<String>,
    /// Time between health checks.
    #[serde(default = "defaults::health_interval")]
    pub health_interval: Dur,
    /// Time a health check may take.
    #[serde(default = "defaults::health_timeout")]
    pub health_timeout: Dur,
    /// Consecutive good checks that bring an origin back.
    #[serde(default = "defaults::healthy_after")]
    pub healthy_after: u32,
    /// Consecutive failed checks that take an origin out.
    #[serde(default = "defaults::unhealthy_after")]
    pub unhealthy_after: u32,
    /// The Host sent to the origins instead of the client's (`bucket.s3.example.com`); also
    /// the name checked on an https:// origin's certificate unless `origin_sni` says otherwise.
    #[serde(default)]
    pub origin_host: Option<String>,
    /// The name sent as SNI to https:// origins and checked on their certificates, instead of
    /// the origin URL's host.
    #[serde(default)]
    pub origin_sni: Option<String>,
    /// PEM file of the CAs that sign the https:// origins' certificates, instead of the
    /// system's roots.
    #[serde(default)]
    pub origin_ca: Option<PathBuf>,
    /// Accept any certificate from https:// origins: encrypted, not authenticated. Warned
    /// about at start.
    #[serde(default)]
    pub origin_insecure_skip_verify: bool,
    /// Get a certificate for the site's hosts from the `[acme]` CA (wildcards left out).
    #[serde(default)]
    pub acme: bool,
    /// Client networks (CIDR, `"10.0.0.0/8"`; a bare address is one host) whose HTTP `PURGE`
    /// requests purge the URL on this node's cache, through the purge service like an admin
    /// purge; from anywhere else `PURGE` gets 405. Empty: `PURGE` is refused.
    #[serde(default)]
    pub purge_from: Vec<String>,
    /// The rate limiters (names of `[[edge.limits]]`) every request of the site passes.
    #[serde(default)]
    pub limits: Vec<String>,
    /// Largest request body the site takes (`"10MiB"`); larger gets 413 and is not forwarded.
    /// Absent: no bound.
    #[serde(default)]
    pub max_body_bytes: Option<ByteSize>,
    /// Client networks (CIDR) the site answers; empty: every client. Others get 403.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Client networks (CIDR) the site refuses with 403, before `allow` is consulted.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Ordered rules (`[[edge.sites.rules]]`): conditions, then actions; see docs/rules.md.
    #[serde(default)]
    pub rules: Vec<crate::rules::config::RuleConfig>,
}

impl EdgeConfig {
    /// Problems of `[[limits]]` and of the sites' `limits`: bad limiters, a name used twice, a
    /// site naming a limiter that does not exist.
    fn limit_problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut names = std::collections::HashSet::new();
        for (i, l) in self.limits.iter().enumerate() {
            for (key, msg) in l.problems() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.limits[{i}].{key}"),
                    msg,
                ));
            }
            if !names.insert(l.name.as_str()) {
                out.push(ConfigProblem::new(
                    format!("{prefix}.limits[{i}].name"),
                    format!("{:?} is the name of an earlier limiter too", l.name),
                ));
            }
        }
        for (i, s) in self.sites.iter().enumerate() {
            for (j, name) in s.limits.iter().enumerate() {
                if !names.contains(name.as_str()) {
                    out.push(ConfigProblem::new(
                        format!("{prefix}.sites[{i}].limits[{j}]"),
                        format!("{name:?} is not a limiter: name one of [[{prefix}.limits]]"),
                    ));
                }
            }
            for (j, r) in s.rules.iter().enumerate() {
                for (k, name) in r.limits.iter().enumerate() {
                    if !names.contains(name.as_str()) {
                        out.push(ConfigProblem::new(
                            format!("{prefix}.sites[{i}].rules[{j}].limits[{k}]"),
                            format!("{name:?} is not a limiter: name one of [[{prefix}.limits]]"),
                        ));
                    }
                }
            }
        }
        out
    }

    /// Problems of the sites' rules: each rule's own, too many rules, a `country` condition
    /// without `geoip_db`.
    fn rule_problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        for (i, s) in self.sites.iter().enumerate() {
            let p = format!("{prefix}.sites[{i}].rules");
            if s.rules.len() > crate::rules::MAX_RULES {
                out.push(ConfigProblem::new(
                    p.clone(),
                    format!(
                        "{} rules: a site has at most {}",
                        s.rules.len(),
                        crate::rules::MAX_RULES
                    ),
                ));
            }
            for (j, r) in s.rules.iter().enumerate() {
                for (key, msg) in r.problems() {
                    out.push(ConfigProblem::new(format!("{p}[{j}].{key}"), msg));
                }
                if !r.country.is_empty() && self.geoip_db.is_none() {
                    out.push(ConfigProblem::new(
                        format!("{p}[{j}].country"),
                        format!(
                            "a country condition needs a GeoIP database: set {prefix}.geoip_db"
                        ),
                    ));
                }
            }
        }
        if let Some(g) = &self.geoip_db {
            if !g.is_file() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.geoip_db"),
                    format!("file {} does not exist or is not readable", g.display()),
                ));
            }
        }
        out
    }
}

impl SiteConfig {
    /// The name metrics and logs use: `name`, else the first host.
    pub fn display_name(&self) -> &str {
        self.name
            .as_deref()
            .or(self.hosts.first().map(String::as_str))
            .unwrap_or("-")
    }

    /// A site with default options.
    pub fn new(hosts: Vec<String>, origins: Vec<String>) -> Self {
        Self {
            name: None,
            hosts,
            origins,
            query: QueryMode::default(),
            drop_params: Vec::new(),
            stale_if_unreachable: None,
            health_path: None,
            health_interval: defaults::health_interval(),
            health_timeout: defaults::health_timeout(),
            healthy_after: defaults::healthy_after(),
            unhealthy_after: defaults::unhealthy_after(),
            origin_host: None,
            origin_sni: None,
            origin_ca: None,
            origin_insecure_skip_verify: false,
            acme: false,
            purge_from: Vec::new(),
            limits: Vec::new(),
            max_body_bytes: None,
            allow: Vec::new(),
            deny: Vec::new(),
            rules: Vec::new(),
        }
    }

    /// How this site's https:// origins are reached: the SNI is `origin_sni`, else
    /// `origin_host` (without a port), else each origin URL's host.
    pub(crate) fn origin_tls(&self) -> crate::upstream::tls::OriginTls {
        let host_name = self.origin_host.as_deref().map(|h| {
            h.parse::<http::uri::Authority>()
                .map_or(h.to_string(), |a| a.host().to_string())
        });
        crate::upstream::tls::OriginTls {
            ca_file: self.origin_ca.clone(),
            server_name: self.origin_sni.clone().or(host_name),
            insecure: self.origin_insecure_skip_verify,
            ..Default::default()
        }
    }
}

/// The `[admin]` section: one admin listener per process.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Listen address of the admin API.
    pub listen: SocketAddr,
    /// Bearer token required on every admin request but `GET /healthz`.
    #[serde(default)]
    pub token: Option<String>,
    /// File holding the token (first line), instead of `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Certificate (PEM, with its chain): the admin API then listens on TLS only, so the
    /// token never crosses in clear (`outpost ca issue` makes one from the fleet CA).
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// The key of `cert`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// This process is a dedicated purge hub: it takes purges and keeps the log followers
    /// read even without an `[edge]` or `[shield]` (a node with neither refuses purges).
    #[serde(default)]
    pub purge_hub: bool,
    /// Where a dedicated purge hub keeps its purge log (nodes with an edge or shield use
    /// that section's `state_dir`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Networks (CIDR; a bare address is one host) whose connections may use the admin API;
    /// empty: every address. Checked on the TCP peer, before the token. `/healthz` and
    /// `/livez` stay open to all (load balancers and geo-DNS probe them).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Networks refused even when `allow` has them (deny wins).
    #[serde(default)]
    pub deny: Vec<String>,
}

/// The `[acme]` section: where certificates for `acme = true` sites come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's directory URL (default: Let's Encrypt).
    #[serde(default = "defaults::acme_directory")]
    pub directory: String,
    /// Contact URLs for the account (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// External account binding: the key identifier the CA gave (ZeroSSL, Google, ...).
    #[serde(default)]
    pub eab_kid: Option<String>,
    /// External account binding: the HMAC key the CA gave, base64url.
    #[serde(default)]
    pub eab_hmac_key: Option<String>,
    /// PEM file of the CAs that sign the ACME server's own HTTPS certificate (a private CA,
    /// a test server); absent: the system's roots.
    #[serde(default)]
    pub directory_ca: Option<PathBuf>,
    /// First wait after a failed order; it doubles up to an hour. Also the least time
    /// between two orders for one certificate.
    #[serde(default = "defaults::acme_retry_after")]
    pub retry_after: Dur,
    /// Renew when this little of the lifetime is left, if that comes before two thirds of
    /// it (`"30d"`); default: at two thirds.
    #[serde(default)]
    pub renew_before: Option<Dur>,
    /// How the CA validates: `"http-01"` (port 80, the plain listeners), `"tls-alpn-01"`
    /// (port 443, the TLS listeners) or `"dns-01"` (a TXT record in an Outpost `[dns]` node's
    /// zone, through its admin API: `dns_api`; wildcard hosts need it).
    #[serde(default)]
    pub challenge: AcmeChallenge,
    /// Admin URL of the Outpost `[dns]` node serving the zone, for `dns-01`.
    #[serde(default)]
    pub dns_api: Option<String>,
    /// Its admin token.
    #[serde(default)]
    pub dns_api_token: Option<String>,
    /// PEM file of the CAs that sign its admin API's certificate (the fleet CA).
    #[serde(default)]
    pub dns_api_ca: Option<PathBuf>,
}

/// The ACME validation method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum AcmeChallenge {
    /// `GET /.well-known/acme-challenge/TOKEN` over plain HTTP (RFC 8555 8.3).
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    /// A TLS handshake with ALPN `acme-tls/1` (RFC 8737).
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
    /// A TXT record at `_acme-challenge.NAME` (RFC 8555 8.4), published through an Outpost
    /// `[dns]` node's admin API.
    #[serde(rename = "dns-01")]
    Dns01,
}

impl AcmeConfig {
    /// The external account binding: key id and the HMAC key decoded, if both are set.
    pub(crate) fn eab_key(&self) -> Result<Option<(String, Vec<u8>)>, String> {
        use base64::Engine;
        let (Some(kid), Some(key)) = (&self.eab_kid, &self.eab_hmac_key) else {
            return Ok(None);
        };
        let key = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key.trim_end_matches('='))
            .map_err(|e| format!("acme.eab_hmac_key is not base64url: {e}"))?;
        if key.is_empty() {
            return Err("acme.eab_hmac_key is empty".into());
        }
        Ok(Some((kid.clone(), key)))
    }

    /// Every problem with this section.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        if !self.directory.starts_with("https://") || self.directory.parse::<http::Uri>().is_err() {
            out.push(ConfigProblem::new(
                format!("{prefix}.directory"),
                "must be an https:// URL",
            ));
        }
        for (i, c) in self.contact.iter().enumerate() {
            if !c.starts_with("mailto:") {
                out.push(ConfigProblem::new(
                    format!("{prefix}.contact[{i}]"),
                    "must be a mailto: URL",
                ));
            }
        }
        if self.eab_kid.is_some() != self.eab_hmac_key.is_some() {
            out.push(ConfigProblem::new(
                format!("{prefix}.eab_kid"),
                "eab_kid and eab_hmac_key go together",
            ));
        }
        if let Some(key) = &self.eab_hmac_key {
            use base64::Engine;
            let decoded =
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(key.trim_end_matches('='));
            if decoded.map_or(true, |k| k.is_empty()) {
                out.push(ConfigProblem::new(
                    format!("{prefix}.eab_hmac_key"),
                    "must be the base64url key the CA gave",
                ));
            }
        }
        out.extend(unreadable(
            &format!("{prefix}.directory_ca"),
            self.directory_ca.as_deref(),
        ));
        if self.retry_after.0.is_zero() {
            out.push(ConfigProblem::new(
                format!("{prefix}.retry_after"),
                "must be above zero",
            ));
        }
        if self.challenge == AcmeChallenge::Dns01
            && (self.dns_api.is_none() || self.dns_api_token.is_none())
        {
            out.push(ConfigProblem::new(
                format!("{prefix}.challenge"),
                "dns-01 needs dns_api and dns_api_token (the admin API of the [dns] node)",
            ));
        }
        if let Some(u) = &self.dns_api {
            if crate::upstream::addr::OriginAddr::parse(u).is_err() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.dns_api"),
                    "must be an http:// or https:// base URL",
                ));
            }
        }
        out
    }
}

/// The media types compressed by default: text, JSON, JavaScript, XML, SVG, wasm, fonts.
pub fn default_compress_types() -> Vec<String> {
    crate::cache::compress::default_types()
}

/// The default of each key, in one place (also used by the roles built on this config:
/// the shield's `[shield]` section).
#[allow(missing_docs)]
pub mod defaults {
    use super::*;
    pub fn memory_bytes() -> ByteSize {
        ByteSize(256 << 20)
    }
    pub fn disk_bytes() -> ByteSize {
        ByteSize(1 << 30)
    }
    pub fn max_variants() -> usize {
        8
    }
    pub fn acme_directory() -> String {
        "https://acme-v02.api.letsencrypt.org/directory".to_string()
    }
    pub fn acme_retry_after() -> Dur {
        Dur(Duration::from_secs(60))
    }
    pub fn zero() -> Dur {
        Dur(Duration::ZERO)
    }
    pub fn keep() -> Dur {
        Dur(Duration::from_secs(3600))
    }
    pub fn stale_if_unreachable() -> Dur {
        Dur(Duration::from_secs(3600))
    }
    pub fn collapse_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn header_read_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn max_connections() -> usize {
        16_384
    }
    pub fn max_connections_per_client() -> u32 {
        512
    }
    pub fn max_requests_per_connection() -> u64 {
        10_000
    }
    pub fn drain_timeout() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn max_header_bytes() -> ByteSize {
        ByteSize(32 << 10)
    }
    pub fn connect_timeout() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn first_byte_timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn body_idle_timeout() -> Dur {
        Dur(Duration::from_secs(30))
    }
    pub fn health_interval() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn health_timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn healthy_after() -> u32 {
        2
    }
    pub fn unhealthy_after() -> u32 {
        3
    }
    pub fn purge_nats_stream() -> String {
        "OUTPOST_PURGE".to_string()
    }
    pub fn compress_min_bytes() -> ByteSize {
        ByteSize(256)
    }
    pub fn cache_name() -> String {
        "outpost-edge".to_string()
    }
}

impl EdgeConfig {
    /// The keys of an `[edge]` section, as a TOML document of their own (`listen = [..]`,
    /// `[[sites]]`, ..): unknown keys are errors. Check the result with
    /// [`validate`](Self::validate) (which [`EdgeBuilder::bind`](crate::EdgeBuilder::bind)
    /// also does).
    pub fn from_toml(src: &str) -> Result<Self, String> {
        toml::from_str(src).map_err(|e| e.to_string())
    }

    /// A config with every default and the given listeners and sites, for embedding and tests.
    pub fn new(listen: Vec<SocketAddr>, sites: Vec<SiteConfig>) -> Self {
        Self {
            listen,
            tls_listen: Vec::new(),
            certificates: Vec::new(),
            client_ca: None,
            memory_bytes: defaults::memory_bytes(),
            max_object_bytes: None,
            disk_path: None,
            disk_bytes: defaults::disk_bytes(),
            max_variants: defaults::max_variants(),
            stale_while_revalidate: defaults::zero(),
            stale_if_error: defaults::zero(),
            keep: defaults::keep(),
            stale_if_unreachable: defaults::stale_if_unreachable(),
            collapse_timeout: defaults::collapse_timeout(),
            header_read_timeout: defaults::header_read_timeout(),
            drain_timeout: defaults::drain_timeout(),
            max_connections: defaults::max_connections(),
            max_connections_per_client: defaults::max_connections_per_client(),
            max_requests_per_connection: defaults::max_requests_per_connection(),
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            real_ip_header: RealIpHeader::default(),
            max_header_bytes: defaults::max_header_bytes(),
            connect_timeout: defaults::connect_timeout(),
            first_byte_timeout: defaults::first_byte_timeout(),
            body_idle_timeout: defaults::body_idle_timeout(),
            body_timeout: None,
            compress: Vec::new(),
            compress_types: default_compress_types(),
            compress_min_bytes: defaults::compress_min_bytes(),
            access_log: None,
            resolvers: Vec::new(),
            shields: Vec::new(),
            shield_secret: None,
            shield_ca: None,
            shield_client_cert: None,
            shield_client_key: None,
            purge_hub: None,
            purge_hub_token: None,
            purge_hub_ca: None,
            purge_nats_url: None,
            purge_nats_stream: defaults::purge_nats_stream(),
            node_id: None,
            state_dir: None,
            cache_name: defaults::cache_name(),
            limits: Vec::new(),
            geoip_db: None,
            sites,
        }
    }

    /// Problems with the TLS keys between nodes: a client CA without TLS listeners, shield
    /// TLS settings without an https:// shield, half a client certificate, unreadable files.
    fn node_tls_problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        for (key, p) in [
            ("client_ca", &self.client_ca),
            ("shield_ca", &self.shield_ca),
            ("shield_client_cert", &self.shield_client_cert),
            ("shield_client_key", &self.shield_client_key),
            ("purge_hub_ca", &self.purge_hub_ca),
        ] {
            out.extend(unreadable(&format!("{prefix}.{key}"), p.as_deref()));
        }
        let tls_hub = self
            .purge_hub
            .as_deref()
            .is_some_and(|h| h.starts_with("https://"));
        if self.purge_hub_ca.is_some() && !tls_hub {
            out.push(ConfigProblem::new(
                format!("{prefix}.purge_hub_ca"),
                "applies to an https:// purge_hub, and there is none",
            ));
        }
        if self.client_ca.is_some() && self.tls_listen.is_empty() {
            out.push(ConfigProblem::new(
                format!("{prefix}.client_ca"),
                "client certificates are asked for on tls_listen, and there is none",
            ));
        }
        if self.shield_client_cert.is_some() != self.shield_client_key.is_some() {
            out.push(ConfigProblem::new(
                format!("{prefix}.shield_client_cert"),
                "shield_client_cert and shield_client_key go together",
            ));
        }
        let tls_shield = self.shields.iter().any(|s| s.starts_with("https://"));
        let keys = [
            ("shield_ca", self.shield_ca.is_some()),
            ("shield_client_cert", self.shield_client_cert.is_some()),
        ];
        for (key, set) in keys {
            if set && !tls_shield {
                out.push(ConfigProblem::new(
                    format!("{prefix}.{key}"),
                    "applies to https:// shields, and there is none",
                ));
            }
        }
        out
    }

    /// Problems with the keys that say who the client is: `trusted_proxies` networks, and
    /// `proxy_protocol` without any peer to take it from.
    fn client_addr_problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = network_problems(&format!("{prefix}.trusted_proxies"), &self.trusted_proxies);
        if self.proxy_protocol && self.trusted_proxies.is_empty() {
            out.push(ConfigProblem::new(
                format!("{prefix}.trusted_proxies"),
                "proxy_protocol = true needs the load balancers' networks here: \
                 a PROXY header is taken only from them",
            ));
        }
        out
    }

    /// How this node reaches its https:// shields: the fleet CA, its client certificate.
    /// Always HTTP/1.1 (the tiers relay 1xx responses, which hyper reports over HTTP/1.1
    /// only); connections are pooled and kept alive, so handshakes are rare.
    pub(crate) fn shield_tls(&self) -> crate::upstream::tls::OriginTls {
        crate::upstream::tls::OriginTls {
            ca_file: self.shield_ca.clone(),
            client_cert: match (&self.shield_client_cert, &self.shield_client_key) {
                (Some(c), Some(k)) => Some((c.clone(), k.clone())),
                _ => None,
            },
            http1_only: true,
            ..Default::default()
        }
    }

    /// Where state that must outlive a restart goes: `state_dir`, else `state` in the disk
    /// tier's directory, else nowhere.
    pub fn effective_state_dir(&self) -> Option<PathBuf> {
        self.state_dir
            .clone()
            .or_else(|| self.disk_path.as_ref().map(|p| p.join("state")))
    }

    /// The largest object the memory tier stores: the configured value, else 1/8 of the tier.
    pub fn effective_max_object_bytes(&self) -> u64 {
        self.max_object_bytes
            .map(|b| b.0)
            .unwrap_or(self.memory_bytes.0 / 8)
            .min(u64::from(u32::MAX))
    }

    /// Every problem with this section; `prefix` is the section's key path (`edge`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        for (key, msg) in self.access_log.iter().flat_map(|a| a.problems()) {
            out.push(ConfigProblem::new(
                format!("{prefix}.access_log.{key}"),
                msg,
            ));
        }
        out.extend(self.limit_problems(prefix));
        out.extend(self.client_addr_problems(prefix));
        out.extend(self.rule_problems(prefix));
        if self.listen.is_empty() && self.tls_listen.is_empty() {
            out.push(ConfigProblem::new(
                format!("{prefix}.listen"),
                "at least one listen or tls_listen address is required",
            ));
        }
        out.extend(self.node_tls_problems(prefix));
        let acme = self.sites.iter().any(|s| s.acme);
        if acme && self.state_dir.is_none() && self.disk_path.is_none() {
            out.push(ConfigProblem::new(
                format!("{prefix}.state_dir"),
                "sites with acme = true need a state_dir for the account and certificates",
            ));
        }
        if !self.tls_listen.is_empty() && self.certificates.is_empty() && !acme {
            out.push(ConfigProblem::new(
                format!("{prefix}.certificates"),
                "tls_listen needs at least one [[certificates]] entry",
            ));
        }
        for (i, c) in self.certificates.iter().enumerate() {
            let p = format!("{prefix}.certificates[{i}]");
            if c.hosts.is_empty() {
                out.push(ConfigProblem::new(
                    format!("{p}.hosts"),
                    "must name at least one host",
                ));
            }
            for (field, path) in [("cert", &c.cert), ("key", &c.key)] {
                if !path.is_file() {
                    out.push(ConfigProblem::new(
                        format!("{p}.{field}"),
                        format!("file {} does not exist or is not readable", path.display()),
                    ));
                }
            }
        }
        if self.memory_bytes.0 < 1 << 20 {
            out.push(ConfigProblem::new(
                format!("{prefix}.memory_bytes"),
                "must be at least 1MiB",
            ));
        }
        if self.disk_path.is_some() && self.disk_bytes.0 < 16 << 20 {
            out.push(ConfigProblem::new(
                format!("{prefix}.disk_bytes"),
                "must be at least 16MiB",
            ));
        }
        if self.max_variants == 0 {
            out.push(ConfigProblem::new(
                format!("{prefix}.max_variants"),
                "must be at least 1",
            ));
        }
        if self.max_header_bytes.0 < 8192 {
            out.push(ConfigProblem::new(
                format!("{prefix}.max_header_bytes"),
                "must be at least 8KiB (8192)",
            ));
        }
        if self.cache_name.is_empty() || !self.cache_name.bytes().all(|b| b.is_ascii_graphic()) {
            out.push(ConfigProblem::new(
                format!("{prefix}.cache_name"),
                "must be a non-empty token of visible ASCII characters",
            ));
        }
        for (i, s) in self.shields.iter().enumerate() {
            if let Err(e) = crate::upstream::addr::OriginAddr::parse(s) {
                out.push(ConfigProblem::new(
                    format!("{prefix}.shields[{i}]"),
                    e.replace("origin", "shield"),
                ));
            }
        }
        if !self.shields.is_empty()
            && self.shield_secret.is_none()
            && self.shield_client_cert.is_none()
        {
            out.push(ConfigProblem::new(
                format!("{prefix}.shield_secret"),
                "shields admit edges by the shared secret or by a fleet certificate \
                 (shield_client_cert): set one",
            ));
        }
        if let Some(url) = &self.purge_nats_url {
            if self.purge_hub.is_some() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.purge_nats_url"),
                    "set either purge_hub or purge_nats_url, not both",
                ));
            }
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                out.push(ConfigProblem::new(
                    format!("{prefix}.purge_nats_url"),
                    format!("{url:?} must start with nats:// or tls://"),
                ));
            }
            let valid_id = |id: &str| {
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            };
            match &self.node_id {
                None => out.push(ConfigProblem::new(
                    format!("{prefix}.node_id"),
                    "purge_nats_url needs a node_id unique to this node",
                )),
                Some(id) if !valid_id(id) => out.push(ConfigProblem::new(
                    format!("{prefix}.node_id"),
                    "must be 1-64 letters, digits, '-' or '_'",
                )),
                _ => {}
            }
            if self.purge_nats_stream.is_empty()
                || !self
                    .purge_nats_stream
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                out.push(ConfigProblem::new(
                    format!("{prefix}.purge_nats_stream"),
                    "must be letters, digits, '-' or '_'",
                ));
            }
        }
        if let Some(hub) = &self.purge_hub {
            if let Err(e) = crate::upstream::addr::OriginAddr::parse(hub) {
                out.push(ConfigProblem::new(
                    format!("{prefix}.purge_hub"),
                    e.replace("origin", "purge hub"),
                ));
            }
        }
        if self.sites.is_empty() {
            out.push(ConfigProblem::new(
                format!("{prefix}.sites"),
                "at least one [[sites]] entry is required",
            ));
        }
        let mut seen = std::collections::HashMap::new();
        let mut names = std::collections::HashMap::new();
        for (i, s) in self.sites.iter().enumerate() {
            let p = format!("{prefix}.sites[{i}]");
            if let Some(n) = &s.name {
                if n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_graphic()) {
                    out.push(ConfigProblem::new(
                        format!("{p}.name"),
                        "must be 1-64 visible ASCII characters",
                    ));
                }
            }
            // A name taken from the first host clashes only where the hosts do (reported
            // below); an explicit name must differ from every other site's.
            let explicit = s.name.is_some();
            let clash = names.insert(s.display_name().to_string(), (i, explicit));
            if let Some((prev, _)) = clash.filter(|(_, e)| explicit || *e) {
                out.push(ConfigProblem::new(
                    format!("{p}.name"),
                    format!(
                        "{:?} already names sites[{prev}]; give each site its own name",
                        s.display_name()
                    ),
                ));
            }
            if s.hosts.is_empty() {
                out.push(ConfigProblem::new(
                    format!("{p}.hosts"),
                    "must name at least one host",
                ));
            }
            for (j, h) in s.hosts.iter().enumerate() {
                let norm = h.to_ascii_lowercase();
                if !valid_host_pattern(&norm) {
                    out.push(ConfigProblem::new(
                        format!("{p}.hosts[{j}]"),
                        format!("{h:?} is not a host name (letters, digits, '-', '.', optional leading '*.')"),
                    ));
                } else if let Some(prev) = seen.insert(norm, i) {
                    out.push(ConfigProblem::new(
                        format!("{p}.hosts[{j}]"),
                        format!("{h:?} is already served by sites[{prev}]"),
                    ));
                }
            }
            if s.origins.is_empty() {
                out.push(ConfigProblem::new(
                    format!("{p}.origins"),
                    "must name at least one origin URL",
                ));
            }
            for (j, o) in s.origins.iter().enumerate() {
                if let Err(e) = crate::upstream::addr::OriginAddr::parse(o) {
                    out.push(ConfigProblem::new(format!("{p}.origins[{j}]"), e));
                }
            }
            out.extend(origin_tls_problems(s, &p));
            out.extend(purge_from_problems(s, &p));
            if let Some(hp) = &s.health_path {
                if !hp.starts_with('/') || http::uri::PathAndQuery::try_from(hp.as_str()).is_err() {
                    out.push(ConfigProblem::new(
                        format!("{p}.health_path"),
                        "must be a path starting with '/'",
                    ));
                }
            }
            for (key, n) in [
                ("healthy_after", s.healthy_after),
                ("unhealthy_after", s.unhealthy_after),
            ] {
                if n == 0 {
                    out.push(ConfigProblem::new(
                        format!("{p}.{key}"),
                        "thresholds must be at least 1",
                    ));
                }
            }
            for (j, d) in s.drop_params.iter().enumerate() {
                if d.is_empty() || d[..d.len() - 1].contains('*') {
                    out.push(ConfigProblem::new(
                        format!("{p}.drop_params[{j}]"),
                        "must be a parameter name, optionally ending in '*'",
                    ));
                }
            }
        }
        out
    }
}

/// The problem at `key` when the file `path` (if set) cannot be read.
fn unreadable(key: &str, path: Option<&std::path::Path>) -> Option<ConfigProblem> {
    let path = path?;
    let e = std::fs::metadata(path).err()?;
    Some(ConfigProblem::new(
        key,
        format!("cannot read {}: {e}", path.display()),
    ))
}

/// Problems with a site's settings for reaching its origins over TLS (`p` is its path).
fn origin_tls_problems(s: &SiteConfig, p: &str) -> Vec<ConfigProblem> {
    let mut out = Vec::new();
    if let Some(h) = &s.origin_host {
        if h.parse::<http::uri::Authority>().is_err() || http::HeaderValue::from_str(h).is_err() {
            out.push(ConfigProblem::new(
                format!("{p}.origin_host"),
                format!("{h:?} is not a host[:port]"),
            ));
        }
    }
    if let Some(n) = &s.origin_sni {
        if rustls::pki_types::ServerName::try_from(n.as_str()).is_err() {
            out.push(ConfigProblem::new(
                format!("{p}.origin_sni"),
                format!("{n:?} is not a server name"),
            ));
        }
    }
    if s.origin_ca.is_some() {
        out.extend(unreadable(
            &format!("{p}.origin_ca"),
            s.origin_ca.as_deref(),
        ));
        if s.origin_insecure_skip_verify {
            out.push(ConfigProblem::new(
                format!("{p}.origin_insecure_skip_verify"),
                "contradicts origin_ca: verify against that CA, or not at all",
            ));
        }
    }
    let any_tls = s
        .origins
        .iter()
        .filter_map(|o| crate::upstream::addr::OriginAddr::parse(o).ok())
        .any(|a| a.is_tls());
    let tls_keys = [
        ("origin_sni", s.origin_sni.is_some()),
        ("origin_ca", s.origin_ca.is_some()),
        ("origin_insecure_skip_verify", s.origin_insecure_skip_verify),
    ];
    for (key, set) in tls_keys {
        if set && !any_tls {
            out.push(ConfigProblem::new(
                format!("{p}.{key}"),
                "applies to https:// origins, and this site has none",
            ));
        }
    }
    out
}

pub(crate) use crate::net::parse_network;

/// Problems with a list of networks (CIDR, or bare addresses) at `key`, one per bad entry.
pub(crate) fn network_problems(key: &str, list: &[String]) -> Vec<ConfigProblem> {
    list.iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let e = parse_network(n).err()?;
            Some(ConfigProblem::new(format!("{key}[{i}]"), e))
        })
        .collect()
}

/// Problems with a site's client networks: `purge_from`, `allow`, `deny` (`p` is its path).
fn purge_from_problems(s: &SiteConfig, p: &str) -> Vec<ConfigProblem> {
    [
        ("purge_from", &s.purge_from),
        ("allow", &s.allow),
        ("deny", &s.deny),
    ]
    .into_iter()
    .flat_map(|(key, nets)| network_problems(&format!("{p}.{key}"), nets))
    .collect()
}

fn valid_host_pattern(h: &str) -> bool {
    let rest = h.strip_prefix("*.").unwrap_or(h);
    !rest.is_empty()
        && rest.len() <= 253
        && rest.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl AdminConfig {
    /// Every problem with this section.
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => out.push(ConfigProblem::new(
                format!("{prefix}.token_file"),
                "set either token or token_file, not both",
            )),
            (None, None) => out.push(ConfigProblem::new(
                format!("{prefix}.token"),
                "a token (or token_file) is required",
            )),
            (Some(t), None) if t.trim().is_empty() => out.push(ConfigProblem::new(
                format!("{prefix}.token"),
                "must not be empty",
            )),
            (None, Some(f)) => {
                if let Err(e) = read_token_file(f) {
                    out.push(ConfigProblem::new(format!("{prefix}.token_file"), e));
                }
            }
            _ => {}
        }
        match (&self.cert, &self.key) {
            (Some(_), None) | (None, Some(_)) => out.push(ConfigProblem::new(
                format!("{prefix}.cert"),
                "cert and key go together",
            )),
            (Some(c), Some(k)) => {
                out.extend(unreadable(&format!("{prefix}.cert"), Some(c)));
                out.extend(unreadable(&format!("{prefix}.key"), Some(k)));
            }
            (None, None) => {}
        }
        out.extend(network_problems(&format!("{prefix}.allow"), &self.allow));
        out.extend(network_problems(&format!("{prefix}.deny"), &self.deny));
        out
    }

    /// The certificate of the admin listener, if it is on TLS.
    pub fn certificate(&self) -> Option<CertConfig> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(CertConfig {
                hosts: Vec::new(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// The token, read from `token` or the first line of `token_file`.
    pub fn resolve_token(&self) -> Result<String, String> {
        match (&self.token, &self.token_file) {
            (Some(t), _) => Ok(t.clone()),
            (None, Some(f)) => read_token_file(f),
            (None, None) => Err("admin token is not set".into()),
        }
    }
}

fn read_token_file(f: &std::path::Path) -> Result<String, String> {
    let s = std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
    let t = s.lines().next().unwrap_or("").trim().to_string();
    if t.is_empty() {
        return Err(format!("{} holds no token", f.display()));
    }
    Ok(t)
}
