//! Geo routing: from a client address to a ranking of regions, precomputed for every network of
//! the GeoIP database.
//!
//! At load time the database is walked once. Each distinct location (a data record of the
//! database) is ranked once per geo name: regions whose `countries` or `continents` name the
//! client come first, the rest follow by great-circle distance divided by the region's weight.
//! A location without coordinates ranks the configured default region first. The rankings are
//! interned, and each network's ranking id goes into a `PrefixTree` (`prefix_tree.rs`) that is then merged, so a
//! query costs one tree walk and the ECS scope is the widest prefix with the same answer.
//! Health is applied at query time by taking the first healthy region of the ranking, so health
//! changes never rebuild anything.
//!
//! The walk takes seconds for a full City database. Until it is done a server answers from a
//! direct index ([`GeoDb::direct`]): each query looks its client up in the database and ranks
//! that location on the spot (a few microseconds more per query), with the database's own
//! network as the ECS scope (narrower than the merged trees give, never wrong).

use crate::config::GeoConfig;
use crate::prefix_tree::{v4_key, v6_key, PrefixTree};
use maxminddb::{Reader, WithinOptions};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Where a client is, as far as the database knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// Latitude and longitude in degrees.
    pub coords: Option<(f64, f64)>,
    /// ISO 3166 country code, upper case.
    pub country: Option<String>,
    /// Continent code (EU, NA, ...), upper case.
    pub continent: Option<String>,
}

/// What geo routing needs of a region.
#[derive(Debug, Clone)]
struct RegionSite {
    lat: f64,
    lon: f64,
    weight: f64,
    countries: Vec<String>,
    continents: Vec<String>,
}

/// The routing of one geo name: client addresses to region rankings.
#[derive(Clone)]
pub struct GeoIndex(Index);

#[derive(Clone)]
enum Index {
    /// Every network of the database, walked and merged into trees (`GeoDb::build`).
    Trees {
        v4: PrefixTree,
        v6: PrefixTree,
        rankings: Vec<Box<[u16]>>,
    },
    /// The database itself, looked up per query while the trees are built (`GeoDb::direct`).
    Direct {
        db: Arc<GeoDb>,
        sites: Vec<RegionSite>,
        default: u16,
        /// The ranking for clients the database does not place.
        unknown: Box<[u16]>,
    },
}

impl std::fmt::Debug for GeoIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Index::Trees { rankings, .. } => f
                .debug_struct("GeoIndex")
                .field("nodes", &self.node_count())
                .field("rankings", &rankings.len())
                .finish(),
            Index::Direct { sites, .. } => f
                .debug_struct("GeoIndex")
                .field("direct", &true)
                .field("regions", &sites.len())
                .finish(),
        }
    }
}

impl GeoIndex {
    /// The region ranking for a client (network `addr` of `source` bits; the full address when no
    /// ECS was sent), and the scope prefix length over which that ranking holds.
    pub fn rank(&self, addr: IpAddr) -> (Cow<'_, [u16]>, u8) {
        let addr = match addr {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(addr, IpAddr::V4),
            v4 => v4,
        };
        match &self.0 {
            Index::Trees { v4, v6, rankings } => {
                let (id, scope) = match addr {
                    IpAddr::V4(a) => v4.lookup(v4_key(a)),
                    IpAddr::V6(a) => v6.lookup(v6_key(a)),
                };
                (Cow::Borrowed(&rankings[id as usize][..]), scope)
            }
            Index::Direct {
                db,
                sites,
                default,
                unknown,
            } => {
                let Ok(found) = db.reader.lookup(addr) else {
                    return (Cow::Borrowed(&unknown[..]), 0);
                };
                let scope = found.network().map_or(0, |n| n.prefix());
                let loc = found
                    .decode::<CityRecord>()
                    .ok()
                    .flatten()
                    .map(location_of)
                    .unwrap_or_default();
                (Cow::Owned(rank(sites, *default, &loc).into_vec()), scope)
            }
        }
    }

    /// Interior nodes of both trees (memory is 8 bytes each); 0 for a direct index.
    pub fn node_count(&self) -> usize {
        match &self.0 {
            Index::Trees { v4, v6, .. } => v4.node_count() + v6.node_count(),
            Index::Direct { .. } => 0,
        }
    }

    /// Whether this index looks clients up in the database per query (the walk is not done).
    pub fn is_direct(&self) -> bool {
        matches!(self.0, Index::Direct { .. })
    }
}

