//! Fuzzes the whole query path: parsing, zone lookup, geo ranking (sample City database) and
//! response writing, over UDP and TCP limits. A response must always be a well-formed header
//! echoing the query ID, and never larger than the transport allows.
#![no_main]

use geo_dns::answer::{Catalog, Transport};
use geo_dns::health::HealthBoard;
use geo_dns::stats::Stats;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct World {
    catalog: Catalog,
    stats: Stats,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let db = std::env::temp_dir().join(format!("outpost-fuzz-{}.mmdb", std::process::id()));
        geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD).expect("sample db");
        #[derive(serde::Deserialize)]
        struct W {
            dns: geo_dns::DnsConfig,
        }
        let src = format!(
            r#"[dns]
listen = ["127.0.0.1:0"]
geoip_db = "{}"
[[dns.zones]]
name = "example.test"
ns = ["ns1"]
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "www", type = "CNAME", value = "cdn" }},
  {{ name = "a.b", type = "TXT", value = "t" }},
  {{ name = "@", type = "MX", value = "10 mail" }},
]
[[dns.zones.geo]]
name = "cdn"
regions = [
  {{ name = "eu", lat = 50.1, lon = 8.7, addresses = ["192.0.2.10", "2001:db8::10"] }},
  {{ name = "us", lat = 39.0, lon = -77.5, addresses = ["192.0.2.20"] }},
]
"#,
            db.display()
        );
        let cfg = toml::from_str::<W>(&src).expect("config").dns;
        let geo = geo_dns::geo::GeoDb::open(&db).expect("open");
        let stats = Stats::default();
        let catalog =
            Catalog::build(&cfg, Some(&geo), &HealthBoard::default(), &stats, &Default::default())
                .expect("catalog");
        World { catalog, stats }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let _ = geo_dns::wire::parse(data);
    let mut out = Vec::new();
    for (transport, limit) in [(Transport::Udp, 1232), (Transport::Tcp, 65535)] {
        let src = "198.51.100.7".parse().expect("ip");
        if w.catalog.respond(data, src, transport, &w.stats, &mut out) {
            assert!(out.len() >= 12, "short response");
            assert!(out.len() <= limit, "response over the transport limit");
            assert_eq!(&out[..2], &data[..2], "ID not echoed");
            assert_eq!(out[2] & 0x80, 0x80, "QR not set");
        }
    }
});
