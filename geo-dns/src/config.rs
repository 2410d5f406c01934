//! The `[dns]` config section: serde structs with defaults, and a `validate()` that reports every
//! problem at once, each naming its dotted key path (`dns.zones[0].geo[1].regions[0].lat`).

use agent::units::Dur;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

pub use agent::config::ConfigProblem as Problem;

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem::new(path, message)
}

/// The `[dns]` section: an authoritative server with geo records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Addresses to serve on, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// MaxMind-format city database (GeoLite2-City, DB-IP City Lite); absent: every client is
    /// "unknown" and geo names answer with their default region.
    #[serde(default)]
    pub geoip_db: Option<PathBuf>,
    /// Largest UDP response sent to an EDNS client (RFC 9715 / DNS flag day 2020: 1232).
    #[serde(default = "defaults::udp_payload")]
    pub udp_payload: u16,
    /// UDP worker threads per listen address (default: one per core).
    #[serde(default)]
    pub udp_workers: Option<usize>,
    /// Idle time after which a TCP connection is closed.
    #[serde(default = "defaults::tcp_idle")]
    pub tcp_idle_timeout: Dur,
    /// Health probe settings shared by every region.
    #[serde(default)]
    pub health: HealthConfig,
    /// The zones served.
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
}

/// How region health endpoints are probed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between probes of one endpoint.
    #[serde(default = "defaults::interval")]
    pub interval: Dur,
    /// Time a probe may take before it counts as failed.
    #[serde(default = "defaults::timeout")]
    pub timeout: Dur,
    /// Consecutive successes that bring a down endpoint back.
    #[serde(default = "defaults::healthy_after")]
    pub healthy_after: u32,
    /// Consecutive failures that take an endpoint down.
    #[serde(default = "defaults::unhealthy_after")]
    pub unhealthy_after: u32,
    /// PEM file of the CAs that sign https:// endpoints' certificates (the fleet CA),
    /// instead of the system's roots.
    #[serde(default)]
    pub ca: Option<std::path::PathBuf>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: defaults::interval(),
            timeout: defaults::timeout(),
            healthy_after: defaults::healthy_after(),
            unhealthy_after: defaults::unhealthy_after(),
            ca: None,
        }
    }
}

/// One zone served authoritatively.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// The zone apex (`example.com`).
    pub name: String,
    /// Name servers of the zone (the apex NS set; the first is the SOA MNAME).
    pub ns: Vec<String>,
    /// SOA RNAME, as a name (`hostmaster.example.com`); default `hostmaster.<zone>`.
    #[serde(default)]
    pub hostmaster: Option<String>,
    /// SOA serial; default: the time the zone was loaded, in seconds since the epoch.
    #[serde(default)]
    pub serial: Option<u32>,
    /// TTL of the SOA and NS records, and default TTL of records.
    #[serde(default = "defaults::ttl")]
    pub ttl: u32,
    /// How long resolvers cache NXDOMAIN/NODATA (the SOA MINIMUM, RFC 2308).
    #[serde(default = "defaults::negative_ttl")]
    pub negative_ttl: u32,
    /// Static records.
    #[serde(default)]
    pub records: Vec<RecordConfig>,
    /// Names answered by client location.
    #[serde(default)]
    pub geo: Vec<GeoConfig>,
}

/// One static record.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordConfig {
    /// Owner name, relative to the zone (`www`, `@` for the apex) or absolute with a final dot.
    pub name: String,
    /// Record type: A, AAAA, CNAME, TXT, MX, CAA, NS.
    #[serde(rename = "type")]
    pub rtype: String,
    /// TTL; default the zone's `ttl`.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// Presentation-format data: an address, a name, `10 mail.example.com.`, `0 issue "ca.example"`,
    /// or the text of a TXT record.
    pub value: String,
}

/// A name answered with the addresses of the nearest healthy region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoConfig {
    /// Owner name, relative to the zone.
    pub name: String,
    /// TTL of the answers (keep it short: it bounds failover time).
    #[serde(default = "defaults::geo_ttl")]
    pub ttl: u32,
    /// The regions.
    pub regions: Vec<RegionConfig>,
    /// Region for clients the database cannot place; default: the first region.
    #[serde(default)]
    pub default: Option<String>,
}

/// One region of a geo name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    /// Region name (shown in metrics).
    pub name: String,
    /// Latitude of the region's site, degrees.
    pub lat: f64,
    /// Longitude of the region's site, degrees.
    pub lon: f64,
    /// The region's edge addresses (A and AAAA answers).
    pub addresses: Vec<IpAddr>,
    /// Health endpoints (`http://host:port/healthz`); the region is up while any is up. None:
    /// always up.
    #[serde(default, deserialize_with = "one_or_many")]
    pub health: Vec<String>,
    /// Distance weight: a region of weight 2 is chosen over one of weight 1 up to twice as far.
    #[serde(default = "defaults::weight")]
    pub weight: f64,
    /// ISO country codes sent to this region first, whatever the distance.
    #[serde(default)]
    pub countries: Vec<String>,
    /// Continent codes (EU, NA, SA, AS, AF, OC, AN) sent to this region first.
    #[serde(default)]
    pub continents: Vec<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

