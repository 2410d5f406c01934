//! A small GeoLite2-City-format database written on demand, for the demo and the tests: a
//! handful of networks placed in cities on every inhabited continent, IPv4 and IPv6. Real
//! deployments use a real City database (MaxMind GeoLite2 or DB-IP City Lite).

use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use maxminddb_writer::Database;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// One network of the sample world: (CIDR, city, latitude, longitude, country, continent).
pub type Place = (
    &'static str,
    &'static str,
    f64,
    f64,
    &'static str,
    &'static str,
);

/// The sample world. Longer prefixes inside shorter ones override them.
pub const WORLD: &[Place] = &[
    ("81.0.0.0/8", "Frankfurt", 50.11, 8.68, "DE", "EU"),
    ("90.0.0.0/8", "Paris", 48.85, 2.35, "FR", "EU"),
    ("31.0.0.0/8", "London", 51.51, -0.13, "GB", "EU"),
    ("24.0.0.0/8", "New York", 40.71, -74.0, "US", "NA"),
    ("50.0.0.0/8", "San Francisco", 37.77, -122.42, "US", "NA"),
    ("99.0.0.0/8", "Toronto", 43.65, -79.38, "CA", "NA"),
    ("1.0.0.0/8", "Tokyo", 35.68, 139.69, "JP", "AS"),
    ("27.0.0.0/8", "Singapore", 1.35, 103.82, "SG", "AS"),
    ("200.0.0.0/8", "Sao Paulo", -23.55, -46.63, "BR", "SA"),
    ("41.0.0.0/8", "Johannesburg", -26.2, 28.04, "ZA", "AF"),
    ("101.0.0.0/8", "Sydney", -33.87, 151.21, "AU", "OC"),
    // A Tokyo network inside the Frankfurt /8: answers there narrow to its scope.
    ("81.200.0.0/16", "Tokyo", 35.68, 139.69, "JP", "AS"),
    ("2a00::/12", "Frankfurt", 50.11, 8.68, "DE", "EU"),
    ("2600::/12", "New York", 40.71, -74.0, "US", "NA"),
    ("2400::/12", "Tokyo", 35.68, 139.69, "JP", "AS"),
];

#[derive(Serialize)]
struct Record {
    city: Names,
    continent: Code,
    country: Iso,
    location: Loc,
}

#[derive(Serialize)]
struct Names {
    names: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Code {
    code: &'static str,
}

#[derive(Serialize)]
struct Iso {
    iso_code: &'static str,
}

#[derive(Serialize)]
struct Loc {
    latitude: f64,
    longitude: f64,
}

/// Writes a City database of `places` to `path` (IPv6 database, IPv4 at ::/96).
pub fn write(path: &Path, places: &[Place]) -> Result<(), String> {
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = "GeoLite2-City".into();
    db.metadata.languages = vec!["en".into()];
    db.metadata.binary_format_major_version = 2;
    db.metadata.binary_format_minor_version = 0;
    // Built now: the start-up line says when the database is from.
    db.metadata.build_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    db.metadata
        .description
        .insert("en".into(), "Outpost sample world".into());
    for (cidr, city, lat, lon, country, continent) in places {
        let rec = Record {
            city: Names {
                names: BTreeMap::from([("en", *city)]),
            },
            continent: Code { code: continent },
            country: Iso { iso_code: country },
            location: Loc {
                latitude: *lat,
                longitude: *lon,
            },
        };
        let data = db
            .insert_value(rec)
            .map_err(|e| format!("sample database: {e}"))?;
        let (addr, len) = cidr
            .split_once('/')
            .and_then(|(a, l)| Some((a.parse::<IpAddr>().ok()?, l.parse::<u8>().ok()?)))
            .ok_or_else(|| format!("sample database: bad network {cidr}"))?;
        let (addr, len) = match addr {
            IpAddr::V4(v4) => (IpAddr::V6(v4.to_ipv6_compatible()), len + 96),
            v6 => (v6, len),
        };
        db.insert_node(IpAddrWithMask::new(addr, len), data);
    }
    let mut file = std::fs::File::create(path)
        .map_err(|e| format!("sample database {}: {e}", path.display()))?;
    db.write_to(&mut file)
        .map_err(|e| format!("sample database {}: {e}", path.display()))?;
    Ok(())
}
