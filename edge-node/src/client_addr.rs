//! Who the client is when a node sits behind proxies or load balancers.
//!
//! A request's client address starts as the TCP peer, or the source a PROXY protocol header
//! gave (`listener/proxy_protocol.rs`). When that address is one of the section's
//! `trusted_proxies`, the header the proxy sets (`real_ip_header`: `X-Forwarded-For`, or
//! RFC 7239 `Forwarded`) is walked from the right, past every address that is itself a
//! trusted proxy: the first that is not is the client. From any other peer those headers are
//! ignored, so a client cannot name itself someone else.
//!
//! Bad input (garbage, an empty list, `unknown`, obfuscated identifiers, a hop without an
//! address) in the part of the header that is walked keeps the address the walk started
//! from: a proxy that cannot say who sent the request names nobody. Never panics.
//!
//! Hand-written: the crates that parse `Forwarded` (forwarded-header-value and the like)
//! reject a whole header on one bad element and do not walk it against a trust list.

use crate::config::RealIpHeader;
use crate::net::parse_network;
use http::header::HeaderMap;
use std::net::{IpAddr, SocketAddr};

/// A list of networks (`trusted_proxies`, admin `allow`/`deny`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Networks(Vec<ipnet::IpNet>);

impl Networks {
    /// The networks of `list` (CIDR or bare addresses, as `check-config` validates them).
    pub(crate) fn parse(list: &[String]) -> Result<Self, String> {
        list.iter()
            .map(|n| parse_network(n))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address as its IPv4 address) is in one of them.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// Whether the list is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a node finds the client behind its trusted proxies.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientAddr {
    trusted: Networks,
    header: RealIpHeader,
}

impl ClientAddr {
    /// Believes the `header` of requests from `trusted`.
    pub(crate) fn new(trusted: Networks, header: RealIpHeader) -> Self {
        Self { trusted, header }
    }

    /// The client of a request with `headers` that came from `from` (the TCP peer, or the
    /// PROXY header's source).
    pub(crate) fn resolve(&self, headers: &HeaderMap, from: SocketAddr) -> SocketAddr {
        if !self.trusted.contains(from.ip()) {
            return from;
        }
        let name = match self.header {
            RealIpHeader::XForwardedFor => "x-forwarded-for",
            RealIpHeader::Forwarded => "forwarded",
        };
        let mut fields = Vec::new();
        for v in headers.get_all(name) {
            match v.to_str() {
                Ok(s) => fields.push(s),
                // Not even visible ASCII: nobody is named.
                Err(_) => return from,
            }
        }
        let hops = match self.header {
            RealIpHeader::XForwardedFor => fields
                .iter()
                .flat_map(|f| f.split(','))
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(node_addr)
                .collect::<Vec<_>>(),
            RealIpHeader::Forwarded => fields
                .iter()
                .flat_map(|f| split_quoted(f, b','))
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(forwarded_for)
                .collect(),
        };
        walk(hops.into_iter().rev(), from, &self.trusted)
    }
}