mod defaults {
    use super::Dur;
    use std::time::Duration;
    pub fn udp_payload() -> u16 {
        1232
    }
    pub fn tcp_idle() -> Dur {
        Dur(Duration::from_secs(10))
    }
    pub fn interval() -> Dur {
        Dur(Duration::from_secs(5))
    }
    pub fn timeout() -> Dur {
        Dur(Duration::from_secs(2))
    }
    pub fn healthy_after() -> u32 {
        2
    }
    pub fn unhealthy_after() -> u32 {
        2
    }
    pub fn ttl() -> u32 {
        3600
    }
    pub fn negative_ttl() -> u32 {
        300
    }
    pub fn geo_ttl() -> u32 {
        30
    }
    pub fn weight() -> f64 {
        1.0
    }
}

/// Record types a static record may have.
pub const RECORD_TYPES: &[&str] = &["A", "AAAA", "CNAME", "TXT", "MX", "CAA", "NS"];

impl DnsConfig {
    /// Every problem in the section, each with its key path under `prefix` (normally `dns`).
    /// Record data is checked by building the zones (see `Zones::build` in `zone.rs`).
    pub fn validate(&self, prefix: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        if self.listen.is_empty() {
            out.push(problem(
                format!("{prefix}.listen"),
                "at least one address is needed",
            ));
        }
        if self.udp_payload < 512 {
            out.push(problem(
                format!("{prefix}.udp_payload"),
                "must be at least 512 (RFC 1035)",
            ));
        }
        if self.udp_workers == Some(0) {
            out.push(problem(
                format!("{prefix}.udp_workers"),
                "must be at least 1",
            ));
        }
        let h = &self.health;
        if let Some(ca) = &h.ca {
            if let Err(e) = crate::tls::roots(ca) {
                out.push(problem(format!("{prefix}.health.ca"), e));
            }
        }
        if h.interval.0.is_zero() {
            out.push(problem(
                format!("{prefix}.health.interval"),
                "must be above zero",
            ));
        }
        if h.timeout.0.is_zero() {
            out.push(problem(
                format!("{prefix}.health.timeout"),
                "must be above zero",
            ));
        }
        for (key, n) in [
            ("healthy_after", h.healthy_after),
            ("unhealthy_after", h.unhealthy_after),
        ] {
            if n == 0 {
                out.push(problem(
                    format!("{prefix}.health.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if self.zones.is_empty() {
            out.push(problem(
                format!("{prefix}.zones"),
                "no zones: add a [[dns.zones]] section",
            ));
        }
        for (i, z) in self.zones.iter().enumerate() {
            let p = format!("{prefix}.zones[{i}]");
            if z.ns.is_empty() {
                out.push(problem(
                    format!("{p}.ns"),
                    "a zone needs at least one name server",
                ));
            }
            for (j, r) in z.records.iter().enumerate() {
                if !RECORD_TYPES.contains(&r.rtype.to_ascii_uppercase().as_str()) {
                    out.push(problem(
                        format!("{p}.records[{j}].type"),
                        format!(
                            "unsupported record type {:?} (one of {})",
                            r.rtype,
                            RECORD_TYPES.join(", ")
                        ),
                    ));
                }
            }
            for (j, g) in z.geo.iter().enumerate() {
                validate_geo(g, &format!("{p}.geo[{j}]"), &mut out);
            }
        }
        out
    }
}

fn validate_geo(g: &GeoConfig, p: &str, out: &mut Vec<Problem>) {
    if g.regions.is_empty() {
        out.push(problem(
            format!("{p}.regions"),
            "a geo name needs at least one region",
        ));
    }
    if let Some(d) = &g.default {
        if !g.regions.iter().any(|r| &r.name == d) {
            out.push(problem(
                format!("{p}.default"),
                format!("no region is named {d:?}"),
            ));
        }
    }
    for (k, r) in g.regions.iter().enumerate() {
        let rp = format!("{p}.regions[{k}]");
        if !(-90.0..=90.0).contains(&r.lat) {
            out.push(problem(
                format!("{rp}.lat"),
                "latitude must be within -90..90",
            ));
        }
        if !(-180.0..=180.0).contains(&r.lon) {
            out.push(problem(
                format!("{rp}.lon"),
                "longitude must be within -180..180",
            ));
        }
        if r.addresses.is_empty() {
            out.push(problem(
                format!("{rp}.addresses"),
                "a region needs at least one address",
            ));
        }
        if !(r.weight.is_finite() && r.weight > 0.0) {
            out.push(problem(format!("{rp}.weight"), "must be a positive number"));
        }
        for (n, h) in r.health.iter().enumerate() {
            if !(h.starts_with("http://") || h.starts_with("https://"))
                || h.parse::<hyper::Uri>().is_err()
            {
                out.push(problem(
                    format!("{rp}.health[{n}]"),
                    "health endpoints are http:// or https:// URLs",
                ));
            }
        }
        if g.regions[..k].iter().any(|o| o.name == r.name) {
            out.push(problem(
                format!("{rp}.name"),
                format!("region {:?} is named twice", r.name),
            ));
        }
    }
}
