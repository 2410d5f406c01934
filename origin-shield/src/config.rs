//! The `[shield]` config section: the keys a shield takes, and only those. An edge's key
//! (`shields`, `shield_secret`, `purge_hub`, `purge_nats_url`, `node_id`, ...) in `[shield]`
//! is an error with its line, not silently ignored. The keys it shares with `[edge]` keep their meaning and their
//! defaults (`edge_node::config::defaults`), but the cache's name is `outpost-shield`.

use agent::config::ConfigProblem;
use agent::units::{ByteSize, Dur};
use edge_node::config::{defaults, CertConfig, Coding, EdgeConfig, RealIpHeader, SiteConfig};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The `[shield]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShieldConfig {
    /// The secret every request must carry (`Outpost-Shield-Secret`, sent by edges from their
    /// `shield_secret`); others get 403. At least 8 visible ASCII characters. Optional only
    /// when edges are authenticated by their certificates instead: `client_ca` set and no
    /// plain `listen`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Plain HTTP listen addresses (HTTP/1.1 and h2c prior knowledge).
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// TLS listen addresses (HTTP/1.1 and HTTP/2 by ALPN); certificates chosen by SNI.
    #[serde(default)]
    pub tls_listen: Vec<SocketAddr>,
    /// Certificates for `tls_listen`, chosen by the SNI host name.
    #[serde(default)]
    pub certificates: Vec<CertConfig>,
    /// PEM file of the fleet's CA: `tls_listen` then admits only clients (edges) with a
    /// certificate it signed (mutual TLS; `outpost ca issue`).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Memory tier size.
    #[serde(default = "defaults::memory_bytes")]
    pub memory_bytes: ByteSize,
    /// Directory of the persistent disk tier; absent: memory only.
    #[serde(default)]
    pub disk_path: Option<PathBuf>,
    /// Size of the disk tier.
    #[serde(default = "defaults::disk_bytes")]
    pub disk_bytes: ByteSize,
    /// Largest object the memory tier stores (default: 1/8 of it); larger ones go to disk.
    #[serde(default)]
    pub max_object_bytes: Option<ByteSize>,
    /// Most `Vary` variants kept per URL.
    #[serde(default = "defaults::max_variants")]
    pub max_variants: usize,
    /// Stale-while-revalidate window used when the origin names none.
    #[serde(default = "defaults::zero")]
    pub stale_while_revalidate: Dur,
    /// Stale-if-error window used when the origin names none.
    #[serde(default = "defaults::zero")]
    pub stale_if_error: Dur,
    /// How long a stale object with a validator is kept for revalidation.
    #[serde(default = "defaults::keep")]
    pub keep: Dur,
    /// How long past its freshness a response may be served when the origin cannot be
    /// reached, unless its directives forbid stale use.
    #[serde(default = "defaults::stale_if_unreachable")]
    pub stale_if_unreachable: Dur,
    /// How long a request waits on another request's fetch of the same key.
    #[serde(default = "defaults::collapse_timeout")]
    pub collapse_timeout: Dur,
    /// Time a client (an edge) has to send its request headers.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: Dur,
    /// On stop (SIGTERM), how long requests under way may take to finish.
    #[serde(default = "defaults::drain_timeout")]
    pub drain_timeout: Dur,
    /// Largest request head accepted.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: ByteSize,
    /// Connections (from edges) the shield holds at most (0: no bound).
    #[serde(default = "defaults::max_connections")]
    pub max_connections: usize,
    /// Connections one edge address holds at most (0: no bound).
    #[serde(default = "defaults::max_connections_per_client")]
    pub max_connections_per_client: u32,
    /// Requests one connection may carry before the shield closes it (0: no bound).
    #[serde(default = "defaults::max_requests_per_connection")]
    pub max_requests_per_connection: u64,
    /// Every listener expects a PROXY protocol header (v1 or v2) first, from a peer in
    /// `trusted_proxies` (a load balancer in front of the shields).
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Networks of the proxies in front (CIDR; a bare address is one host), the edges among
    /// them: their PROXY header, or their `real_ip_header`, names the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header a trusted proxy names the client in: `"x-forwarded-for"` (what edges send)
    /// or `"forwarded"`.
    #[serde(default)]
    pub real_ip_header: RealIpHeader,
    /// Time to connect to an origin.
    #[serde(default = "defaults::connect_timeout")]
    pub connect_timeout: Dur,
    /// Time from sending a request to an origin to its response head.
    #[serde(default = "defaults::first_byte_timeout")]
    pub first_byte_timeout: Dur,
    /// Longest pause between two body chunks from an origin.
    #[serde(default = "defaults::body_idle_timeout")]
    pub body_idle_timeout: Dur,
    /// Longest time a whole origin body may take (absent: no limit).
    #[serde(default)]
    pub body_timeout: Option<Dur>,
    /// Codings made from uncompressed stored responses for the edges (`"gzip"`, `"br"`).
    #[serde(default)]
    pub compress: Vec<Coding>,
    /// Media types worth compressing.
    #[serde(default = "edge_node::config::default_compress_types")]
    pub compress_types: Vec<String>,
    /// Smallest body worth compressing.
    #[serde(default = "defaults::compress_min_bytes")]
    pub compress_min_bytes: ByteSize,
    /// One line per request, to a file or stderr (none by default).
    #[serde(default)]
    pub access_log: Option<edge_node::config::AccessLogConfig>,
    /// Name of this cache in `Cache-Status` (RFC 9211).
    #[serde(default = "cache_name")]
    pub cache_name: String,
    /// DNS servers for resolving origin names; empty: the system's.
    #[serde(default)]
    pub resolvers: Vec<SocketAddr>,
    /// Directory for state that must survive a restart (the purge log of a hub, the applied
    /// purge version and marks).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Named rate limiters (`[[shield.limits]]`), which sites use by name in `limits`.
    #[serde(default)]
    pub limits: Vec<edge_node::limits::LimitConfig>,
    /// A MaxMind-format City or Country database for the `country` condition of site rules.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// Sites, routed by the request's Host.
    #[serde(default)]
    pub sites: Vec<SiteConfig>,
}

fn cache_name() -> String {
    "outpost-shield".to_string()
}

impl ShieldConfig {
    /// A shield with every default, the given secret, listeners and sites (embedding, tests).
    pub fn new(secret: &str, listen: Vec<SocketAddr>, sites: Vec<SiteConfig>) -> Self {
        let node = EdgeConfig::new(listen, sites);
        Self {
            secret: Some(secret.to_string()),
            listen: node.listen,
            tls_listen: node.tls_listen,
            certificates: node.certificates,
            client_ca: node.client_ca,
            memory_bytes: node.memory_bytes,
            disk_path: node.disk_path,
            disk_bytes: node.disk_bytes,
            max_object_bytes: node.max_object_bytes,
            max_variants: node.max_variants,
            stale_while_revalidate: node.stale_while_revalidate,
            stale_if_error: node.stale_if_error,
            keep: node.keep,
            stale_if_unreachable: node.stale_if_unreachable,
            collapse_timeout: node.collapse_timeout,
            header_read_timeout: node.header_read_timeout,
            drain_timeout: node.drain_timeout,
            max_header_bytes: node.max_header_bytes,
            max_connections: node.max_connections,
            max_connections_per_client: node.max_connections_per_client,
            max_requests_per_connection: node.max_requests_per_connection,
            proxy_protocol: node.proxy_protocol,
            trusted_proxies: node.trusted_proxies,
            real_ip_header: node.real_ip_header,
            connect_timeout: node.connect_timeout,
            first_byte_timeout: node.first_byte_timeout,
            body_idle_timeout: node.body_idle_timeout,
            body_timeout: node.body_timeout,
            compress: node.compress,
            compress_types: node.compress_types,
            compress_min_bytes: node.compress_min_bytes,
            access_log: node.access_log,
            cache_name: cache_name(),
            resolvers: node.resolvers,
            state_dir: node.state_dir,
            limits: node.limits,
            geoip_db: node.geoip_db,
            sites: node.sites,
        }
    }

    /// The caching node this shield is: its keys as the edge-node library takes them (the
    /// edge-only keys at their defaults: no shields above it, no purge hub or bus).
    pub fn node_config(&self) -> EdgeConfig {
        EdgeConfig {
            listen: self.listen.clone(),
            tls_listen: self.tls_listen.clone(),
            certificates: self.certificates.clone(),
            client_ca: self.client_ca.clone(),
            memory_bytes: self.memory_bytes,
            disk_path: self.disk_path.clone(),
            disk_bytes: self.disk_bytes,
            max_object_bytes: self.max_object_bytes,
            max_variants: self.max_variants,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            keep: self.keep,
            stale_if_unreachable: self.stale_if_unreachable,
            collapse_timeout: self.collapse_timeout,
            header_read_timeout: self.header_read_timeout,
            drain_timeout: self.drain_timeout,
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
            max_requests_per_connection: self.max_requests_per_connection,
            proxy_protocol: self.proxy_protocol,
            trusted_proxies: self.trusted_proxies.clone(),
            real_ip_header: self.real_ip_header,
            connect_timeout: self.connect_timeout,
            first_byte_timeout: self.first_byte_timeout,
            body_idle_timeout: self.body_idle_timeout,
            body_timeout: self.body_timeout,
            compress: self.compress.clone(),
            compress_types: self.compress_types.clone(),
            compress_min_bytes: self.compress_min_bytes,
            access_log: self.access_log.clone(),
            cache_name: self.cache_name.clone(),
            resolvers: self.resolvers.clone(),
            state_dir: self.state_dir.clone(),
            limits: self.limits.clone(),
            geoip_db: self.geoip_db.clone(),
            ..EdgeConfig::new(Vec::new(), self.sites.clone())
        }
    }

    /// Every problem with this section; `prefix` is its key path (`shield`).
    pub fn validate(&self, prefix: &str) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let Some(s) = &self.secret else {
            if self.client_ca.is_none() || !self.listen.is_empty() {
                out.push(ConfigProblem::new(
                    format!("{prefix}.secret"),
                    "required unless edges are admitted by certificate only \
                     (client_ca with tls_listen, and no plain listen)",
                ));
            }
            out.extend(self.node_config().validate(prefix));
            return out;
        };
        if s.len() < 8 {
            out.push(ConfigProblem::new(
                format!("{prefix}.secret"),
                "use at least 8 characters",
            ));
        } else if http::HeaderValue::from_str(s).is_err()
            || !s.bytes().all(|b| b.is_ascii_graphic())
        {
            out.push(ConfigProblem::new(
                format!("{prefix}.secret"),
                "must be visible ASCII",
            ));
        }
        out.extend(self.node_config().validate(prefix));
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Deserialize)]
    struct File {
        shield: ShieldConfig,
    }

    const BASE: &str = "[shield]\nsecret = \"s3cret-s3cret\"\nlisten = [\"127.0.0.1:0\"]\n\n[[shield.sites]]\nhosts = [\"a.test\"]\norigins = [\"http://127.0.0.1:1\"]\n";

    #[test]
    fn shield_keys_parse_with_the_shield_defaults() {
        let f: File = toml::from_str(BASE).unwrap();
        assert!(f.shield.validate("shield").is_empty());
        let node = f.shield.node_config();
        assert_eq!(node.cache_name, "outpost-shield");
        assert!(node.shields.is_empty() && node.purge_hub.is_none());
    }

    #[test]
    fn an_edge_key_in_shield_is_an_error_naming_it() {
        for key in [
            "purge_hub = \"http://127.0.0.1:9900\"",
            "node_id = \"x\"",
            "shields = [\"http://127.0.0.1:8090\"]",
            "shield_secret = \"x\"",
            "purge_nats_url = \"nats://127.0.0.1:4222\"",
        ] {
            let src = BASE.replace("listen = ", &format!("{key}\nlisten = "));
            let e = toml::from_str::<File>(&src).err().unwrap();
            let name = key.split(' ').next().unwrap();
            assert!(e.message().contains(name), "{key}: {e}");
            // The span points at the key's line (line 3), which the binary reports.
            let line = src[..e.span().unwrap().start].matches('\n').count() + 1;
            assert_eq!(line, 3, "{key}: {e}");
        }
    }

    #[test]
    fn the_secret_may_be_left_out_only_for_certificate_only_admission() {
        let no_secret = BASE.replace("secret = \"s3cret-s3cret\"\n", "");
        let f: File = toml::from_str(&no_secret).unwrap();
        let p = f.shield.validate("shield");
        assert!(p.iter().any(|p| p.path == "shield.secret"), "{p:?}");
        let mtls = no_secret.replace(
            "listen = [\"127.0.0.1:0\"]",
            "tls_listen = [\"127.0.0.1:0\"]\nclient_ca = \"/etc/hostname\"",
        );
        let f: File = toml::from_str(&mtls).unwrap();
        let p = f.shield.validate("shield");
        assert!(!p.iter().any(|p| p.path == "shield.secret"), "{p:?}");
        assert!(f.shield.node_config().client_ca.is_some());
    }

    #[test]
    fn a_short_or_binary_secret_is_refused() {
        for bad in ["short", "with space inside", "t\u{e9}l\u{e9}phone-secret"] {
            let mut f: File = toml::from_str(BASE).unwrap();
            f.shield.secret = Some(bad.to_string());
            let p = f.shield.validate("shield");
            assert_eq!(
                p.first().map(|p| p.path.as_str()),
                Some("shield.secret"),
                "{bad}"
            );
        }
    }
}
