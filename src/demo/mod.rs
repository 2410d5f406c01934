//! `outpost demo`: the whole system on one machine with no set-up, on the fixed loopback ports
//! of DESIGN.md: the sample origin on 127.0.0.1:8000, edge "eu" on 8081 (admin 9901) and edge
//! "us" on 8082 (admin 9902), and the shield on 8090 between them and the origin, whose admin
//! API on 9900 is the purge hub; admin token `demo`; the geo-DNS server on 127.0.0.1:5353 (UDP
//! and TCP) for zone `demo.test`, whose geo name `cdn.demo.test` answers with the "eu" or "us"
//! region by client location (a small sample City database is written to a temporary
//! directory) and drops a region whose edge's `/healthz` fails; it runs in the shield's process,
//! so its metrics are on the hub's admin API. Every admin API serves the web console at `/ui`
//! (token `demo`). Roles not built yet are left out.

pub mod origin;

use crate::config::NodeConfig;
use crate::run;

/// The instruments of one demo node: each node of the demo has its own admin `/metrics`.
fn node_metrics(cfg: &NodeConfig) -> agent::metrics::Registry {
    let defaults = agent::TelemetryConfig::default();
    let t = cfg.telemetry.as_ref().unwrap_or(&defaults);
    agent::metrics::Registry::new(agent::setup::resource(t, &[]))
}

/// The admin token of the demo.
pub const TOKEN: &str = "demo";

/// The shared secret between the demo's edges and its shield.
pub const SHIELD_SECRET: &str = "demo-shield-secret";

/// The config of the demo's shield, which is also the purge hub.
pub fn shield_config(listen: &str, admin: &str, origin: &str) -> String {
    format!(
        r#"[admin]
listen = "{admin}"
token = "{TOKEN}"

[telemetry]
service_name = "outpost-shield"

[shield]
listen = ["{listen}"]
secret = "{SHIELD_SECRET}"
memory_bytes = "128MiB"
stale_if_error = "10m"

[[shield.sites]]
hosts = ["demo.test", "localhost", "127.0.0.1"]
origins = ["{origin}"]
query = "sort"
drop_params = ["utm_*"]
"#
    )
}

/// The config of one demo edge.
pub fn edge_config(region: &str, port: u16, admin_port: u16, origin: &str) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:{admin_port}"
token = "{TOKEN}"

[telemetry]
service_name = "outpost-edge"
region = "{region}"

[edge]
listen = ["127.0.0.1:{port}"]
memory_bytes = "64MiB"
stale_if_error = "10m"
purge_hub = "http://127.0.0.1:9900"
shields = ["http://127.0.0.1:8090"]
shield_secret = "{SHIELD_SECRET}"
compress = ["br", "gzip"]

[[edge.sites]]
hosts = ["demo.test", "localhost", "127.0.0.1"]
origins = ["{origin}"]
query = "sort"
drop_params = ["utm_*"]
"#
    )
}

/// The config of the demo's DNS server. Each region answers with a loopback address of its own
/// (eu 127.0.0.1, us 127.0.0.2: an A record has no port) and is probed on its edge's admin port.
pub fn dns_config(listen: &str, geoip_db: &std::path::Path, edges: &[(&str, u16, u16)]) -> String {
    // Region sites: eu in Frankfurt, us in Ashburn; other names get a spot in the Atlantic.
    let site = |name: &str| match name {
        "eu" => (50.11, 8.68),
        "us" => (39.04, -77.49),
        _ => (40.0, -30.0),
    };
    let regions: Vec<String> = edges
        .iter()
        .enumerate()
        .map(|(i, (name, _, admin))| {
            let (lat, lon) = site(name);
            format!(
                r#"  {{ name = "{name}", lat = {lat}, lon = {lon}, addresses = ["127.0.0.{n}", "::{n}"], health = "http://127.0.0.1:{admin}/healthz" }},"#,
                n = i + 1
            )
        })
        .collect();
    format!(
        r#"[dns]
listen = ["{listen}"]
geoip_db = "{db}"
health = {{ interval = "1s", timeout = "500ms", healthy_after = 1, unhealthy_after = 2 }}

[[dns.zones]]
name = "demo.test"
ns = ["ns1"]
records = [
  {{ name = "ns1", type = "A", value = "127.0.0.1" }},
  {{ name = "www", type = "CNAME", value = "cdn" }},
  {{ name = "@", type = "TXT", value = "outpost demo zone" }},
  {{ name = "@", type = "MX", value = "10 mail" }},
  {{ name = "mail", type = "A", value = "127.0.0.1" }},
  {{ name = "@", type = "CAA", value = '0 issue "letsencrypt.org"' }},
]

[[dns.zones.geo]]
name = "cdn"
ttl = 10
default = "{default}"
regions = [
{regions}
]
"#,
        db = geoip_db.display(),
        default = edges.first().map_or("eu", |e| e.0),
        regions = regions.join("\n"),
    )
}

