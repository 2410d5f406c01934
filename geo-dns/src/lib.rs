//! Authoritative DNS with geo routing and health-checked failover: the `[dns]` role.
//!
//! An operator points a domain's NS records at Outpost nodes; each lookup of a geo name (say
//! `cdn.example.com`) answers with the edge addresses of the nearest region that is up.
//!
//! - [`config`]: the `[dns]` section and its validation.
//! - [`wire`]: the allocation-free query parser and response writer.
//! - `zone`: zones compiled into precomputed answers (encoded with hickory-proto).
//! - [`geo`] and `prefix_tree`: client location to region ranking, with the ECS scope.
//! - [`health`]: HTTP probes of each region's `/healthz`.
//! - [`answer`]: the catalog and the query-to-response function.
//! - [`server`]: UDP threads (batched in `udp.rs`), TCP tasks, atomic reload.
//! - [`stats`]: the counters, read by the instruments in `telemetry.rs` (`outpost.dns.*`).
//! - [`sample_db`]: a small City database for the demo and tests.
//!
//! See shared/DESIGN.md, "Geo-DNS", and docs/dns.md.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// A dependency no code of the crate uses is an error (checked where dev-dependencies are absent).
#![cfg_attr(not(test), warn(unused_crate_dependencies))]

pub mod acme_txt;
pub mod answer;
pub mod config;
pub mod geo;
pub mod health;
pub(crate) mod prefix_tree;
pub mod sample_db;
pub mod server;
pub mod stats;
mod telemetry;
mod tls;
mod udp;
pub mod wire;
pub(crate) mod zone;

pub use config::DnsConfig;
pub use server::{DnsHandle, DnsServer};

/// Every problem `cfg` has, as `outpost check-config` reports them: the keys, the record data
/// (by compiling the zones) and the GeoIP database (by opening it).
pub fn check_config(cfg: &DnsConfig) -> Vec<config::Problem> {
    let mut problems = cfg.validate("dns");
    if problems.is_empty() {
        if let Err(mut p) = zone::Zones::build(&cfg.zones, "dns", 1) {
            problems.append(&mut p);
        }
    }
    if let Some(path) = &cfg.geoip_db {
        if let Err(e) = geo::GeoDb::open(path) {
            problems.push(config::Problem::new("dns.geoip_db", e));
        }
    }
    problems
}
