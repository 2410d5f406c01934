//! From a query packet to a response: the catalog (zones, geo routing, health) and the one
//! function both transports call.
//!
//! Order of checks: parse (drop or FORMERR/NOTIMP), EDNS version (BADVERS), class and transfer
//! types (REFUSED), zone lookup (REFUSED outside our zones, NXDOMAIN under them), then the
//! precomputed answer; for geo names, the client's ranking from the ECS subnet or the source
//! address and the first healthy region in it.

use crate::config::{DnsConfig, Problem};
use crate::geo::{build_without_db, GeoDb, GeoIndex};
use crate::health::{Endpoint, HealthBoard};
use crate::stats::Stats;
use crate::wire::{self, rcode, Answer, Reject, Reply};
use crate::zone::{Found, Zones};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Everything needed to answer: built off the query path, swapped in whole on reload.
pub struct Catalog {
    zones: Zones,
    geo: Vec<GeoRouting>,
    udp_payload: u16,
    /// DNS-01 challenge records, shared by every catalog of the server (they outlive reloads).
    acme: Arc<crate::acme_txt::AcmeTxt>,
}

/// One geo name's routing and the live state of its regions.
pub struct GeoRouting {
    /// The owner name (for metrics).
    pub name: String,
    index: GeoIndex,
    regions: Vec<RegionLive>,
}

struct RegionLive {
    health: Vec<Arc<Endpoint>>,
    answered: Arc<AtomicU64>,
}

impl RegionLive {
    fn is_up(&self) -> bool {
        self.health.is_empty() || self.health.iter().any(|e| e.is_up())
    }
}

/// Where a response goes, which bounds its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// UDP: 512 bytes without EDNS, else the smaller of the client's and our payload size.
    Udp,
    /// TCP: up to 65,535 bytes.
    Tcp,
}

impl Catalog {
    /// A catalog with no zones: refuses everything.
    pub fn empty() -> Catalog {
        Catalog {
            zones: Zones::default(),
            geo: Vec::new(),
            udp_payload: 1232,
            acme: Arc::default(),
        }
    }

    /// Compiles zones and geo routing (walking the GeoIP database: seconds for a full City
    /// database, so call it off the query path), and registers health endpoints and counters.
    /// Must run inside a tokio runtime (health probes are tasks).
    pub fn build(
        cfg: &DnsConfig,
        db: Option<&GeoDb>,
        board: &HealthBoard,
        stats: &Stats,
        acme: &Arc<crate::acme_txt::AcmeTxt>,
    ) -> Result<Catalog, Vec<Problem>> {
        Self::compile(cfg, board, stats, acme, |configs| match db {
            Some(db) => db
                .build(configs)
                .map_err(|e| vec![Problem::new("dns.geoip_db", e)]),
            None => Ok(build_without_db(configs)),
        })
    }

    /// Like [`Catalog::build`], but the geo routing looks each client up in `db` per query
    /// instead of walking it first: ready in milliseconds, for serving while `build` walks.
    pub fn build_direct(
        cfg: &DnsConfig,
        db: &Arc<GeoDb>,
        board: &HealthBoard,
        stats: &Stats,
        acme: &Arc<crate::acme_txt::AcmeTxt>,
    ) -> Result<Catalog, Vec<Problem>> {
        Self::compile(cfg, board, stats, acme, |configs| Ok(db.direct(configs)))
    }

    /// Whether any geo name still looks clients up in the database per query.
    pub fn is_direct(&self) -> bool {
        self.geo.iter().any(|g| g.index.is_direct())
    }

    fn compile(
        cfg: &DnsConfig,
        board: &HealthBoard,
        stats: &Stats,
        acme: &Arc<crate::acme_txt::AcmeTxt>,
        routing: impl FnOnce(&[&crate::config::GeoConfig]) -> Result<Vec<GeoIndex>, Vec<Problem>>,
    ) -> Result<Catalog, Vec<Problem>> {
        let problems = cfg.validate("dns");
        if !problems.is_empty() {
            return Err(problems);
        }
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        let zones = Zones::build(&cfg.zones, "dns", serial)?;
        let geos: Vec<(&crate::config::ZoneConfig, &crate::config::GeoConfig)> = cfg
            .zones
            .iter()
            .flat_map(|z| z.geo.iter().map(move |g| (z, g)))
            .collect();
        let configs: Vec<&crate::config::GeoConfig> = geos.iter().map(|(_, g)| *g).collect();
        let indexes = routing(&configs)?;
        let geo = geos
            .iter()
            .zip(indexes)
            .map(|((z, g), index)| {
                let name = format!(
                    "{}.{}",
                    g.name.trim_end_matches('.'),
                    z.name.trim_end_matches('.')
                );
                let regions = g
                    .regions
                    .iter()
                    .map(|r| RegionLive {
                        health: r
                            .health
                            .iter()
                            .map(|u| board.endpoint(u, &cfg.health))
                            .collect(),
                        answered: stats.region_counter(&name, &r.name),
                    })
                    .collect();
                GeoRouting {
                    name,
                    index,
                    regions,
                }
            })
            .collect();
        Ok(Catalog {
            zones,
            geo,
            udp_payload: cfg.udp_payload,
            acme: acme.clone(),
        })
    }

