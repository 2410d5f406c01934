//! Pebble, the ACME test CA (Debian package `pebble`), as a process on loopback: its HTTPS
//! certificate from a test CA, its validation of HTTP-01 sent to a given port, its DNS lookups
//! to a given server. Killed on drop.

use super::free_port;
use super::pki::TestCa;
use std::net::SocketAddr;
use std::time::Duration;

pub struct Pebble {
    pub dir_url: String,
    /// The CA that signed Pebble's own HTTPS certificate (`[acme] directory_ca`).
    pub https_ca: TestCa,
    management: SocketAddr,
    child: std::process::Child,
}

impl Pebble {
    /// Starts Pebble validating HTTP-01 on `http_port` of whatever `dns` resolves names to.
    pub async fn start(http_port: u16, dns: SocketAddr) -> Pebble {
        Self::start_with(http_port, free_port(), dns).await
    }

    /// Starts Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`.
    pub async fn start_with(http_port: u16, tls_port: u16, dns: SocketAddr) -> Pebble {
        Self::launch(http_port, tls_port, dns, None).await
    }

    /// Starts Pebble requiring external account binding with this key id and HMAC key
    /// (base64url).
    pub async fn start_with_eab(http_port: u16, dns: SocketAddr, kid: &str, key: &str) -> Pebble {
        Self::launch(http_port, free_port(), dns, Some((kid, key))).await
    }

    async fn launch(
        http_port: u16,
        tls_port: u16,
        dns: SocketAddr,
        eab: Option<(&str, &str)>,
    ) -> Pebble {
        let https_ca = TestCa::new("pebble-https");
        let leaf = https_ca.leaf("pebble", &["127.0.0.1", "localhost"]);
        let (acme, management) = (free_port(), free_port());
        let config = https_ca.dir.join("pebble-config.json");
        let mut settings = serde_json::json!({
            "listenAddress": format!("127.0.0.1:{acme}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": leaf.cert_pem,
            "privateKey": leaf.key_pem,
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab.is_some(),
        });
        if let Some((kid, key)) = eab {
            settings["externalAccountMACKeys"] = serde_json::json!({ kid: key });
        }
        std::fs::write(
            &config,
            serde_json::json!({ "pebble": settings }).to_string(),
        )
        .unwrap();
        let log = std::fs::File::create(https_ca.dir.join("pebble.log")).unwrap();
        let child = std::process::Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .arg("-dnsserver")
            .arg(dns.to_string())
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("pebble must be installed (scripts/check installs it)");
        let p = Pebble {
            dir_url: format!("https://127.0.0.1:{acme}/dir"),
            https_ca,
            management: format!("127.0.0.1:{management}").parse().unwrap(),
            child,
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", acme))
                .await
                .is_ok()
            {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("pebble did not start: {}", p.log());
    }

    /// The root Pebble signs with (regenerated at every start), PEM.
    pub async fn root_pem(&self) -> Vec<u8> {
        let ca =
            reqwest::Certificate::from_pem(&std::fs::read(&self.https_ca.ca_pem).unwrap()).unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap()
            .get(format!("https://{}/roots/0", self.management))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec()
    }

    /// What Pebble logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.https_ca.dir.join("pebble.log")).unwrap_or_default()
    }

    /// Stops Pebble (the CA goes away).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}
