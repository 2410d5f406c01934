//! Zones compiled from config into precomputed answers.
//!
//! Every (name, type) a zone can be asked about is answered by bytes encoded once, at load, with
//! hickory-proto: the records after a question for that name, with names compressed against the
//! question at offset 12. A query only copies them after its own question (see `wire.rs`). Geo
//! names get one answer per region and family, plus the fail-open answer with every region.
//! Names that do not exist share one NXDOMAIN answer per zone whose SOA owner is a pointer into
//! the query's own name, written at query time.
//!
//! Not served: delegations (NS below the apex), wildcards, DNSSEC, zone transfers.

use crate::config::{Problem, ZoneConfig};
use crate::wire::{rcode, Answer};
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder, NameEncoding};
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// Types with an answer of their own at every name (others get the name's default answer).
const TYPED: &[RecordType] = &[
    RecordType::A,
    RecordType::AAAA,
    RecordType::CNAME,
    RecordType::TXT,
    RecordType::MX,
    RecordType::CAA,
    RecordType::NS,
    RecordType::SOA,
    RecordType::ANY,
];

/// Longest CNAME chain followed inside a zone.
const MAX_CHAIN: usize = 8;

/// All zones of a server.
#[derive(Debug, Default)]
pub struct Zones {
    zones: Vec<Zone>,
    by_apex: FxHashMap<Box<[u8]>, usize>,
}

/// One compiled zone.
#[derive(Debug)]
pub struct Zone {
    /// The apex, lower-case wire format.
    pub apex: Box<[u8]>,
    nodes: FxHashMap<Box<[u8]>, Node>,
    /// The NXDOMAIN SOA record without its owner name (the owner is a pointer into the question).
    soa_tail: Box<[u8]>,
}

/// The answers at one name.
#[derive(Debug)]
pub struct Node {
    typed: Vec<(u16, Answer)>,
    other: Answer,
    /// Geo answers for A and AAAA.
    pub geo: Option<GeoAnswers>,
}

/// Answers of a geo name (or of a CNAME chain that ends at one).
#[derive(Debug)]
pub struct GeoAnswers {
    /// Index of the geo name among all geo names of the server (config order).
    pub geo: usize,
    /// Per region: the A and the AAAA answer.
    pub regions: Vec<[Answer; 2]>,
    /// Fail-open: every region's addresses.
    pub all: [Answer; 2],
}

impl Node {
    /// The static answer for `qtype`.
    pub fn answer(&self, qtype: u16) -> &Answer {
        self.typed
            .iter()
            .find(|(t, _)| *t == qtype)
            .map_or(&self.other, |(_, a)| a)
    }
}

/// Where a query name falls.
pub enum Found<'a> {
    /// An existing name.
    Node(&'a Node),
    /// Under a served zone but absent: NXDOMAIN with this zone's SOA.
    Missing(&'a Zone),
    /// Not under any zone served here.
    NotOurs,
}

impl Zones {
    /// Finds `name` (lower-case wire format) in the most specific zone containing it.
    pub fn find(&self, name: &[u8]) -> Found<'_> {
        let mut at = 0;
        while at < name.len() {
            if let Some(z) = self.by_apex.get(&name[at..]) {
                let zone = &self.zones[*z];
                return match zone.nodes.get(name) {
                    Some(n) => Found::Node(n),
                    None => Found::Missing(zone),
                };
            }
            if name[at] == 0 {
                break;
            }
            at += 1 + name[at] as usize;
        }
        Found::NotOurs
    }

    /// Compiles zones. `geo_regions[i]` lists the region names of the i-th geo name, counting
    /// geo names across zones in config order. Errors name their config key (under `prefix`).
    pub fn build(
        zones: &[ZoneConfig],
        prefix: &str,
        serial_default: u32,
    ) -> Result<Zones, Vec<Problem>> {
        let mut out = Zones::default();
        let mut problems = Vec::new();
        let mut geo_base = 0;
        for (i, zc) in zones.iter().enumerate() {
            let p = format!("{prefix}.zones[{i}]");
            match build_zone(zc, &p, geo_base, serial_default) {
                Ok(z) => {
                    if out.by_apex.contains_key(&z.apex) {
                        problems.push(problem(format!("{p}.name"), "zone is configured twice"));
                    }
                    out.by_apex.insert(z.apex.clone(), out.zones.len());
                    out.zones.push(z);
                }
                Err(mut e) => problems.append(&mut e),
            }
            geo_base += zc.geo.len();
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}

impl Zone {
    /// The NXDOMAIN answer for a query name of `name_len` bytes under this zone.
    pub fn nxdomain(&self, name_len: usize) -> Answer {
        let at = 12 + name_len - self.apex.len();
        let mut bytes = Vec::with_capacity(2 + self.soa_tail.len());
        bytes.extend_from_slice(&(0xC000u16 | at as u16).to_be_bytes());
        bytes.extend_from_slice(&self.soa_tail);
        Answer {
            rcode: rcode::NXDOMAIN,
            counts: [0, 1, 0],
            bytes: bytes.into(),
        }
    }
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem::new(path, message)
}

pub(crate) fn wire(name: &Name) -> Box<[u8]> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::UncompressedLowercase);
    // Encoding a valid Name into a Vec cannot fail.
    let _ = name.emit(&mut enc);
    buf.into()
}

