//! Certificates from an ACME CA (RFC 8555; Let's Encrypt by default) for the hosts of the
//! sites that ask (`acme = true`), with the `[acme]` section's directory, contact and external
//! account binding.
//!
//! - The account key and the certificates live under `state_dir/acme/` (mode 0600,
//!   `store.rs`); at start the saved certificates serve from the first handshake.
//! - One task per site keeps its certificate: it orders one when there is none, then sleeps
//!   until two thirds of the lifetime (less up to a twentieth of it, at random, so a fleet
//!   does not renew all at once; earlier if `renew_before` says so) and renews. A failed order is retried after `retry_after`,
//!   doubling to an hour; meanwhile the current certificate keeps serving. Fourteen days
//!   before expiry every check logs a warning; `outpost.tls.certificate.expiry` says the
//!   time left of each name.
//! - Validation is HTTP-01 (`challenges.rs`): the node answers the CA's validator on
//!   `/.well-known/acme-challenge/` of its plain listeners while the order waits; or
//!   TLS-ALPN-01 (RFC 8737): its TLS listeners show a challenge certificate to clients asking
//!   for `acme-tls/1` (`certs.rs`, `tls.rs`); or DNS-01: a TXT record published in the zone
//!   by an Outpost `[dns]` node's admin API (wildcard names need it).
//! - A new certificate is handed to the TLS handshake (`certs.rs`): the next connection gets
//!   it, open ones are not touched.
//! - In a fleet, only the purge hub orders; the others follow it (`fleet.rs`): its challenges
//!   and certificates reach every node, so any node can answer the CA's validator and none
//!   orders on its own (the CA's rate limits count one order per name).

pub(crate) mod certs;
pub(crate) mod challenges;
mod fleet;
mod store;

use crate::config::{AcmeChallenge, AcmeConfig, SiteConfig};
use agent::throttle::RepeatedWarning;
use certs::{LiveCerts, Validity};
use challenges::Challenges;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::Store;
use tokio::sync::watch;

/// The hub a follower gets its ACME state from.
#[derive(Debug, Clone)]
pub struct AcmeHub {
    /// Base URL of the hub's admin API.
    pub url: String,
    /// The admin token.
    pub token: String,
    /// PEM file of the CAs that sign an https:// hub's certificate (the fleet CA).
    pub ca: Option<PathBuf>,
}

/// Longest wait between two attempts after failures.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How far ahead of expiry each check warns.
const WARN_AHEAD: Duration = Duration::from_secs(14 * 86400);
/// Longest sleep before looking again (the clock may jump; warnings repeat daily).
const RECHECK: Duration = Duration::from_secs(12 * 3600);

/// The node's ACME client and the certificates it keeps.
pub(crate) struct AcmeService {
    cfg: AcmeConfig,
    /// The names of each certificate (a site's hosts, wildcards left out: they need DNS-01).
    orders: Vec<Vec<String>>,
    store: Store,
    live: Arc<LiveCerts>,
    challenges: Arc<Challenges>,
    account: tokio::sync::Mutex<Option<Account>>,
    /// Where certificates come from: this node orders them (None), or it follows a hub.
    hub: Option<AcmeHub>,
    /// TLS-ALPN-01 digests shown now, by name (what a hub shares).
    alpn_digests: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
    /// Bumped at every change followers should see.
    version: watch::Sender<u64>,
    /// Followers by the id they poll with: when last seen, and the version they had then.
    followers: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u64)>>,
    /// `outpost.acme.orders`, by `outcome` (`issued`, `failed`).
    orders_made: opentelemetry::metrics::Counter<u64>,
}