/// The fields of a GeoLite2/GeoIP2/DB-IP City record that routing uses.
#[derive(Deserialize)]
struct CityRecord {
    location: Option<LocationRecord>,
    country: Option<CodeRecord>,
    registered_country: Option<CodeRecord>,
    continent: Option<ContinentRecord>,
}

#[derive(Deserialize)]
struct LocationRecord {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize)]
struct CodeRecord {
    iso_code: Option<String>,
}

#[derive(Deserialize)]
struct ContinentRecord {
    code: Option<String>,
}

/// An opened GeoIP database.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

impl GeoDb {
    /// Opens and verifies the header of a MaxMind-format database.
    pub fn open(path: &Path) -> Result<Self, String> {
        if !path.exists() {
            return Err(format!(
                "GeoIP database {} does not exist (a GeoLite2-City or DB-IP City Lite .mmdb)",
                path.display()
            ));
        }
        let reader = Reader::open_readfile(path)
            .map_err(|e| format!("cannot open GeoIP database {}: {e}", path.display()))?;
        Ok(Self { reader })
    }

    /// What the database is and when it was built: `GeoLite2-City, built 2026-11-28`.
    pub fn describe(&self) -> String {
        let m = self.reader.metadata();
        let built = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m.build_epoch);
        let date = humantime::format_rfc3339_seconds(built).to_string();
        format!(
            "{}, built {}",
            m.database_type,
            date.get(..10).unwrap_or(&date)
        )
    }

    /// Where the database puts `ip`.
    pub fn locate(&self, ip: IpAddr) -> Location {
        self.reader
            .lookup(ip)
            .ok()
            .and_then(|r| r.decode::<CityRecord>().ok().flatten())
            .map(location_of)
            .unwrap_or_default()
    }

    /// Routing for every geo config that looks each client up in this database per query:
    /// ready at once, for serving while [`GeoDb::build`] walks the database.
    pub fn direct(self: &Arc<Self>, geos: &[&GeoConfig]) -> Vec<GeoIndex> {
        geos.iter()
            .map(|g| {
                let (sites, default) = sites_of(g);
                let unknown = rank(&sites, default, &Location::default());
                GeoIndex(Index::Direct {
                    db: self.clone(),
                    sites,
                    default,
                    unknown,
                })
            })
            .collect()
    }

    /// Builds the routing of every geo config in one walk over the database.
    pub fn build(&self, geos: &[&GeoConfig]) -> Result<Vec<GeoIndex>, String> {
        let mut builders: Vec<Builder> = geos.iter().map(|g| Builder::new(g)).collect();
        let v6_db = self.reader.metadata().ip_version == 6;
        let networks = self
            .reader
            .networks(WithinOptions::default())
            .map_err(|e| format!("GeoIP database: {e}"))?;
        // Many networks share one data record: decode each record and rank it once.
        let mut by_offset: HashMap<usize, Vec<u32>> = HashMap::new();
        for item in networks {
            let item = item.map_err(|e| format!("GeoIP database: {e}"))?;
            let Some(offset) = item.offset() else {
                continue;
            };
            let net = item.network().map_err(|e| format!("GeoIP database: {e}"))?;
            let ids = match by_offset.get(&offset) {
                Some(ids) => ids,
                None => {
                    let loc = item
                        .decode::<CityRecord>()
                        .map_err(|e| format!("GeoIP database: {e}"))?
                        .map(location_of)
                        .unwrap_or_default();
                    let ids = builders.iter_mut().map(|b| b.ranking_id(&loc)).collect();
                    by_offset.entry(offset).or_insert(ids)
                }
            };
            match net {
                ipnetwork::IpNetwork::V4(n) => {
                    for (b, id) in builders.iter_mut().zip(ids) {
                        b.v4.insert(v4_key(n.network()), n.prefix(), *id);
                    }
                }
                ipnetwork::IpNetwork::V6(n) => {
                    let key = v6_key(n.network());
                    // In an IPv6 database, IPv4 lives at ::/96.
                    let is_v4 = v6_db && n.prefix() >= 96 && key >> 32 == 0;
                    for (b, id) in builders.iter_mut().zip(ids) {
                        if is_v4 {
                            b.v4.insert(key << 96, n.prefix() - 96, *id);
                        } else {
                            b.v6.insert(key, n.prefix(), *id);
                        }
                    }
                }
            }
        }
        Ok(builders.into_iter().map(Builder::finish).collect())
    }
}

