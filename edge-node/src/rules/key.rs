//! Cache-key additions of rules: request headers, cookie values and the device class select
//! separate cached copies of one URL. They ride on the cache's Vary mechanism (`cache/
//! vary.rs`) rather than the primary key, so a purge by URL still removes every copy:
//! header names are added to the stored response's `Vary`; cookie values and the device
//! class are folded into one request field of the node's own, [`KEY_FIELD`]. The names go
//! into the stored Vary spec only (`cache/vary.rs` `VarySpec::adding`), not into the stored
//! fields, so clients never see the node's field; it is removed from what clients send (a
//! client cannot pick another's copy) and never sent upstream. Clients see `Vary` with the
//! header names a rule keys on (`proxy/rules.rs`).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The request field carrying cookie values and the device class of a rule's key.
pub(crate) static KEY_FIELD: HeaderName = HeaderName::from_static("outpost-key");

/// The field the origin gets the device class in, with `key_device`.
pub(crate) static DEVICE_FIELD: HeaderName = HeaderName::from_static("x-device-class");

/// `mobile`, `tablet` or `desktop`, from a User-Agent (the common tokens: iPad and Android
/// without "Mobile" are tablets; "Mobi", iPhone, iPod and Android phones are mobile).
pub(crate) fn device_class(headers: &HeaderMap) -> &'static str {
    let ua = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ua.contains("iPad")
        || ua.contains("Tablet")
        || (ua.contains("Android") && !ua.contains("Mobile"))
    {
        "tablet"
    } else if ua.contains("Mobi") || ua.contains("iPhone") || ua.contains("iPod") {
        "mobile"
    } else {
        "desktop"
    }
}

/// The value of [`KEY_FIELD`] for `cookies` and the device class, `None` when the rule
/// keys on neither.
pub(crate) fn key_value(
    headers: &HeaderMap,
    cookies: &[String],
    device: bool,
) -> Option<HeaderValue> {
    if cookies.is_empty() && !device {
        return None;
    }
    let mut v = String::new();
    for name in cookies {
        v.push_str(name);
        v.push('=');
        if let Some(c) = super::matcher::cookies(headers, name).next() {
            v.push_str(c);
        }
        v.push(';');
    }
    if device {
        v.push_str("device=");
        v.push_str(device_class(headers));
    }
    // A cookie value that is not a field value: hashed instead.
    HeaderValue::from_str(&v).ok().or_else(|| {
        let h = xxhash_rust::xxh3::xxh3_64(v.as_bytes());
        HeaderValue::from_str(&format!("h{h:016x}")).ok()
    })
}

/// Adds `names` to the `Vary` of a response about to be stored.
pub(crate) fn add_vary(headers: &mut HeaderMap, names: &[HeaderName]) {
    if names.is_empty() {
        return;
    }
    let present: Vec<String> = headers
        .get_all(http::header::VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    for n in names {
        if !present.iter().any(|p| p == n.as_str()) {
            headers.append(http::header::VARY, HeaderValue::from(n.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ua(s: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("user-agent", s.parse().unwrap());
        h
    }

    #[test]
    fn device_classes() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148";
        let pixel = "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/120 Mobile Safari/537.36";
        let tab = "Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/120 Safari/537.36";
        let ipad = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X)";
        let desk = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0";
        assert_eq!(device_class(&ua(iphone)), "mobile");
        assert_eq!(device_class(&ua(pixel)), "mobile");
        assert_eq!(device_class(&ua(tab)), "tablet");
        assert_eq!(device_class(&ua(ipad)), "tablet");
        assert_eq!(device_class(&ua(desk)), "desktop");
        assert_eq!(device_class(&HeaderMap::new()), "desktop");
    }

    #[test]
    fn key_values_and_vary() {
        let mut h = ua("iPhone");
        h.insert("cookie", "lang=de; session=1".parse().unwrap());
        let v = key_value(&h, &["lang".into(), "theme".into()], true).unwrap();
        assert_eq!(v, "lang=de;theme=;device=mobile");
        assert!(key_value(&h, &[], false).is_none());
        let mut res = HeaderMap::new();
        res.insert("vary", "Accept-Encoding".parse().unwrap());
        add_vary(
            &mut res,
            &[KEY_FIELD.clone(), http::header::ACCEPT_ENCODING],
        );
        assert_eq!(res.get_all("vary").iter().count(), 2);
    }
}