/// Runs the demo until interrupted.
pub async fn run(
    origin_addr: &str,
    shield_addr: &str,
    hub_admin: &str,
    edges: &[(&str, u16, u16)],
    dns_addr: &str,
) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(origin_addr)
        .await
        .map_err(|e| format!("demo origin: cannot listen on {origin_addr}: {e}"))?;
    let origin_url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    tokio::spawn(origin::serve(listener));
    let mut running = Vec::new();
    // The shield's process also runs the DNS server (its metrics are on the hub's admin API).
    let dir = std::env::temp_dir().join(format!("outpost-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("demo: {}: {e}", dir.display()))?;
    let db = dir.join("sample-city.mmdb");
    geo_dns::sample_db::write(&db, geo_dns::sample_db::WORLD)?;
    let hub_src = format!(
        "{}\n{}",
        shield_config(shield_addr, hub_admin, &origin_url),
        dns_config(dns_addr, &db, edges)
    );
    let hub_cfg = NodeConfig::parse("<demo shield>", &hub_src).map_err(|e| e.join("; "))?;
    running.push((
        "shield".to_string(),
        run::start_text(&hub_cfg, &node_metrics(&hub_cfg), &hub_src).await?,
    ));
    for (region, port, admin) in edges {
        let src = edge_config(region, *port, *admin, &origin_url);
        let cfg =
            NodeConfig::parse(&format!("<demo edge {region}>"), &src).map_err(|e| e.join("; "))?;
        let r = run::start_text(&cfg, &node_metrics(&cfg), &src).await?;
        running.push((region.to_string(), r));
    }
    println!("outpost demo: sample origin on {origin_url}");
    for (region, r) in &running {
        let name = if region == "shield" {
            region.clone()
        } else {
            format!("edge {region}")
        };
        for line in r.banner(&name) {
            println!("{line}");
        }
    }
    let (eu, eu_admin) = edges
        .first()
        .map(|(_, p, a)| (*p, *a))
        .unwrap_or((8081, 9901));
    println!(
        "\nWeb console: http://{hub_admin}/ui (the purge hub: fleet, purge log, DNS) and \
         http://127.0.0.1:{eu_admin}/ui (edge eu): sign in with the admin token \"{TOKEN}\""
    );
    println!(
        r#"
Try:
  curl -si http://127.0.0.1:{eu}/static/app.js -H 'Host: demo.test'        # run twice: fwd=miss, then hit
  curl -si http://127.0.0.1:{eu}/api/time                                   # max-age=5, then stale-while-revalidate
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}s\n' http://127.0.0.1:{eu}/slow & done; wait
                                                                           # 5 clients, one origin fetch (collapsing)
  curl -si http://127.0.0.1:{eu}/vary -H 'Accept-Encoding: gzip' -o /dev/null -D -  # a gzip variant, Vary: Accept-Encoding
  curl -si http://127.0.0.1:{eu}/static/app.js -H 'Host: demo.test' -H 'Range: bytes=0-99'  # 206 from the cached object
  curl -s  http://127.0.0.1:{eu_admin}/metrics -H 'Authorization: Bearer {TOKEN}' | grep request_duration_seconds_count
  curl -s  http://127.0.0.1:{eu_admin}/stats -H 'Authorization: Bearer {TOKEN}'
  outpost purge --admin http://127.0.0.1:{eu_admin} --token {TOKEN} --tag api    # reaches every edge via the hub
  outpost purge --admin http://127.0.0.1:{eu_admin} --token {TOKEN} --prefix http://demo.test/static/ --soft
  outpost purge log --admin http://{hub_admin} --token {TOKEN}                 # the hub's purge log
  outpost inspect http://demo.test/static/app.js --admin http://127.0.0.1:{eu_admin} --token {TOKEN}  # what the edge holds
  dig @{dns_host} -p {dns_port} cdn.demo.test +subnet=81.2.3.0/24    # a Frankfurt client: eu (127.0.0.1)
  dig @{dns_host} -p {dns_port} cdn.demo.test +subnet=24.1.2.0/24    # a New York client: us (127.0.0.2)
  dig @{dns_host} -p {dns_port} www.demo.test AAAA +subnet=2600::/32 # CNAME to cdn, then us over IPv6
  dig @{dns_host} -p {dns_port} nope.demo.test                       # NXDOMAIN with the SOA
  curl -s  http://{hub_admin}/metrics -H 'Authorization: Bearer {TOKEN}' | grep outpost_dns_geo
Ctrl-C stops the demo."#,
        dns_host = dns_addr.rsplit_once(':').map_or("127.0.0.1", |h| h.0),
        dns_port = dns_addr.rsplit_once(':').map_or("5353", |h| h.1),
    );
    run::stop_signal().await;
    for (_, r) in running {
        r.stop().await;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