/// Routing without a database: every client is unknown and gets the default ranking.
pub fn build_without_db(geos: &[&GeoConfig]) -> Vec<GeoIndex> {
    geos.iter()
        .map(|g| Builder::new(g).finish())
        .collect::<Vec<_>>()
}

fn location_of(r: CityRecord) -> Location {
    let coords = r
        .location
        .and_then(|l| Some((l.latitude?, l.longitude?)))
        .filter(|(la, lo)| la.is_finite() && lo.is_finite());
    let country = r
        .country
        .and_then(|c| c.iso_code)
        .or_else(|| r.registered_country.and_then(|c| c.iso_code))
        .map(|s| s.to_ascii_uppercase());
    Location {
        coords,
        country,
        continent: r
            .continent
            .and_then(|c| c.code)
            .map(|s| s.to_ascii_uppercase()),
    }
}

/// A geo config's regions as routing sees them, and the index of its default region.
fn sites_of(g: &GeoConfig) -> (Vec<RegionSite>, u16) {
    let sites = g
        .regions
        .iter()
        .map(|r| RegionSite {
            lat: r.lat,
            lon: r.lon,
            weight: r.weight,
            countries: r.countries.iter().map(|c| c.to_ascii_uppercase()).collect(),
            continents: r
                .continents
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        })
        .collect();
    let default = g
        .default
        .as_ref()
        .and_then(|d| g.regions.iter().position(|r| &r.name == d))
        .unwrap_or(0) as u16;
    (sites, default)
}

struct Builder {
    sites: Vec<RegionSite>,
    default: u16,
    rankings: Vec<Box<[u16]>>,
    interned: HashMap<Box<[u16]>, u32>,
    v4: PrefixTree,
    v6: PrefixTree,
}

impl Builder {
    fn new(g: &GeoConfig) -> Self {
        let (sites, default) = sites_of(g);
        let mut b = Self {
            sites,
            default,
            rankings: Vec::new(),
            interned: HashMap::new(),
            v4: PrefixTree::new(32, 0),
            v6: PrefixTree::new(128, 0),
        };
        // Ranking 0 is the one for unknown clients: the trees start out all-default.
        let unknown = b.ranking_id(&Location::default());
        debug_assert_eq!(unknown, 0);
        b
    }

    fn ranking_id(&mut self, loc: &Location) -> u32 {
        let ranking = rank(&self.sites, self.default, loc);
        if let Some(id) = self.interned.get(&ranking) {
            return *id;
        }
        let id = self.rankings.len() as u32;
        self.rankings.push(ranking.clone());
        self.interned.insert(ranking, id);
        id
    }

    fn finish(mut self) -> GeoIndex {
        self.v4.merge();
        self.v6.merge();
        GeoIndex(Index::Trees {
            v4: self.v4,
            v6: self.v6,
            rankings: self.rankings,
        })
    }
}

/// Orders the regions for a client at `loc`: override matches first (country before continent),
/// then by weighted great-circle distance; unknown places put the default region first.
fn rank(sites: &[RegionSite], default: u16, loc: &Location) -> Box<[u16]> {
    let class = |s: &RegionSite| -> u8 {
        if loc
            .country
            .as_ref()
            .is_some_and(|c| s.countries.contains(c))
        {
            0
        } else if loc
            .continent
            .as_ref()
            .is_some_and(|c| s.continents.contains(c))
        {
            1
        } else {
            2
        }
    };
    let mut keyed: Vec<(u8, f64, u16)> = sites
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let i = i as u16;
            let dist = match loc.coords {
                Some((la, lo)) => great_circle_km(la, lo, s.lat, s.lon) / s.weight,
                // Unknown: the default first, then config order.
                None if i == default => -1.0,
                None => f64::from(i),
            };
            (class(s), dist, i)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    keyed.into_iter().map(|k| k.2).collect()
}

