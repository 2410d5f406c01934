//! `outpost demo`: the whole system on one machine with no set-up, on the fixed loopback ports
//! of DESIGN.md: the sample origin on 127.0.0.1:8000, edge "eu" on 8081 (admin 9901) and edge
//! "us" on 8082 (admin 9902), admin token `demo`, and the purge hub's admin API on 9900 (the
//! shield's place in DESIGN.md). Roles not built yet are left out.

pub mod origin;

use crate::config::NodeConfig;
use crate::run;

/// The admin token of the demo.
pub const TOKEN: &str = "demo";

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
compress = ["br", "gzip"]

[[edge.sites]]
hosts = ["demo.test", "localhost", "127.0.0.1"]
origins = ["{origin}"]
query = "sort"
drop_params = ["utm_*"]
"#
    )
}

/// Runs the demo until interrupted.
pub async fn run(
    origin_addr: &str,
    hub_admin: &str,
    edges: &[(&str, u16, u16)],
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
    let hub_src = format!("[admin]\nlisten = \"{hub_admin}\"\ntoken = \"{TOKEN}\"\n");
    let hub_cfg = NodeConfig::parse("<demo purge hub>", &hub_src).map_err(|e| e.join("; "))?;
    running.push(("purge hub".to_string(), run::start(&hub_cfg).await?));
    for (region, port, admin) in edges {
        let src = edge_config(region, *port, *admin, &origin_url);
        let cfg =
            NodeConfig::parse(&format!("<demo edge {region}>"), &src).map_err(|e| e.join("; "))?;
        let r = run::start(&cfg).await?;
        running.push((region.to_string(), r));
    }
    println!("outpost demo: sample origin on {origin_url}");
    for (region, r) in &running {
        let name = if region == "purge hub" {
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
        r#"
Try:
  curl -si http://127.0.0.1:{eu}/static/app.js -H 'Host: demo.test'        # run twice: fwd=miss, then hit
  curl -si http://127.0.0.1:{eu}/api/time                                   # max-age=5, then stale-while-revalidate
  for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} %{{time_total}}s\n' http://127.0.0.1:{eu}/slow & done; wait
                                                                           # 5 clients, one origin fetch (collapsing)
  curl -si http://127.0.0.1:{eu}/vary -H 'Accept-Encoding: gzip' -o /dev/null -D -  # a gzip variant, Vary: Accept-Encoding
  curl -si http://127.0.0.1:{eu}/static/app.js -H 'Range: bytes=0-99'       # 206 from the cached object
  curl -s  http://127.0.0.1:{eu_admin}/metrics -H 'Authorization: Bearer {TOKEN}' | grep outpost_edge_requests
  curl -s  http://127.0.0.1:{eu_admin}/stats -H 'Authorization: Bearer {TOKEN}'
  outpost purge --admin http://127.0.0.1:{eu_admin} --token {TOKEN} --tag api    # reaches every edge via the hub
  outpost purge --admin http://127.0.0.1:{eu_admin} --token {TOKEN} --prefix http://127.0.0.1/static/ --soft
Ctrl-C stops the demo."#
    );
    run::stop_signal().await;
    for (_, r) in running {
        r.stop().await;
    }
    Ok(())
}