/// From the nearest hop (right) outwards: the first address not in `trusted`; the farthest
/// one when all are; `from` when a hop on the way names nobody.
fn walk(
    hops: impl Iterator<Item = Option<SocketAddr>>,
    from: SocketAddr,
    trusted: &Networks,
) -> SocketAddr {
    let mut farthest = from;
    for hop in hops {
        let Some(a) = hop else {
            return from;
        };
        if !trusted.contains(a.ip()) {
            return a;
        }
        farthest = a;
    }
    farthest
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711` (port 0 when none is given; an obfuscated port,
/// `_abc`, is none).
fn node_addr(s: &str) -> Option<SocketAddr> {
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(canonical(SocketAddr::new(ip, 0)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(canonical(a));
    }
    let (host, port) = match s.strip_prefix('[') {
        Some(rest) => {
            let (h, after) = rest.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => {
            let (h, p) = s.rsplit_once(':')?;
            (h, Some(p))
        }
    };
    let ip: IpAddr = host.parse().ok()?;
    if s.starts_with('[') && ip.is_ipv4() {
        return None;
    }
    let port = match port {
        None => 0,
        Some(p) if p.starts_with('_') && valid_obfuscated(p) => 0,
        Some(p) => p.parse::<u16>().ok()?,
    };
    Some(canonical(SocketAddr::new(ip, port)))
}

/// `_` then letters, digits, `.`, `_`, `-` (RFC 7239 6.3).
fn valid_obfuscated(s: &str) -> bool {
    s.len() > 1
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// The address in the `for` parameter of one `Forwarded` element (`for=192.0.2.1;proto=https`,
/// `for="[2001:db8::1]:4711"`); `None` for `unknown`, an obfuscated node, no `for`, or a
/// `for` given twice.
fn forwarded_for(element: &str) -> Option<SocketAddr> {
    let mut found = None;
    for pair in split_quoted(element, b';') {
        let (name, value) = pair.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(unquote(value.trim())?);
    }
    node_addr(&found?)
}

/// A token or a quoted string (RFC 9110 5.6.4), unquoted.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return (!v.is_empty() && !v.contains('"')).then(|| v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `s` split at `sep` outside quoted strings.
fn split_quoted(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const PEER: &str = "10.0.0.5:40000";

    fn resolver(header: RealIpHeader) -> ClientAddr {
        let trusted = Networks::parse(&["10.0.0.0/8".into(), "192.168.1.1".into()]).unwrap();
        ClientAddr::new(trusted, header)
    }

    fn xff(values: &[&str]) -> String {
        resolve(RealIpHeader::XForwardedFor, "x-forwarded-for", values, PEER)
    }

    fn fwd(values: &[&str]) -> String {
        resolve(RealIpHeader::Forwarded, "forwarded", values, PEER)
    }

    fn resolve(h: RealIpHeader, name: &'static str, values: &[&str], from: &str) -> String {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(name, http::HeaderValue::from_str(v).unwrap());
        }
        resolver(h)
            .resolve(&headers, from.parse().unwrap())
            .to_string()
    }

    #[test]
    fn x_forwarded_for_is_walked_from_the_right_past_trusted_proxies() {
        assert_eq!(xff(&["203.0.113.7"]), "203.0.113.7:0");
        // The client wrote the leftmost itself: the rightmost untrusted is believed.
        assert_eq!(
            xff(&["1.1.1.1, 203.0.113.7, 10.1.2.3, 192.168.1.1"]),
            "203.0.113.7:0"
        );
        // Several fields are one list, in order.
        assert_eq!(xff(&["1.1.1.1", "203.0.113.7, 10.9.9.9"]), "203.0.113.7:0");
        // Every hop trusted: the farthest.
        assert_eq!(xff(&["10.1.1.1, 10.2.2.2"]), "10.1.1.1:0");
        // Ports and IPv6 forms.
        assert_eq!(xff(&["203.0.113.7:4711"]), "203.0.113.7:4711");
        assert_eq!(xff(&["2001:db8::1"]), "[2001:db8::1]:0");
        assert_eq!(xff(&["[2001:db8::1]:443"]), "[2001:db8::1]:443");
        assert_eq!(xff(&["[2001:db8::1]"]), "[2001:db8::1]:0");
        assert_eq!(xff(&["::ffff:203.0.113.7"]), "203.0.113.7:0");
        // Empty elements are skipped (RFC 9110 5.6.1).
        assert_eq!(xff(&[" , 203.0.113.7 ,, "]), "203.0.113.7:0");
    }

    #[test]
    fn an_untrusted_peer_cannot_name_a_client() {
        for from in ["203.0.113.50:1234", "[2001:db8::50]:1234"] {
            let got = resolve(
                RealIpHeader::XForwardedFor,
                "x-forwarded-for",
                &["198.51.100.1"],
                from,
            );
            assert_eq!(got, from);
            let got = resolve(
                RealIpHeader::Forwarded,
                "forwarded",
                &["for=198.51.100.1"],
                from,
            );
            assert_eq!(got, from);
        }
        // A trusted peer's other header is not the one configured.
        let got = resolve(
            RealIpHeader::XForwardedFor,
            "forwarded",
            &["for=198.51.100.1"],
            PEER,
        );
        assert_eq!(got, PEER);
    }

    #[test]
    fn forwarded_for_is_parsed_as_rfc_7239_says() {
        assert_eq!(fwd(&["for=203.0.113.7"]), "203.0.113.7:0");
        assert_eq!(fwd(&["For=\"203.0.113.7:8080\""]), "203.0.113.7:8080");
        assert_eq!(
            fwd(&["for=\"[2001:db8:cafe::17]:4711\";proto=https"]),
            "[2001:db8:cafe::17]:4711"
        );
        assert_eq!(
            fwd(&["for=\"[2001:db8:cafe::17]\", for=10.0.0.9"]),
            "[2001:db8:cafe::17]:0"
        );
        assert_eq!(
            fwd(&["for=198.51.100.1;by=10.0.0.1, proto=http;for=203.0.113.7;host=\"a,b\""]),
            "203.0.113.7:0"
        );
        // An obfuscated port is no port.
        assert_eq!(fwd(&["for=\"203.0.113.7:_p1\""]), "203.0.113.7:0");
        // Escapes inside a quoted string.
        assert_eq!(fwd(&["for=\"203.0.113.\\7\""]), "203.0.113.7:0");
    }

    #[test]
    fn bad_input_keeps_the_peer() {
        for bad in [
            "garbage",
            "unknown",
            "203.0.113.7 garbage",
            "300.1.1.1",
            "203.0.113.7:99999",
            "[203.0.113.7]",
            "[2001:db8::1",
            "2001:db8::1]:80",
            "_hidden",
            "😀",
            "1.2.3.4:",
        ] {
            assert_eq!(xff(&[bad]), PEER, "X-Forwarded-For: {bad}");
            assert_eq!(
                xff(&["198.51.100.1", bad]),
                PEER,
                "X-Forwarded-For: .., {bad}"
            );
        }
        // Bad input left of the client is the client's own business.
        assert_eq!(xff(&["garbage, 203.0.113.7"]), "203.0.113.7:0");
        // Nothing at all: the peer.
        assert_eq!(xff(&[]), PEER);
        assert_eq!(xff(&[""]), PEER);
        assert_eq!(xff(&[" , ,"]), PEER);
        for bad in [
            "for=unknown",
            "for=_hidden",
            "for=\"_gazonk\"",
            "proto=https",
            "for",
            "for=",
            "for=\"\"",
            "for=\"203.0.113.7",
            "for=203.0.113.7\"",
            "for=\"[2001:db8::1]:_\"",
            "for=203.0.113.7;for=198.51.100.1",
            "for=2001:db8::1]",
            "=;=;,",
            ";;;",
            "for=\"a\\",
            "\"",
        ] {
            assert_eq!(fwd(&[bad]), PEER, "Forwarded: {bad}");
            assert_eq!(
                fwd(&["for=198.51.100.1", bad]),
                PEER,
                "Forwarded: .., {bad}"
            );
        }
        assert_eq!(fwd(&["for=unknown, for=203.0.113.7"]), "203.0.113.7:0");
        // Not ASCII at all.
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"203.0.113.7\xff").unwrap(),
        );
        let r = resolver(RealIpHeader::XForwardedFor);
        assert_eq!(r.resolve(&h, PEER.parse().unwrap()).to_string(), PEER);
        // Long lists neither panic nor take long.
        let long = vec!["10.1.1.1"; 5000].join(",");
        assert_eq!(xff(&[&long]), "10.1.1.1:0");
    }

    #[test]
    fn networks_match_mapped_addresses_and_hosts() {
        let n = Networks::parse(&["127.0.0.2".into(), "fd00::/8".into()]).unwrap();
        assert!(n.contains("127.0.0.2".parse().unwrap()));
        assert!(n.contains("::ffff:127.0.0.2".parse().unwrap()));
        assert!(!n.contains("127.0.0.3".parse().unwrap()));
        assert!(n.contains("fd12::1".parse().unwrap()));
        assert!(Networks::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(Networks::default().is_empty());
    }
}