impl AcmeService {
    /// The service for the `acme = true` sites of `sites`, keeping its state in `state_dir`.
    pub(crate) fn new(
        cfg: &AcmeConfig,
        sites: &[SiteConfig],
        state_dir: &Path,
        live: Arc<LiveCerts>,
        challenges: Arc<Challenges>,
        hub: Option<AcmeHub>,
        meter: &opentelemetry::metrics::Meter,
    ) -> Result<AcmeService, String> {
        // Wildcards can only be validated by DNS-01.
        let wildcards = cfg.challenge == AcmeChallenge::Dns01;
        let orders = sites
            .iter()
            .filter(|s| s.acme)
            .map(|s| {
                s.hosts
                    .iter()
                    .filter(|h| wildcards || !h.starts_with("*."))
                    .map(|h| h.to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .filter(|names| !names.is_empty())
            .collect();
        Ok(AcmeService {
            cfg: cfg.clone(),
            orders,
            store: Store::open(state_dir)?,
            live,
            challenges,
            account: tokio::sync::Mutex::new(None),
            hub,
            alpn_digests: std::sync::Mutex::default(),
            version: watch::Sender::new(0),
            followers: std::sync::Mutex::default(),
            orders_made: meter
                .u64_counter("outpost.acme.orders")
                .with_description("Certificate orders, by outcome (issued, failed).")
                .build(),
        })
    }

    /// Serves the certificates saved by an earlier run, from the first handshake on.
    pub(crate) fn load_saved(&self) {
        for names in &self.orders {
            match self.store.cert(&names[0]) {
                Ok(Some((chain, key))) => match self.live.install(names, &chain, &key) {
                    Ok(v) => {
                        tracing::info!(names = ?names, not_after = %httpdate::fmt_http_date(v.not_after), "ACME certificate loaded")
                    }
                    Err(e) => {
                        tracing::warn!(names = ?names, error = %e, "a saved ACME certificate is unusable; ordering a new one")
                    }
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(names = ?names, error = %e, "cannot read a saved ACME certificate")
                }
            }
        }
    }

    /// Keeps every certificate until `shutdown` flips: orders them, or follows the hub.
    pub(crate) async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        if let Some(hub) = self.hub.clone() {
            return self.follow(hub, shutdown).await;
        }
        let mut tasks = tokio::task::JoinSet::new();
        for names in self.orders.clone() {
            tasks.spawn(self.clone().keep(names, shutdown.clone()));
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Orders, renews and retries the certificate for `names`.
    async fn keep(self: Arc<Self>, names: Vec<String>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = self.cfg.retry_after.0;
        let list = names.join(", ");
        let failing = RepeatedWarning::new(
            format!("ACME order for {list} failed; the current certificate, if any, keeps serving"),
            format!("ACME order for {list} succeeded"),
        );
        // No recovery line of its own: a renewal resets it, and "ACME certificate issued" says so.
        let expiring = RepeatedWarning::new(
            format!("TLS certificate for {list} expires soon"),
            String::new(),
        );
        loop {
            if let Some(due) = self.renewal_due(&names, &expiring) {
                let wait = due
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .min(RECHECK);
                if !wait.is_zero() {
                    if sleep_or_stop(wait, &mut shutdown).await {
                        return;
                    }
                    continue;
                }
            }
            match self.issue(&names).await {
                Ok(v) => {
                    self.orders_made
                        .add(1, &[opentelemetry::KeyValue::new("outcome", "issued")]);
                    agent::log_report!(failing.succeeded());
                    tracing::info!(names = ?names, not_after = %httpdate::fmt_http_date(v.not_after), "ACME certificate issued");
                    backoff = self.cfg.retry_after.0;
                    // Never two orders for one certificate closer than that.
                    if sleep_or_stop(backoff, &mut shutdown).await {
                        return;
                    }
                }
                Err(e) => {
                    self.orders_made
                        .add(1, &[opentelemetry::KeyValue::new("outcome", "failed")]);
                    agent::log_report!(failing.failed(&e));
                    if sleep_or_stop(backoff, &mut shutdown).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// When the saved certificate for `names` is due for renewal (None: there is none, order
    /// now); warns through `expiring` while it expires within [`WARN_AHEAD`].
    fn renewal_due(&self, names: &[String], expiring: &RepeatedWarning) -> Option<SystemTime> {
        let (chain, _) = self.store.cert(&names[0]).ok()??;
        let v = Validity::of_chain(&chain).ok()?;
        match expires_soon(&v, SystemTime::now()) {
            Some(left) => {
                let hours = left.as_secs() / 3600;
                let left = format!("{} days {} h left", hours / 24, hours % 24);
                agent::log_report!(expiring.failed(left));
            }
            // Renewed: "ACME certificate issued" said so.
            None => expiring.reset(),
        }
        Some(v.renew_at(jitter(&names[0]), self.cfg.renew_before.map(|d| d.0)))
    }

    /// One order: HTTP-01 for every name, then the certificate, saved and served.
    async fn issue(&self, names: &[String]) -> Result<Validity, String> {
        let account = self.account().await?;
        let idents: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&idents))
            .await
            .map_err(|e| format!("new order: {e}"))?;
        let mut shown = Vec::new();
        let validated = self.validate(&mut order, &mut shown).await;
        for s in &shown {
            match self.cfg.challenge {
                AcmeChallenge::Http01 => self.challenges.remove(s),
                AcmeChallenge::Dns01 => {
                    if let Some((name, value)) = s.split_once(' ') {
                        if let Err(e) = self.dns_record(false, name, value).await {
                            tracing::warn!(name, error = %e, "cannot withdraw a DNS-01 record");
                        }
                    }
                }
                AcmeChallenge::TlsAlpn01 => {
                    self.live.remove_challenge(s);
                    if let Ok(mut m) = self.alpn_digests.lock() {
                        m.remove(s);
                    }
                }
            }
        }
        self.bump();
        validated?;
        let key = order
            .finalize()
            .await
            .map_err(|e| format!("finalize: {e}"))?;
        let chain = order
            .poll_certificate(&poll_policy())
            .await
            .map_err(|e| format!("certificate: {e}"))?;
        self.store.save_cert(&names[0], &chain, &key)?;
        let v = self.live.install(names, &chain, &key)?;
        self.bump();
        Ok(v)
    }

    /// Answers every pending authorization of `order` (HTTP-01 or TLS-ALPN-01, as configured)
    /// and waits until the CA has validated them all; what it put up (tokens, or names with a
    /// challenge certificate) goes into `shown`.
    async fn validate(&self, order: &mut Order, shown: &mut Vec<String>) -> Result<(), String> {
        let mut authorizations = order.authorizations();
        while let Some(a) = authorizations.next().await {
            let mut a = a.map_err(|e| format!("authorization: {e}"))?;
            match a.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let (kind, name) = match self.cfg.challenge {
                AcmeChallenge::Http01 => (ChallengeType::Http01, "http-01"),
                AcmeChallenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
                AcmeChallenge::Dns01 => (ChallengeType::Dns01, "dns-01"),
            };
            let mut challenge = a
                .challenge(kind)
                .ok_or_else(|| format!("the CA offers no {name} challenge"))?;
            match self.cfg.challenge {
                AcmeChallenge::Http01 => {
                    self.challenges
                        .put(&challenge.token, challenge.key_authorization().as_str());
                    shown.push(challenge.token.clone());
                    self.bump();
                }
                AcmeChallenge::Dns01 => {
                    // The record of `*.example.com` is at `_acme-challenge.example.com`.
                    let host = challenge.identifier().to_string();
                    let base = host.strip_prefix("*.").unwrap_or(&host).to_string();
                    let name = format!("_acme-challenge.{base}");
                    let value = challenge.key_authorization().dns_value();
                    self.dns_record(true, &name, &value).await?;
                    shown.push(format!("{name} {value}"));
                }
                AcmeChallenge::TlsAlpn01 => {
                    let host = challenge.identifier().to_string();
                    let digest = challenge.key_authorization().digest();
                    self.live.put_challenge(&host, digest.as_ref())?;
                    if let Ok(mut m) = self.alpn_digests.lock() {
                        m.insert(host.clone(), digest.as_ref().to_vec());
                    }
                    shown.push(host);
                    self.bump();
                }
            }
            // Every edge must be able to answer before the CA asks.
            self.wait_for_followers().await;
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {e}"))?;
        }
        let status = order
            .poll_ready(&poll_policy())
            .await
            .map_err(|e| format!("validation: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!("the CA did not validate the order: {status:?}"));
        }
        Ok(())
    }

    /// Publishes (`add`) or withdraws a DNS-01 record through the `[dns]` node's admin API.
    async fn dns_record(&self, add: bool, name: &str, value: &str) -> Result<(), String> {
        use http_body_util::BodyExt;
        let (Some(api), Some(token)) = (&self.cfg.dns_api, &self.cfg.dns_api_token) else {
            return Err("dns-01 needs dns_api and dns_api_token".into());
        };
        let client = crate::upstream::tls::admin_client::<http_body_util::Full<bytes::Bytes>>(
            self.cfg.dns_api_ca.as_deref(),
        )?;
        let url = format!("{}/dns/acme-challenge", api.trim_end_matches('/'));
        let body = serde_json::json!({ "name": name, "value": value }).to_string();
        let req = http::Request::builder()
            .method(if add {
                http::Method::POST
            } else {
                http::Method::DELETE
            })
            .uri(&url)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let res = tokio::time::timeout(Duration::from_secs(10), client.request(req))
            .await
            .map_err(|_| format!("{url}: no answer within 10 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let text = res
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(format!("{url}: {status}: {text}"))
    }

    /// The ACME account: saved credentials, else a new account (saved).
    async fn account(&self) -> Result<Account, String> {
        let mut slot = self.account.lock().await;
        if let Some(a) = &*slot {
            return Ok(a.clone());
        }
        let builder = match &self.cfg.directory_ca {
            Some(ca) => Account::builder_with_root(ca),
            None => Account::builder(),
        }
        .map_err(|e| format!("ACME client: {e}"))?;
        let account = match self.store.account()? {
            Some(json) => {
                let creds: AccountCredentials =
                    serde_json::from_str(&json).map_err(|e| format!("saved ACME account: {e}"))?;
                builder
                    .from_credentials(creds)
                    .await
                    .map_err(|e| format!("saved ACME account: {e}"))?
            }
            None => {
                let contact: Vec<&str> = self.cfg.contact.iter().map(String::as_str).collect();
                let eab = self.external_account()?;
                let (account, creds) = builder
                    .create(
                        &NewAccount {
                            contact: &contact,
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        self.cfg.directory.clone(),
                        eab.as_ref(),
                    )
                    .await
                    .map_err(|e| format!("new ACME account at {}: {e}", self.cfg.directory))?;
                let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
                self.store.save_account(&json)?;
                tracing::info!(directory = %self.cfg.directory, id = %account.id(), "ACME account created");
                account
            }
        };
        *slot = Some(account.clone());
        Ok(account)
    }

    /// The external account binding of the config, if any.
    fn external_account(&self) -> Result<Option<ExternalAccountKey>, String> {
        Ok(self
            .cfg
            .eab_key()?
            .map(|(kid, key)| ExternalAccountKey::new(kid, &key)))
    }
}

/// `outpost.tls.certificate.expiry`: seconds until each ACME certificate expires, by name.
pub(crate) fn register_expiry_gauge(meter: &opentelemetry::metrics::Meter, live: &Arc<LiveCerts>) {
    let live = Arc::downgrade(live);
    let _ = meter
        .f64_observable_gauge("outpost.tls.certificate.expiry")
        .with_unit("s")
        .with_description("Seconds until the certificate expires (negative once expired).")
        .with_callback(move |o| {
            if let Some(live) = live.upgrade() {
                for (name, left) in live.expiries() {
                    o.observe(
                        left,
                        &[opentelemetry::KeyValue::new("tls.server.name", name)],
                    );
                }
            }
        })
        .build();
}

/// The time left when it is under [`WARN_AHEAD`] (zero once expired).
fn expires_soon(v: &Validity, now: SystemTime) -> Option<Duration> {
    let left = v.not_after.duration_since(now).unwrap_or_default();
    (left < WARN_AHEAD).then_some(left)
}

/// How long to wait on the CA while it validates or issues.
fn poll_policy() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90))
}

/// A number in [0, 1) that differs between names and runs.
fn jitter(name: &str) -> f64 {
    use std::hash::BuildHasher;
    let h = std::collections::hash_map::RandomState::new().hash_one(name);
    (h % 10_000) as f64 / 10_000.0
}

/// Sleeps `d`; true when `shutdown` flipped first.
async fn sleep_or_stop(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = shutdown.wait_for(|s| *s) => true,
    }
}

/// A handle on a node's ACME state, for the admin API (`GET /acme/state`).
#[derive(Clone)]
pub struct AcmeHandle(pub(crate) Arc<AcmeService>);

impl AcmeHandle {
    /// The shared state (challenges, certificates and their keys) as JSON, once its version is
    /// above `since` or after `wait`; `node` names the follower asking (it is waited for
    /// before the CA is told a challenge is ready).
    pub async fn state_since(
        &self,
        since: u64,
        wait: Duration,
        node: Option<&str>,
    ) -> serde_json::Value {
        serde_json::to_value(self.0.fleet_state_since(since, wait, node).await)
            .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_comes_fourteen_days_ahead() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let v = |days_left: u64| Validity {
            not_before: now - Duration::from_secs(80 * 86400),
            not_after: now + Duration::from_secs(days_left * 86400),
        };
        assert_eq!(expires_soon(&v(15), now), None);
        assert_eq!(
            expires_soon(&v(13), now),
            Some(Duration::from_secs(13 * 86400))
        );
        let expired = Validity {
            not_before: now - Duration::from_secs(100 * 86400),
            not_after: now - Duration::from_secs(86400),
        };
        assert_eq!(expires_soon(&expired, now), Some(Duration::ZERO));
    }
}
