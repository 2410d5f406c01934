//! The DNS query path without the network: parse, zone lookup, geo ranking and response
//! writing for a static A query and a geo A query with ECS (sample City database).
//!
//! cargo bench -p geo-dns --bench dns_answer

use criterion::{criterion_group, criterion_main, Criterion};
use geo_dns::answer::{Catalog, Transport};
use geo_dns::health::HealthBoard;
use geo_dns::stats::Stats;
use std::hint::black_box;

fn query(name: &str, ecs: Option<[u8; 3]>) -> Vec<u8> {
    let mut p = vec![
        0x12,
        0x34,
        0x00,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(ecs.is_some()),
    ];
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some(net) = ecs {
        p.extend_from_slice(&[
            0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0,
        ]);
        p.extend_from_slice(&net);
    }
    p
}

fn bench(c: &mut Criterion) {
    let db = std::env::temp_dir().join(format!("outpost-bench-{}.mmdb", std::process::id()));
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
records = [ {{ name = "www", type = "A", value = "192.0.2.1" }} ]
[[dns.zones.geo]]
name = "cdn"
regions = [
  {{ name = "eu", lat = 50.1, lon = 8.7, addresses = ["192.0.2.10"] }},
  {{ name = "us", lat = 39.0, lon = -77.5, addresses = ["192.0.2.20"] }},
  {{ name = "ap", lat = 35.7, lon = 139.7, addresses = ["192.0.2.30"] }},
]
"#,
        db.display()
    );
    let cfg = toml::from_str::<W>(&src).expect("config").dns;
    let geo = geo_dns::geo::GeoDb::open(&db).expect("db");
    let stats = Stats::default();
    let catalog = Catalog::build(
        &cfg,
        Some(&geo),
        &HealthBoard::default(),
        &stats,
        &Default::default(),
    )
    .expect("catalog");
    let _ = std::fs::remove_file(&db);
    let src_ip = "198.51.100.7".parse().expect("ip");
    let mut out = Vec::with_capacity(512);
    let plain = query("www.example.test", None);
    let geo_q = query("cdn.example.test", Some([81, 2, 3]));
    c.bench_function("dns_answer/static_a", |b| {
        b.iter(|| catalog.respond(black_box(&plain), src_ip, Transport::Udp, &stats, &mut out))
    });
    c.bench_function("dns_answer/geo_a_ecs", |b| {
        b.iter(|| catalog.respond(black_box(&geo_q), src_ip, Transport::Udp, &stats, &mut out))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
