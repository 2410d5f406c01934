//! The config page's redaction: every value under a key that names a secret (`token`,
//! `secret`, `key`, `password`, `hmac`, `credential`: `token`, `shield_secret`,
//! `purge_hub_token`, `eab_hmac_key`, ...) is replaced, whatever its type; and a URL's
//! user-info password is hidden. Paths to key files (`*_file`, `key` naming a PEM path) are
//! redacted too: the console never says where a secret lives either.

use serde_json::Value;

/// What stands for a hidden value.
pub(crate) const HIDDEN: &str = "(redacted)";

/// Whether a config key's value is a secret, never shown (the console's config page, the
/// reload's list of changes).
pub fn secret_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    [
        "token",
        "secret",
        "key",
        "password",
        "passwd",
        "hmac",
        "credential",
        "auth",
        "eab",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// `v` with every secret replaced by [`HIDDEN`].
pub(crate) fn redact(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if secret_key(k) && !v.is_null() {
                        Value::String(HIDDEN.into())
                    } else {
                        redact(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact).collect()),
        Value::String(s) => Value::String(hide_userinfo(s)),
        other => other.clone(),
    }
}

/// `scheme://user:password@host` becomes `scheme://user:(redacted)@host`.
fn hide_userinfo(s: &str) -> String {
    let Some((scheme, rest)) = s.split_once("://") else {
        return s.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return s.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:{HIDDEN}{}", &rest[at..]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn secrets_are_hidden_wherever_they_are() {
        let v = serde_json::json!({
            "admin": { "listen": "127.0.0.1:9900", "token": "demo", "token_file": "/etc/t" },
            "edge": {
                "shield_secret": "s3", "purge_hub_token": "t2",
                "purge_hub": "http://127.0.0.1:9900",
                "purge_nats_url": "nats://u:pw@nats:4222",
                "sites": [{ "hosts": ["a"], "tls": { "cert": "/c.pem", "key": "/k.pem" } }]
            },
            "acme": { "eab_kid": "kid", "eab_hmac_key": "hmac" },
            "telemetry": { "headers": { "Authorization": "Bearer x" } },
            "missing": { "token": null }
        });
        let r = redact(&v);
        let text = r.to_string();
        for secret in [
            "demo", "/etc/t", "s3", "t2", "pw", "/k.pem", "hmac\"", "Bearer x",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(r["admin"]["listen"], "127.0.0.1:9900");
        assert_eq!(r["edge"]["purge_nats_url"], "nats://u:(redacted)@nats:4222");
        assert_eq!(r["edge"]["sites"][0]["tls"]["cert"], "/c.pem");
        assert_eq!(r["acme"]["eab_kid"], HIDDEN);
        assert_eq!(r["missing"]["token"], Value::Null);
    }
}