/// Great-circle distance in km (haversine).
pub fn great_circle_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lon2 - lon1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6371.0 * a.sqrt().min(1.0).asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(lat: f64, lon: f64) -> RegionSite {
        RegionSite {
            lat,
            lon,
            weight: 1.0,
            countries: vec![],
            continents: vec![],
        }
    }

    fn at(lat: f64, lon: f64, country: &str, continent: &str) -> Location {
        Location {
            coords: Some((lat, lon)),
            country: Some(country.into()),
            continent: Some(continent.into()),
        }
    }

    /// The per-query index a server answers from during its start-up walk gives every client
    /// the same ranking as the merged trees, over a scope no wider than theirs (the database's
    /// own network, where the trees merge neighbours with the same answer).
    #[test]
    fn direct_lookups_rank_as_the_walked_trees_do() {
        let path =
            std::env::temp_dir().join(format!("outpost-geo-direct-{}.mmdb", std::process::id()));
        crate::sample_db::write(&path, crate::sample_db::WORLD).expect("sample database");
        let db = Arc::new(GeoDb::open(&path).expect("open"));
        let _ = std::fs::remove_file(&path);
        let geo: GeoConfig = toml::from_str(
            r#"
            name = "cdn"
            default = "us"
            regions = [
              { name = "eu", lat = 50.1, lon = 8.7, addresses = ["192.0.2.10"] },
              { name = "us", lat = 39.0, lon = -77.5, addresses = ["192.0.2.20"], countries = ["BR"] },
              { name = "ap", lat = 35.7, lon = 139.7, addresses = ["192.0.2.30"] },
            ]
            "#,
        )
        .expect("geo config");
        let walked = db.build(&[&geo]).expect("walk").remove(0);
        let direct = db.direct(&[&geo]).remove(0);
        assert!(direct.is_direct() && !walked.is_direct());
        let mut clients: Vec<IpAddr> = Vec::new();
        for (cidr, ..) in crate::sample_db::WORLD {
            let (net, _) = cidr.split_once('/').expect("cidr");
            let base: IpAddr = net.parse().expect("address");
            clients.push(base);
            if let IpAddr::V4(v4) = base {
                let o = v4.octets();
                clients.push(IpAddr::from([o[0], o[1], 77, 5]));
                clients.push(IpAddr::from([o[0], 255, 255, 255]));
                // IPv4-mapped IPv6 goes the IPv4 way in both.
                clients.push(IpAddr::V6(
                    std::net::Ipv4Addr::from([o[0], 3, 2, 1]).to_ipv6_mapped(),
                ));
            }
        }
        // Places the database does not know: the default region first.
        clients.extend(
            ["203.0.113.9", "10.1.2.3", "2001:db8::1"].map(|a| a.parse::<IpAddr>().expect("ip")),
        );
        for c in clients {
            let (want, wide) = walked.rank(c);
            let (got, narrow) = direct.rank(c);
            assert_eq!(got, want, "ranking for {c}");
            assert!(
                narrow >= wide,
                "{c}: direct scope /{narrow}, merged /{wide}"
            );
        }
        // Sao Paulo goes to us by its country override; an unknown client to the default.
        assert_eq!(
            &*direct.rank("200.1.1.1".parse().expect("ip")).0,
            &[1, 0, 2]
        );
        assert_eq!(direct.rank("203.0.113.9".parse().expect("ip")).0[0], 1);
    }

    #[test]
    fn distance_matches_known_values() {
        // Frankfurt to New York is about 6,200 km.
        let d = great_circle_km(50.11, 8.68, 40.71, -74.0);
        assert!((6100.0..6300.0).contains(&d), "{d}");
        assert_eq!(great_circle_km(1.0, 2.0, 1.0, 2.0), 0.0);
    }

    #[test]
    fn nearest_first_then_overrides_then_weights() {
        let eu = site(50.1, 8.7);
        let us = site(39.0, -77.5);
        let paris = at(48.85, 2.35, "FR", "EU");
        assert_eq!(&*rank(&[eu.clone(), us.clone()], 0, &paris), &[0, 1]);
        // A country override beats distance.
        let mut us_fr = us.clone();
        us_fr.countries = vec!["FR".into()];
        assert_eq!(&*rank(&[eu.clone(), us_fr], 0, &paris), &[1, 0]);
        // A heavy enough weight pulls a client across the Atlantic.
        let mut us_heavy = us.clone();
        us_heavy.weight = 100.0;
        assert_eq!(&*rank(&[eu.clone(), us_heavy], 0, &paris), &[1, 0]);
        // Unknown clients get the default first.
        assert_eq!(&*rank(&[eu, us], 1, &Location::default()), &[1, 0]);
    }
}
