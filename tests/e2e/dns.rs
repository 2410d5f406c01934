//! Geo-DNS end to end: the real server on 127.0.0.1/::1 ephemeral ports, queried by the hickory
//! client and by `dig`, with a GeoLite2-format database written by the test (geo_dns::sample_db)
//! and region health endpoints served by real HTTP servers.

use crate::support::{eventually, Origin, Reply};
use futures_util::StreamExt;
use geo_dns::{DnsConfig, DnsServer};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::udp::UdpClientStream;
use hickory_net::DnsHandle;
use hickory_proto::op::{
    DnsRequest, DnsRequestOptions, Edns, Message, MessageType, OpCode, Query, ResponseCode,
};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::process::Command;

/// The sample City database in a directory of its own, removed when the test ends.
struct SampleDb {
    path: std::path::PathBuf,
    _dir: crate::support::TempDir,
}

impl std::ops::Deref for SampleDb {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

fn sample_db(tag: &str) -> SampleDb {
    let dir = crate::support::temp_dir(&format!("dns-{tag}"));
    let path = dir.join("city.mmdb");
    geo_dns::sample_db::write(&path, geo_dns::sample_db::WORLD).unwrap();
    SampleDb { path, _dir: dir }
}

fn parse(toml_src: &str) -> DnsConfig {
    #[derive(serde::Deserialize)]
    struct W {
        dns: DnsConfig,
    }
    toml::from_str::<W>(toml_src).unwrap().dns
}

/// A zone with a geo name `cdn` in three regions (eu Frankfurt, us Ashburn, ap Tokyo).
fn geo_config(listen: &str, db: &std::path::Path, health: [&str; 3], extra: &str) -> String {
    let h = |u: &str| {
        if u.is_empty() {
            String::new()
        } else {
            format!(", health = \"{u}\"")
        }
    };
    format!(
        r#"[dns]
listen = ["{listen}"]
geoip_db = "{db}"
health = {{ interval = "200ms", timeout = "200ms", healthy_after = 1, unhealthy_after = 1 }}

[[dns.zones]]
name = "example.test"
ns = ["ns1.example.test."]
negative_ttl = 60
records = [
  {{ name = "ns1", type = "A", value = "192.0.2.53" }},
  {{ name = "www", type = "CNAME", value = "cdn" }},
  {{ name = "a.b.deep", type = "TXT", value = "leaf" }},
  {{ name = "@", type = "MX", value = "10 mail" }},
  {{ name = "@", type = "CAA", value = '0 issue "letsencrypt.org"' }},
  {{ name = "static", type = "A", value = "192.0.2.1" }},
  {{ name = "static", type = "AAAA", value = "2001:db8::1" }},
{extra}
]

[[dns.zones.geo]]
name = "cdn"
ttl = 20
default = "us"
regions = [
  {{ name = "eu", lat = 50.1, lon = 8.7, addresses = ["192.0.2.10", "2001:db8::10"]{} }},
  {{ name = "us", lat = 39.0, lon = -77.5, addresses = ["192.0.2.20", "2001:db8::20"]{} }},
  {{ name = "ap", lat = 35.7, lon = 139.7, addresses = ["192.0.2.30", "2001:db8::30"]{} }},
]
"#,
        h(health[0]),
        h(health[1]),
        h(health[2]),
        db = db.display(),
    )
}

/// A DNS server under test with the registry its instruments are on.
struct TestDns {
    server: DnsServer,
    registry: agent::metrics::Registry,
}

impl TestDns {
    /// The server's metrics as the admin `/metrics` renders them.
    fn metrics(&self) -> String {
        self.registry.render()
    }
    async fn reload(&self, cfg: &DnsConfig) -> Result<(), String> {
        self.server.reload(cfg).await
    }
    async fn stop(self) {
        self.server.stop().await
    }
}

async fn start(src: &str) -> (TestDns, SocketAddr) {
    let registry = agent::metrics::Registry::default();
    let server = DnsServer::start(&parse(src), &registry.meter())
        .await
        .unwrap();
    // The tests below check the merged trees' scopes: wait for the start-up walk (the sample
    // database takes milliseconds). Answers before it are checked on their own below.
    let walked = std::time::Instant::now() + Duration::from_secs(10);
    while !server.geo_walked() && std::time::Instant::now() < walked {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(server.geo_walked(), "the GeoIP walk did not finish in 10 s");
    let addr = server.local_addrs()[0];
    (TestDns { server, registry }, addr)
}

/// One query through the hickory client (UDP), optionally with an ECS option.
async fn ask(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    ecs: Option<(&str, u8)>,
) -> Message {
    let exchange = UdpClientStream::builder(server, TokioRuntimeProvider::new())
        .with_timeout(Some(Duration::from_secs(2)))
        .exchange();
    let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some((addr, source)) = ecs {
        let ip: IpAddr = addr.parse().unwrap();
        edns.options_mut()
            .insert(EdnsOption::Subnet(ClientSubnet::new(ip, source, 0)));
    }
    m.set_edns(edns);
    let mut responses = exchange.send(DnsRequest::new(m, DnsRequestOptions::default()));
    let resp = tokio::time::timeout(Duration::from_secs(5), responses.next())
        .await
        .expect("no answer within 5s")
        .expect("stream ended")
        .expect("query failed");
    resp.into_message()
}

fn rand_id() -> u16 {
    (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        & 0xFFFF) as u16
}

/// The addresses `cdn.example.test` answers for a client subnet.
async fn cdn(server: SocketAddr, rtype: RecordType, subnet: &str, source: u8) -> Vec<String> {
    addresses(&ask(server, "cdn.example.test.", rtype, Some((subnet, source))).await)
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

fn scope(m: &Message) -> Option<u8> {
    match m
        .edns
        .as_ref()?
        .option(hickory_proto::rr::rdata::opt::EdnsCode::Subnet)?
    {
        EdnsOption::Subnet(s) => Some(s.scope_prefix()),
        _ => None,
    }
}

/// Runs `dig` (a separate process; awaited, so the server's tasks keep running meanwhile).
async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig (bind9-dnsutils) is installed by scripts/check");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn geo_answers_follow_the_client_subnet_across_continents() {
    let db = sample_db("continents");
    let (server, addr) = start(&geo_config("127.0.0.1:0", &db, ["", "", ""], "")).await;
    // (client subnet, expected region address)
    for (subnet, want) in [
        ("81.2.3.0", "192.0.2.10"),    // Frankfurt -> eu
        ("90.10.0.0", "192.0.2.10"),   // Paris -> eu
        ("41.7.7.0", "192.0.2.10"),    // Johannesburg -> eu (8,700 km vs 12,800 to the us)
        ("24.1.2.0", "192.0.2.20"),    // New York -> us
        ("50.99.0.0", "192.0.2.20"),   // San Francisco -> us
        ("200.1.1.0", "192.0.2.20"),   // Sao Paulo -> us
        ("1.2.3.0", "192.0.2.30"),     // Tokyo -> ap
        ("27.1.1.0", "192.0.2.30"),    // Singapore -> ap
        ("101.5.5.0", "192.0.2.30"),   // Sydney -> ap
        ("81.200.9.0", "192.0.2.30"),  // a Tokyo /16 inside the Frankfurt /8 -> ap
        ("203.0.113.0", "192.0.2.20"), // unknown -> the default region (us)
    ] {
        let m = ask(addr, "cdn.example.test.", RecordType::A, Some((subnet, 24))).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "AA bit");
        assert_eq!(addresses(&m), vec![want.to_string()], "client {subnet}/24");
        let s = scope(&m).expect("ECS echoed");
        assert!(
            s <= 24 || subnet.starts_with("81.200"),
            "scope /{s} for {subnet}"
        );
    }
    // Scopes are as wide as the answer allows: 81.0.0.0/9 is all Frankfurt (its sibling /9 holds
    // the Tokyo /16), so a /24 in it is answered for the whole /9; the Tokyo /16 at /16.
    let m = ask(
        addr,
        "cdn.example.test.",
        RecordType::A,
        Some(("81.2.3.0", 24)),
    )
    .await;
    assert_eq!(scope(&m), Some(9));
    let m = ask(
        addr,
        "cdn.example.test.",
        RecordType::A,
        Some(("81.200.9.0", 24)),
    )
    .await;
    assert_eq!(scope(&m), Some(16));
    // Without ECS the resolver's own address is used: 127.0.0.1 is unknown -> default, no ECS.
    let m = ask(addr, "cdn.example.test.", RecordType::A, None).await;
    assert_eq!(addresses(&m), vec!["192.0.2.20".to_string()]);
    assert_eq!(scope(&m), None);
    // A static name answers the same everywhere: scope 0.
    let m = ask(
        addr,
        "static.example.test.",
        RecordType::A,
        Some(("81.2.3.0", 24)),
    )
    .await;
    assert_eq!(addresses(&m), vec!["192.0.2.1".to_string()]);
    assert_eq!(scope(&m), Some(0));
    // The CNAME is followed to the geo answer, with the query's case echoed.
    let m = ask(
        addr,
        "WwW.ExAmple.TEST.",
        RecordType::AAAA,
        Some(("2600::", 32)),
    )
    .await;
    assert_eq!(m.queries[0].name().to_ascii(), "WwW.ExAmple.TEST.");
    assert!(matches!(m.answers[0].data, RData::CNAME(_)));
    assert_eq!(addresses(&m), vec!["2001:db8::20".to_string()]);
    // Region counters are exported.
    let metrics = server.metrics();
    assert!(
        metrics
            .contains("outpost_dns_geo_answers_total{cdn_region=\"ap\",dns_question_name=\"cdn.example.test\"} 5"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn ipv6_listener_and_ipv6_clients() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    }
    let db = sample_db("v6");
    let (server, addr) = start(&geo_config("[::1]:0", &db, ["", "", ""], "")).await;
    assert!(addr.is_ipv6());
    for (subnet, want) in [
        ("2a00:1450::", "2001:db8::10"),
        ("2600:1f00::", "2001:db8::20"),
        ("2400:cb00::", "2001:db8::30"),
    ] {
        let m = ask(
            addr,
            "cdn.example.test.",
            RecordType::AAAA,
            Some((subnet, 32)),
        )
        .await;
        assert_eq!(addresses(&m), vec![want.to_string()], "{subnet}/32");
        assert!(scope(&m).unwrap() <= 32);
    }
    // An IPv4 client subnet asked over IPv6 transport works the same.
    assert_eq!(
        cdn(addr, RecordType::A, "1.2.3.0", 24).await,
        ["192.0.2.30"]
    );
    // dig over IPv6, TCP too.
    let out = dig(
        addr,
        &[
            "cdn.example.test",
            "AAAA",
            "+subnet=2a00:1450::/32",
            "+short",
        ],
    )
    .await;
    assert_eq!(out.trim(), "2001:db8::10", "{out}");
    let out = dig(
        addr,
        &[
            "cdn.example.test",
            "AAAA",
            "+tcp",
            "+subnet=2400:cb00::/32",
            "+short",
        ],
    )
    .await;
    assert_eq!(out.trim(), "2001:db8::30", "{out}");
    server.stop().await;
}

#[tokio::test]
async fn country_overrides_and_weights_change_the_ranking() {
    let db = sample_db("overrides");
    let src = geo_config("127.0.0.1:0", &db, ["", "", ""], "")
        .replace(
            r#"addresses = ["192.0.2.10", "2001:db8::10"]"#,
            r#"addresses = ["192.0.2.10", "2001:db8::10"], countries = ["BR"]"#,
        )
        .replace(
            r#"addresses = ["192.0.2.30", "2001:db8::30"]"#,
            r#"addresses = ["192.0.2.30", "2001:db8::30"], weight = 3.0"#,
        );
    let (server, addr) = start(&src).await;
    // Brazil is sent to eu by the override, not to the nearer us.
    assert_eq!(
        cdn(addr, RecordType::A, "200.1.1.0", 24).await,
        ["192.0.2.10"]
    );
    // With weight 3 Tokyo pulls San Francisco (8,300 km vs 3,900 km to Ashburn: 2,770 weighted).
    assert_eq!(
        cdn(addr, RecordType::A, "50.99.0.0", 24).await,
        ["192.0.2.30"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_region_whose_health_fails_leaves_answers_and_comes_back() {
    let db = sample_db("failover");
    let ok = || Reply::ok("ok", &[]);
    let eu = Origin::start(move |_, _| ok()).await;
    let us = Origin::start(move |_, _| ok()).await;
    let ap = Origin::start(move |_, _| ok()).await;
    let h = |o: &Origin| format!("{}/healthz", o.url());
    let (server, addr) = start(&geo_config(
        "127.0.0.1:0",
        &db,
        [&h(&eu), &h(&us), &h(&ap)],
        "",
    ))
    .await;
    let frankfurt = || {
        ask(
            addr,
            "cdn.example.test.",
            RecordType::A,
            Some(("81.2.3.0", 24)),
        )
    };
    assert_eq!(
        addresses(&frankfurt().await),
        vec!["192.0.2.10".to_string()]
    );

    // eu's endpoint starts failing: Frankfurt moves to the next region (us) within an interval
    // or two (200 ms, one failure takes it down).
    eu.set(|_, _| Reply::ok("down", &[]).status(503));
    let died = Instant::now();
    let mut moved = None;
    while died.elapsed() < Duration::from_secs(5) {
        if addresses(&frankfurt().await) == vec!["192.0.2.20".to_string()] {
            moved = Some(died.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let moved = moved.expect("eu never left the answers");
    eprintln!("failover after {moved:?} (interval 200ms, unhealthy_after 1)");
    assert!(server.metrics().contains("outpost_dns_region_endpoint_up"));

    // It comes back when healthy.
    eu.set(move |_, _| Reply::ok("ok", &[]));
    let mut back = false;
    for _ in 0..100 {
        if addresses(&frankfurt().await) == vec!["192.0.2.10".to_string()] {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "eu never came back");

    // Everything down: fail open with every region, and count it.
    eu.stop();
    us.stop();
    ap.stop();
    let mut all = Vec::new();
    for _ in 0..100 {
        all = addresses(&frankfurt().await);
        if all.len() == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all.sort();
    assert_eq!(all, vec!["192.0.2.10", "192.0.2.20", "192.0.2.30"]);
    let metrics = server.metrics();
    assert!(
        !metrics.contains("outpost_dns_fail_open_total 0"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn negative_answers_referrals_and_other_types() {
    let db = sample_db("negative");
    let (server, addr) = start(&geo_config("127.0.0.1:0", &db, ["", "", ""], "")).await;
    // NXDOMAIN with the SOA in authority, its TTL the negative TTL.
    let m = ask(addr, "nope.example.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    assert_eq!(m.authorities[0].ttl, 60);
    // A deep NXDOMAIN points the SOA owner at the right suffix.
    let m = ask(addr, "x.y.z.nope.example.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].name.to_ascii(), "example.test.");
    // NODATA: the name exists, the type does not.
    let m = ask(addr, "static.example.test.", RecordType::MX, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(m.authorities[0].data, RData::SOA(_)));
    // An empty non-terminal is NODATA, not NXDOMAIN.
    let m = ask(addr, "b.deep.example.test.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    // Other zones are refused, without AA.
    let m = ask(addr, "example.com.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative);
    // Apex data: SOA, NS with glue, MX, CAA; ANY gets the RFC 8482 HINFO.
    let m = ask(addr, "example.test.", RecordType::NS, None).await;
    assert_eq!(m.answers.len(), 1);
    let mut glue = m.clone();
    glue.answers = m.additionals.clone();
    assert_eq!(addresses(&glue), vec!["192.0.2.53".to_string()]);
    let m = ask(addr, "example.test.", RecordType::SOA, None).await;
    assert!(matches!(m.answers[0].data, RData::SOA(_)));
    let out = dig(addr, &["example.test", "MX", "+short"]).await;
    assert_eq!(out.trim(), "10 mail.example.test.");
    let out = dig(addr, &["example.test", "CAA", "+short"]).await;
    assert_eq!(out.trim(), "0 issue \"letsencrypt.org\"");
    let out = dig(addr, &["example.test", "ANY"]).await;
    assert!(out.contains("HINFO") && out.contains("RFC8482"), "{out}");
    let out = dig(addr, &["nope.example.test"]).await;
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("flags: qr aa"),
        "{out}"
    );
    server.stop().await;
}

#[tokio::test]
async fn large_answers_are_truncated_over_udp_and_dig_retries_over_tcp() {
    let db = sample_db("tcp");
    let big: String = (0..40)
        .map(|i| {
            format!(
                "  {{ name = \"big\", type = \"TXT\", value = \"record {i:02} {}\" }},\n",
                "x".repeat(90)
            )
        })
        .collect();
    let (server, addr) = start(&geo_config("127.0.0.1:0", &db, ["", "", ""], &big)).await;
    // Over UDP alone: TC set, no answers.
    let out = dig(
        addr,
        &["big.example.test", "TXT", "+ignore", "+bufsize=1232"],
    )
    .await;
    assert!(out.contains(" tc") && out.contains("ANSWER: 0"), "{out}");
    // Plain dig sees TC and retries over TCP, getting all 40.
    let out = dig(addr, &["big.example.test", "TXT", "+bufsize=1232"]).await;
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("ANSWER: 40"), "{out}");
    // No EDNS: the 512-byte limit applies even to a modest answer.
    let out = dig(addr, &["big.example.test", "TXT", "+noedns", "+ignore"]).await;
    assert!(out.contains(" tc"), "{out}");
    server.stop().await;
}

/// Sends raw bytes over UDP and returns the reply, if any within 500 ms.
async fn raw(addr: SocketAddr, packet: &[u8]) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(packet, addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

fn query_bytes(name: &str, qtype: u16) -> Vec<u8> {
    let mut p = vec![0xAB, 0xCD, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.push(0);
    p.extend_from_slice(&qtype.to_be_bytes());
    p.extend_from_slice(&1u16.to_be_bytes());
    p
}

fn rcode_of(reply: &[u8]) -> u8 {
    reply[3] & 0x0F
}

#[tokio::test]
async fn malformed_packets_get_formerr_notimp_or_silence_and_never_stop_the_server() {
    let db = sample_db("bad");
    let (server, addr) = start(&geo_config("127.0.0.1:0", &db, ["", "", ""], "")).await;
    let good = query_bytes("cdn.example.test", 1);
    // Too short to answer: dropped.
    assert_eq!(raw(addr, &[1, 2, 3]).await, None);
    assert_eq!(raw(addr, &[]).await, None);
    // A datagram longer than the server reads (4 KiB) is dropped, not answered from its start.
    let mut huge = good.clone();
    huge[11] = 1;
    huge.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0x13, 0x88]);
    huge.extend(std::iter::repeat_n(0u8, 5000));
    assert_eq!(raw(addr, &huge).await, None);
    // A response (QR set): dropped, never answered.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert_eq!(raw(addr, &resp).await, None);
    // Opcode UPDATE / STATUS: NOTIMP.
    for op in [2u8, 5] {
        let mut p = good.clone();
        p[2] = (p[2] & 0x87) | (op << 3);
        let r = raw(addr, &p).await.expect("an answer");
        assert_eq!(rcode_of(&r), 4, "opcode {op}");
        assert_eq!(&r[0..2], &[0xAB, 0xCD]);
    }
    // Two questions, absurd counts, a truncated name, a compression loop: FORMERR.
    let mut two = good.clone();
    two[5] = 2;
    let mut absurd = good.clone();
    absurd[10] = 0xFF;
    absurd[11] = 0xFF;
    let mut answers = good.clone();
    answers[7] = 9;
    let truncated = good[..good.len() - 3].to_vec();
    let mut pointer = good[..12].to_vec();
    pointer.extend_from_slice(&[0xC0, 0x0C, 0, 1, 0, 1]);
    for (what, p) in [
        ("two questions", two),
        ("arcount 65535", absurd),
        ("ancount 9", answers),
        ("truncated", truncated),
        ("pointer loop", pointer),
    ] {
        let r = raw(addr, &p)
            .await
            .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(rcode_of(&r), 1, "{what}");
    }
    // A truncated or inconsistent ECS option: FORMERR.
    for opt in [
        vec![0, 8, 0, 7, 0, 1, 24, 0, 81, 2], // option shorter than it says
        vec![0, 8, 0, 7, 0, 1, 24, 9, 81, 2, 3], // scope set in a query
        vec![0, 8, 0, 7, 0, 7, 24, 0, 81, 2, 3], // unknown family
        vec![0, 8, 0, 8, 0, 1, 24, 0, 81, 2, 3, 4], // more address bytes than the prefix
    ] {
        let mut p = good.clone();
        p[11] = 1;
        p.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0]);
        p.extend_from_slice(&(opt.len() as u16).to_be_bytes());
        p.extend_from_slice(&opt);
        let r = raw(addr, &p).await.expect("an answer");
        assert_eq!(rcode_of(&r), 1, "{opt:?}");
    }
    // EDNS version 1: BADVERS (extended rcode 1 in the OPT, low bits 0).
    let mut p = good.clone();
    p[11] = 1;
    p.extend_from_slice(&[0, 0, 41, 0x04, 0xD0, 0, 1, 0, 0, 0, 0]);
    let r = raw(addr, &p).await.expect("an answer");
    let m = Message::from_vec(&r).unwrap();
    // 16 is BADVERS here (hickory names the shared value BADSIG).
    assert_eq!(u16::from(m.metadata.response_code), 16);
    // AXFR and class CH: REFUSED.
    let r = raw(addr, &query_bytes("example.test", 252)).await.unwrap();
    assert_eq!(rcode_of(&r), 5);
    let mut ch = query_bytes("version.bind", 16);
    let n = ch.len();
    ch[n - 1] = 3;
    assert_eq!(rcode_of(&raw(addr, &ch).await.unwrap()), 5);
    // Random garbage: never a panic, and the server still answers.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..2000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 96) as usize;
        let mut p: Vec<u8> = (0..len)
            .map(|j| (seed >> (j % 56)) as u8 ^ j as u8)
            .collect();
        if i % 2 == 0 && p.len() > 12 {
            p[..12].copy_from_slice(&good[..12]);
            p[2] &= 0x7F;
        }
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = sock.send_to(&p, addr);
    }
    // TCP: a length prefix with nothing after it, then garbage; the server closes and lives on.
    {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x00, 0x40, 1, 2, 3]).await.unwrap();
        drop(s);
    }
    assert_eq!(
        cdn(addr, RecordType::A, "24.1.2.0", 24).await,
        ["192.0.2.20"]
    );
    let metrics = server.metrics();
    assert!(
        metrics.contains("outpost_dns_responses_total{dns_response_code=\"FORMERR\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("outpost_dns_dropped_total 0\n"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_bad_reload_keeps_the_old_zones_serving() {
    let db = sample_db("reload");
    let src = geo_config("127.0.0.1:0", &db, ["", "", ""], "");
    let (server, addr) = start(&src).await;
    let before = ask(addr, "static.example.test.", RecordType::A, None).await;
    assert_eq!(addresses(&before), vec!["192.0.2.1".to_string()]);
    // A bad record: rejected with its key, the old zone keeps answering.
    let bad = src.replace(r#"value = "192.0.2.1""#, r#"value = "not-an-address""#);
    let err = server.reload(&parse(&bad)).await.unwrap_err();
    assert!(err.contains("dns.zones[0].records[5].value"), "{err}");
    let still = ask(addr, "static.example.test.", RecordType::A, None).await;
    assert_eq!(addresses(&still), vec!["192.0.2.1".to_string()]);
    // A good one takes effect at once.
    let good = src.replace(r#"value = "192.0.2.1""#, r#"value = "192.0.2.99""#);
    server.reload(&parse(&good)).await.unwrap();
    let after = ask(addr, "static.example.test.", RecordType::A, None).await;
    assert_eq!(addresses(&after), vec!["192.0.2.99".to_string()]);
    server.stop().await;
}

#[tokio::test]
async fn queries_keep_being_answered_during_reloads() {
    let db = sample_db("reload-load");
    let src = geo_config("127.0.0.1:0", &db, ["", "", ""], "");
    let (server, addr) = start(&src).await;
    let server = std::sync::Arc::new(server);
    let s2 = server.clone();
    let cfg = parse(&src);
    let reloader = tokio::spawn(async move {
        for _ in 0..20 {
            s2.reload(&cfg).await.unwrap();
        }
    });
    let mut answered = 0;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query_bytes("static.example.test", 1);
    let mut buf = [0u8; 1500];
    for _ in 0..500 {
        sock.send_to(&q, addr).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert_eq!(rcode_of(&buf[..n]), 0);
            answered += 1;
        }
    }
    reloader.await.unwrap();
    assert_eq!(answered, 500, "queries lost during reloads");
    match std::sync::Arc::try_unwrap(server) {
        Ok(s) => s.stop().await,
        Err(_) => panic!("server still shared"),
    }
}

#[tokio::test]
async fn unreachable_health_endpoints_do_not_stop_answers_before_they_are_judged() {
    // A region whose endpoint refuses connections goes down after one probe; until then it
    // answers (endpoints start up), and the server never blocks on probes.
    let db = sample_db("refused");
    let dead = "http://127.0.0.1:9/healthz";
    let (server, addr) = start(&geo_config("127.0.0.1:0", &db, [dead, "", ""], "")).await;
    assert!(
        eventually(Duration::from_secs(5), || server.metrics().contains(
            "outpost_dns_region_endpoint_up{url_full=\"http://127.0.0.1:9/healthz\"} 0"
        ))
        .await,
        "{}",
        server.metrics()
    );
    assert_eq!(
        cdn(addr, RecordType::A, "81.2.3.0", 24).await,
        ["192.0.2.20"]
    );
    server.stop().await;
}

const BIN: &str = env!("CARGO_BIN_EXE_outpost");

/// `outpost run` with a [dns] section: SIGHUP reloads zones; a broken file is refused and the
/// old zones keep serving; `check-config` names the bad keys with their lines.
#[tokio::test]
async fn sighup_reloads_the_zones_of_a_running_process() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = crate::support::temp_dir("dns-sighup");
    let cfg = dir.join("node.toml");
    let write = |value: &str| {
        std::fs::write(
            &cfg,
            format!(
                "[dns]\nlisten = [\"127.0.0.1:0\"]\n\n[[dns.zones]]\nname = \"example.test\"\nns = [\"ns1\"]\nrecords = [\n  {{ name = \"www\", type = \"A\", value = \"{value}\" }},\n]\n"
            ),
        )
        .unwrap();
    };
    write("192.0.2.1");
    let mut child = tokio::process::Command::new(BIN)
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("banner within 10s")
            .unwrap()
            .expect("process exited");
        if let Some(a) = line.strip_prefix("outpost: dns listening on udp+tcp ") {
            break a.parse().unwrap();
        }
    };
    let www = || async move {
        dig(addr, &["www.example.test", "+short"])
            .await
            .trim()
            .to_string()
    };
    assert_eq!(www().await, "192.0.2.1");
    let hup = || {
        let pid = child.id().unwrap().to_string();
        async move {
            let ok = Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .await
                .unwrap();
            assert!(ok.success());
        }
    };
    write("192.0.2.2");
    hup().await;
    let mut seen = String::new();
    for _ in 0..50 {
        seen = www().await;
        if seen == "192.0.2.2" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "192.0.2.2", "reload not applied");
    // A broken file: refused; the old zone keeps answering; check-config says where.
    write("not-an-address");
    hup().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(www().await, "192.0.2.2");
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&cfg)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:8: dns.zones[0].records[0].value:",
            cfg.display()
        )),
        "{err}"
    );
    child.kill().await.unwrap();
}

/// https:// health endpoints: verified with `[dns.health] ca` (the fleet CA), a region stays in
/// the answers; with a CA that did not sign the endpoint's certificate, the probe fails and the
/// region leaves them.
#[tokio::test]
async fn https_health_endpoints_are_verified_with_the_configured_ca() {
    use crate::support::pki::TestCa;
    use crate::support::tls_origin::TlsOrigin;
    let db = sample_db("https-health");
    let fleet = TestCa::new("dns-fleet");
    let other = TestCa::new("dns-other");
    let eu = TlsOrigin::start(&fleet.leaf("eu", &["127.0.0.1"])).await;
    let ok = || Reply::ok("ok", &[]);
    let us = Origin::start(move |_, _| ok()).await;
    let ap = Origin::start(move |_, _| ok()).await;
    let h = |o: &Origin| format!("{}/healthz", o.url());
    let eu_health = format!("{}/healthz", eu.url());
    let config = |ca: &std::path::Path| {
        geo_config("127.0.0.1:0", &db, [&eu_health, &h(&us), &h(&ap)], "").replace(
            "unhealthy_after = 1 }",
            &format!("unhealthy_after = 1, ca = \"{}\" }}", ca.display()),
        )
    };
    let frankfurt = |addr| {
        ask(
            addr,
            "cdn.example.test.",
            RecordType::A,
            Some(("81.2.3.0", 24)),
        )
    };
    // Bad input: a CA file that is not there, an endpoint that is not an http(s) URL.
    let bad = parse(
        &config(std::path::Path::new("/nonexistent/ca.pem")).replacen(
            &eu_health,
            "ftp://127.0.0.1/healthz",
            1,
        ),
    );
    let problems: Vec<String> = bad
        .validate("dns")
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("dns.health.ca: cannot read")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains(".health[0]") && p.contains("http:// or https://")),
        "{problems:?}"
    );
    let (trusted, addr) = start(&config(&fleet.ca_pem)).await;
    // Several probe intervals (200 ms): the verified endpoint keeps eu in.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(addresses(&frankfurt(addr).await), vec!["192.0.2.10"]);
    assert!(!eu.seen().is_empty(), "eu's endpoint was probed over TLS");
    trusted.stop().await;

    let (untrusted, addr) = start(&config(&other.ca_pem)).await;
    let mut left = false;
    for _ in 0..100 {
        if addresses(&frankfurt(addr).await) == vec!["192.0.2.20"] {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        left,
        "an endpoint that fails verification takes its region out"
    );
    untrusted.stop().await;
}
