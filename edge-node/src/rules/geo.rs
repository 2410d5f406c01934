//! The client's country for rule conditions: a MaxMind-format City or Country database
//! (`[edge] geoip_db`), read with maxminddb. Its own small reader, not geo-dns's: edge-node
//! and geo-dns do not depend on each other (DESIGN.md), and a rule needs only the country.

use maxminddb::Reader;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::Path;

/// An opened database.
pub(crate) struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp")
            .field("type", &self.reader.metadata().database_type)
            .finish()
    }
}

#[derive(Deserialize)]
struct Record {
    country: Option<Country>,
}

#[derive(Deserialize)]
struct Country {
    iso_code: Option<String>,
}

impl GeoIp {
    /// Opens a database file.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let reader = Reader::open_readfile(path).map_err(|e| {
            format!(
                "cannot open GeoIP database {} (a GeoLite2-City or -Country .mmdb): {e}",
                path.display()
            )
        })?;
        Ok(Self { reader })
    }

    /// The country code (upper case) of `ip`, when the database knows it.
    pub(crate) fn country(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let r = self.reader.lookup(ip).ok()?.decode::<Record>().ok()??;
        let code = r.country?.iso_code?.to_ascii_uppercase().into_bytes();
        Some([*code.first()?, *code.get(1)?])
    }
}