    /// Health URLs this catalog uses (to stop probing the others after a reload).
    pub fn health_urls(&self) -> Vec<String> {
        self.geo
            .iter()
            .flat_map(|g| g.regions.iter())
            .flat_map(|r| r.health.iter().map(|e| e.url.clone()))
            .collect()
    }

    /// The geo names, for inspection.
    pub fn geo(&self) -> &[GeoRouting] {
        &self.geo
    }

    /// Answers `packet` from `src` into `out`. Returns false when nothing must be sent.
    pub fn respond(
        &self,
        packet: &[u8],
        src: IpAddr,
        transport: Transport,
        stats: &Stats,
        out: &mut Vec<u8>,
    ) -> bool {
        let q = match wire::parse(packet) {
            Ok(q) => q,
            Err(Reject::Drop) => {
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Err(Reject::Error {
                rcode,
                question_end,
            }) => {
                let reply = Reply {
                    packet,
                    question_end,
                    rd: packet[2] & 1 != 0,
                    cd: false,
                    aa: false,
                    edns: false,
                    ecs: None,
                    limit: 512,
                };
                stats.rcode(rcode);
                wire::write(
                    out,
                    &reply,
                    &Answer {
                        rcode,
                        ..Answer::default()
                    },
                );
                return true;
            }
        };
        let limit = match (transport, &q.edns) {
            (Transport::Tcp, _) => 65535,
            (Transport::Udp, None) => 512,
            (Transport::Udp, Some(e)) => e.payload.clamp(512, self.udp_payload) as usize,
        };
        let mut reply = Reply {
            packet,
            question_end: q.question_end,
            rd: q.rd,
            cd: q.cd,
            aa: false,
            edns: q.edns.is_some(),
            ecs: None,
            limit,
        };
        let ecs = q.edns.and_then(|e| e.ecs);
        if ecs.is_some() {
            stats.ecs.fetch_add(1, Ordering::Relaxed);
        }
        let refuse = |rcode: u16, reply: &Reply<'_>, out: &mut Vec<u8>| {
            stats.rcode(rcode);
            wire::write(
                out,
                reply,
                &Answer {
                    rcode,
                    ..Answer::default()
                },
            );
            true
        };
        if q.edns.is_some_and(|e| e.version != 0) {
            return refuse(rcode::BADVERS, &reply, out);
        }
        // Class IN only; no zone transfers; OPT is not a question.
        match (q.qclass, q.qtype) {
            (1, 251 | 252) | (2..=65535, _) | (0, _) => return refuse(rcode::REFUSED, &reply, out),
            (_, 41) => return refuse(rcode::FORMERR, &reply, out),
            _ => {}
        }
        let owned;
        let found = self.zones.find(q.name());
        let challenge = match (&found, q.qtype) {
            (Found::NotOurs, _) => None,
            (_, 16) => self.acme.answer(q.name()),
            _ => None,
        };
        let answer: &Answer = match found {
            _ if challenge.is_some() => {
                owned = challenge.unwrap_or_default();
                &owned
            }
            Found::NotOurs => return refuse(rcode::REFUSED, &reply, out),
            Found::Missing(zone) => {
                owned = zone.nxdomain(q.name_len);
                &owned
            }
            Found::Node(node) => match (&node.geo, q.qtype) {
                (Some(ga), 1 | 28) => {
                    let fam = usize::from(q.qtype == 28);
                    let routing = &self.geo[ga.geo];
                    let client = match ecs {
                        Some(e) if e.source > 0 => e.addr,
                        _ => src,
                    };
                    let (ranking, scope) = routing.index.rank(client);
                    reply.ecs = ecs.map(|e| (e, if e.source > 0 { scope } else { 0 }));
                    match ranking
                        .iter()
                        .find(|r| routing.regions[**r as usize].is_up())
                    {
                        Some(r) => {
                            routing.regions[*r as usize]
                                .answered
                                .fetch_add(1, Ordering::Relaxed);
                            &ga.regions[*r as usize][fam]
                        }
                        None => {
                            stats.fail_open.fetch_add(1, Ordering::Relaxed);
                            &ga.all[fam]
                        }
                    }
                }
                _ => node.answer(q.qtype),
            },
        };
        reply.aa = true;
        // Answers that do not depend on the client are good for every subnet: scope 0.
        if reply.ecs.is_none() {
            reply.ecs = ecs.map(|e| (e, 0));
        }
        stats.rcode(answer.rcode);
        if wire::write(out, &reply, answer) {
            stats.truncated.fetch_add(1, Ordering::Relaxed);
        }
        true
    }
}