/// A name from config: relative to `apex` unless it ends in a dot; `@` is the apex.
fn name_in(apex: &Name, s: &str) -> Result<Name, String> {
    if s == "@" || s.is_empty() {
        return Ok(apex.clone());
    }
    let n = Name::from_ascii(s).map_err(|e| format!("bad name {s:?}: {e}"))?;
    let n = if s.ends_with('.') {
        n
    } else {
        n.append_domain(apex)
            .map_err(|e| format!("bad name {s:?}: {e}"))?
    };
    Ok(n.to_lowercase())
}

struct Builder {
    apex: Name,
    nodes: BTreeMap<Name, (Vec<Record>, Option<usize>)>,
}

fn build_zone(
    zc: &ZoneConfig,
    p: &str,
    geo_base: usize,
    serial_default: u32,
) -> Result<Zone, Vec<Problem>> {
    let mut problems = Vec::new();
    let apex = match Name::from_ascii(zc.name.trim_end_matches('.')) {
        Ok(n) if !n.is_root() => {
            let mut n = n.to_lowercase();
            n.set_fqdn(true);
            n
        }
        Ok(_) => {
            return Err(vec![problem(
                format!("{p}.name"),
                "the root zone is not served",
            )])
        }
        Err(e) => {
            return Err(vec![problem(
                format!("{p}.name"),
                format!("bad zone name: {e}"),
            )])
        }
    };
    let mut b = Builder {
        apex: apex.clone(),
        nodes: BTreeMap::new(),
    };
    b.nodes.insert(apex.clone(), (Vec::new(), None));
    let mut ns_names = Vec::new();
    for (k, ns) in zc.ns.iter().enumerate() {
        match name_in(&apex, ns) {
            Ok(n) => {
                ns_names.push(n.clone());
                b.add(Record::from_rdata(apex.clone(), zc.ttl, RData::NS(NS(n))));
            }
            Err(e) => problems.push(problem(format!("{p}.ns[{k}]"), e)),
        }
    }
    let rname = match &zc.hostmaster {
        Some(h) => name_in(&apex, h),
        None => name_in(&apex, "hostmaster"),
    };
    let rname = rname.unwrap_or_else(|e| {
        problems.push(problem(format!("{p}.hostmaster"), e));
        apex.clone()
    });
    let soa = Record::from_rdata(
        apex.clone(),
        zc.ttl,
        RData::SOA(SOA::new(
            ns_names.first().cloned().unwrap_or_else(|| apex.clone()),
            rname,
            zc.serial.unwrap_or(serial_default),
            7200,
            1800,
            1_209_600,
            zc.negative_ttl,
        )),
    );
    b.add(soa.clone());
    for (k, rc) in zc.records.iter().enumerate() {
        let rp = format!("{p}.records[{k}]");
        let owner = match name_in(&apex, &rc.name) {
            Ok(n) if apex.zone_of(&n) => n,
            Ok(_) => {
                problems.push(problem(format!("{rp}.name"), "name is outside the zone"));
                continue;
            }
            Err(e) => {
                problems.push(problem(format!("{rp}.name"), e));
                continue;
            }
        };
        match rdata(&apex, &rc.rtype, &rc.value) {
            Ok(rd) => {
                if matches!(rd, RData::NS(_)) && owner != apex {
                    problems.push(problem(
                        format!("{rp}.type"),
                        "NS records below the apex (delegations) are not supported",
                    ));
                    continue;
                }
                b.add(Record::from_rdata(owner, rc.ttl.unwrap_or(zc.ttl), rd));
            }
            Err(e) => problems.push(problem(format!("{rp}.value"), e)),
        }
    }
    let mut geo_names = Vec::new();
    for (k, g) in zc.geo.iter().enumerate() {
        match name_in(&apex, &g.name) {
            Ok(n) if apex.zone_of(&n) => {
                let entry = b.nodes.entry(n.clone()).or_default();
                if entry.1.is_some() {
                    problems.push(problem(
                        format!("{p}.geo[{k}].name"),
                        "geo name is configured twice",
                    ));
                }
                entry.1 = Some(geo_base + k);
                geo_names.push((n, k));
            }
            Ok(_) => problems.push(problem(
                format!("{p}.geo[{k}].name"),
                "name is outside the zone",
            )),
            Err(e) => problems.push(problem(format!("{p}.geo[{k}].name"), e)),
        }
    }
    // RFC 1034 section 3.6.2: a CNAME is alone at its name.
    for (name, (records, geo)) in &b.nodes {
        let cnames = records
            .iter()
            .filter(|r| r.record_type() == RecordType::CNAME)
            .count();
        if cnames > 1 || (cnames == 1 && (records.len() > 1 || geo.is_some())) {
            problems.push(problem(
                format!("{p}.records"),
                format!("{name} has a CNAME and other data; a CNAME must be alone at its name"),
            ));
        }
        if geo.is_some()
            && records
                .iter()
                .any(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        {
            problems.push(problem(
                format!("{p}.geo"),
                format!("{name} is a geo name and also has static A/AAAA records"),
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    // Empty non-terminals exist (NODATA, not NXDOMAIN): add every ancestor up to the apex.
    let names: Vec<Name> = b.nodes.keys().cloned().collect();
    for n in names {
        let mut cur = n.base_name();
        while apex.zone_of(&cur) && cur != apex {
            b.nodes.entry(cur.clone()).or_default();
            cur = cur.base_name();
        }
    }
    let geo_cfg: HashMap<usize, &crate::config::GeoConfig> = geo_names
        .iter()
        .map(|(_, k)| (geo_base + k, &zc.geo[*k]))
        .collect();
    let neg_soa = {
        let mut s = soa.clone();
        s.ttl = zc.ttl.min(zc.negative_ttl);
        s
    };
    let mut nodes = FxHashMap::default();
    for name in b.nodes.keys() {
        let node = b.compile(name, &neg_soa, &geo_cfg, &ns_names);
        nodes.insert(wire(name), node);
    }
    Ok(Zone {
        apex: wire(&apex),
        nodes,
        soa_tail: soa_tail(&neg_soa),
    })
}

/// The SOA record's bytes after its owner name, names uncompressed.
fn soa_tail(soa: &Record) -> Box<[u8]> {
    let mut buf = Vec::new();
    let mut enc = BinEncoder::new(&mut buf);
    enc.set_name_encoding(NameEncoding::Uncompressed);
    let _ = soa.emit(&mut enc);
    let owner = wire(&soa.name).len();
    buf[owner..].into()
}

fn rdata(apex: &Name, rtype: &str, value: &str) -> Result<RData, String> {
    let v = value.trim();
    match rtype.to_ascii_uppercase().as_str() {
        "A" => match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => Ok(RData::A(A(a))),
            _ => Err(format!("{v:?} is not an IPv4 address")),
        },
        "AAAA" => match v.parse::<IpAddr>() {
            Ok(IpAddr::V6(a)) => Ok(RData::AAAA(AAAA(a))),
            _ => Err(format!("{v:?} is not an IPv6 address")),
        },
        "CNAME" => Ok(RData::CNAME(CNAME(name_in(apex, v)?))),
        "NS" => Ok(RData::NS(NS(name_in(apex, v)?))),
        "MX" => {
            let (pref, host) = v
                .split_once(char::is_whitespace)
                .ok_or("MX is \"PREFERENCE HOST\", e.g. \"10 mail\"")?;
            let pref: u16 = pref
                .parse()
                .map_err(|_| format!("MX preference {pref:?} is not a number 0..65535"))?;
            Ok(RData::MX(MX::new(pref, name_in(apex, host.trim())?)))
        }
        "TXT" => {
            // One string per 255 bytes (RFC 1035 section 3.3.14).
            let chunks = v
                .as_bytes()
                .chunks(255)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>();
            Ok(RData::TXT(TXT::new(if chunks.is_empty() {
                vec![String::new()]
            } else {
                chunks
            })))
        }
        "CAA" => RData::try_from_str(RecordType::CAA, v)
            .map_err(|e| format!("bad CAA value (want e.g. 0 issue \"letsencrypt.org\"): {e}")),
        other => Err(format!("unsupported record type {other}")),
    }
}

enum Terminal {
    Records(Vec<Record>),
    Geo(usize),
}

impl Builder {
    fn add(&mut self, r: Record) {
        self.nodes.entry(r.name.clone()).or_default().0.push(r);
    }

    fn records(&self, name: &Name, t: RecordType) -> Vec<Record> {
        self.nodes
            .get(name)
            .map(|(rs, _)| {
                rs.iter()
                    .filter(|r| r.record_type() == t)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The CNAME chain from `name` for `qtype`, and what it ends at.
    fn resolve(&self, name: &Name, qtype: RecordType) -> (Vec<Record>, Terminal) {
        let mut chain = Vec::new();
        let mut cur = name.clone();
        for _ in 0..MAX_CHAIN {
            let Some((records, geo)) = self.nodes.get(&cur) else {
                break;
            };
            let cname = records
                .iter()
                .find(|r| r.record_type() == RecordType::CNAME);
            match (cname, qtype) {
                (Some(c), t) if t != RecordType::CNAME => {
                    chain.push(c.clone());
                    match &c.data {
                        RData::CNAME(CNAME(target)) if self.apex.zone_of(target) => {
                            cur = target.clone();
                            continue;
                        }
                        _ => return (chain, Terminal::Records(Vec::new())),
                    }
                }
                _ => {}
            }
            if let (Some(g), RecordType::A | RecordType::AAAA) = (geo, qtype) {
                return (chain, Terminal::Geo(*g));
            }
            return (chain, Terminal::Records(self.records(&cur, qtype)));
        }
        (chain, Terminal::Records(Vec::new()))
    }

    fn compile(
        &self,
        name: &Name,
        neg_soa: &Record,
        geo_cfg: &HashMap<usize, &crate::config::GeoConfig>,
        ns_names: &[Name],
    ) -> Node {
        let nodata = |chain: Vec<Record>| -> Answer {
            if chain.is_empty() {
                encode(
                    name,
                    RecordType::A,
                    rcode::NOERROR,
                    &[],
                    std::slice::from_ref(neg_soa),
                    &[],
                )
            } else {
                encode(name, RecordType::A, rcode::NOERROR, &chain, &[], &[])
            }
        };
        let mut typed = Vec::new();
        let mut geo = None;
        for &t in TYPED {
            if t == RecordType::ANY {
                // RFC 8482 section 4.2: a minimal answer to ANY.
                let hinfo = Record::from_rdata(
                    name.clone(),
                    neg_soa.ttl,
                    RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
                );
                typed.push((
                    u16::from(t),
                    encode(name, t, rcode::NOERROR, &[hinfo], &[], &[]),
                ));
                continue;
            }
            let (chain, term) = self.resolve(name, t);
            match term {
                Terminal::Records(rs) => {
                    let mut answers = chain;
                    answers.extend(rs);
                    let ans = if answers.is_empty() {
                        nodata(Vec::new())
                    } else {
                        let glue = if t == RecordType::NS && name == &self.apex {
                            ns_names
                                .iter()
                                .flat_map(|n| {
                                    let mut g = self.records(n, RecordType::A);
                                    g.extend(self.records(n, RecordType::AAAA));
                                    g
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        encode(name, t, rcode::NOERROR, &answers, &[], &glue)
                    };
                    typed.push((u16::from(t), ans));
                }
                Terminal::Geo(g) => {
                    let Some(cfg) = geo_cfg.get(&g) else {
                        typed.push((u16::from(t), nodata(chain)));
                        continue;
                    };
                    let ga = geo.get_or_insert_with(|| GeoAnswers {
                        geo: g,
                        regions: (0..cfg.regions.len()).map(|_| Default::default()).collect(),
                        all: Default::default(),
                    });
                    let fam = usize::from(t == RecordType::AAAA);
                    let addr_records = |addrs: &mut dyn Iterator<Item = &IpAddr>| -> Vec<Record> {
                        let mut out = chain.clone();
                        let owner = chain
                            .last()
                            .and_then(|c| match &c.data {
                                RData::CNAME(CNAME(n)) => Some(n.clone()),
                                _ => None,
                            })
                            .unwrap_or_else(|| name.clone());
                        let mut seen = Vec::new();
                        for a in addrs {
                            if seen.contains(a) {
                                continue;
                            }
                            seen.push(*a);
                            let rd = match (a, fam) {
                                (IpAddr::V4(v4), 0) => RData::A(A(*v4)),
                                (IpAddr::V6(v6), 1) => RData::AAAA(AAAA(*v6)),
                                _ => continue,
                            };
                            out.push(Record::from_rdata(owner.clone(), cfg.ttl, rd));
                        }
                        out
                    };
                    for (r, region) in cfg.regions.iter().enumerate() {
                        let rs = addr_records(&mut region.addresses.iter());
                        ga.regions[r][fam] = if rs.is_empty() {
                            nodata(Vec::new())
                        } else {
                            encode(name, t, rcode::NOERROR, &rs, &[], &[])
                        };
                    }
                    let rs = addr_records(&mut cfg.regions.iter().flat_map(|r| r.addresses.iter()));
                    ga.all[fam] = if rs.is_empty() {
                        nodata(Vec::new())
                    } else {
                        encode(name, t, rcode::NOERROR, &rs, &[], &[])
                    };
                    // The static entry is what an unhealthy-everything fallback would not need;
                    // keep the typed list free of A/AAAA so the geo path is taken.
                }
            }
        }
        // Any other type: the CNAME chain if this is an alias, else NODATA.
        let (chain, _) = self.resolve(name, RecordType::Unknown(65280));
        Node {
            typed,
            other: nodata(chain),
            geo,
        }
    }
}

/// Encodes the sections after a question for `name`, with names compressed against it.
pub(crate) fn encode(
    name: &Name,
    qtype: RecordType,
    rcode: u16,
    answers: &[Record],
    authorities: &[Record],
    additionals: &[Record],
) -> Answer {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.add_query(Query::query(name.clone(), qtype));
    m.add_answers(answers.iter().cloned());
    m.add_authorities(authorities.iter().cloned());
    m.add_additionals(additionals.iter().cloned());
    let bytes = match m.to_vec() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, name = %name, "cannot encode an answer; serving SERVFAIL for it");
            return Answer {
                rcode: rcode::SERVFAIL,
                counts: [0; 3],
                bytes: Box::new([]),
            };
        }
    };
    let qend = 12 + wire(name).len() + 4;
    let count = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    Answer {
        rcode,
        counts: [count(6), count(8), count(10)],
        bytes: bytes[qend..].into(),
    }
}
