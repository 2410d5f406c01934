//! The PROXY protocol (HAProxy's, v1 text and v2 binary) on a listener behind a load
//! balancer: the header the balancer sends before anything else names the client, which
//! becomes the connection's client address. Parsing is the `ppp` crate's; here is what is
//! taken from the socket: the header's bytes exactly (peeked until complete, then read), so
//! what follows (TLS, HTTP) is left untouched.
//!
//! v2 `LOCAL` (the balancer's own health checks), v1 `UNKNOWN`, and v2 address families other
//! than IPv4 and IPv6 keep the TCP peer's address.

use ppp::v1::Addresses as V1;
use ppp::v2::{Addresses as V2, Command};
use ppp::PartialResult;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header taken. v1's own bound is 107 bytes; v2 headers carry TLVs, which load
/// balancers keep small (an AWS VPC endpoint id, a TLS summary).
const MAX_HEADER: usize = 4096;
/// The longest v1 header (its specification's bound).
const V1_MAX: usize = 107;
/// The start of every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The start of every v1 header.
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// Why a connection to a PROXY protocol listener was closed before TLS or HTTP.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The peer is not one of `trusted_proxies`.
    Untrusted,
    /// What came first is not a PROXY header (a client talking to the listener directly).
    Missing,
    /// A PROXY header, but a broken one.
    Malformed(String),
    /// Longer than [`MAX_HEADER`].
    TooLong,
    /// Not complete within the header read timeout.
    Timeout,
    /// The peer closed (or the socket failed) before the header was complete.
    Closed,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Untrusted => f.write_str("the peer is not in trusted_proxies"),
            Refused::Missing => f.write_str("no PROXY protocol header"),
            Refused::Malformed(e) => write!(f, "a malformed PROXY protocol header: {e}"),
            Refused::TooLong => f.write_str("a PROXY protocol header over its length bound"),
            Refused::Timeout => f.write_str("no complete PROXY protocol header in time"),
            Refused::Closed => f.write_str("closed before its PROXY protocol header was complete"),
        }
    }
}

/// What the bytes received so far make.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A header, incomplete yet.
    More,
    /// A header of `len` bytes naming `source` (`None`: keep the peer's address).
    Header {
        len: usize,
        source: Option<SocketAddr>,
    },
    /// Not a header, or a bad one.
    Refused(Refused),
}

/// Parses the start of a connection.
pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    let result = if starts(V1_PREFIX) {
        let r = ppp::v1::Header::try_from(buf);
        // `ppp` takes a line short of fields for one cut short; the line's end says it is not.
        let line_ended = buf.contains(&b'\n');
        if r.is_incomplete() && line_ended {
            return Parsed::Refused(Refused::Malformed("a v1 line short of fields".into()));
        }
        if r.is_incomplete() {
            if buf.len() > V1_MAX {
                return Parsed::Refused(Refused::TooLong);
            }
            None
        } else {
            Some(match r {
                Ok(h) => Ok((h.header.len(), v1_source(h.addresses))),
                Err(e) => Err(e.to_string()),
            })
        }
    } else if starts(V2_SIGNATURE) {
        // The declared length, once known: a header over the bound is refused at once.
        if let Some(len) = buf.get(14..16) {
            if 16 + usize::from(u16::from_be_bytes([len[0], len[1]])) > MAX_HEADER {
                return Parsed::Refused(Refused::TooLong);
            }
        }
        let r = ppp::v2::Header::try_from(buf);
        if r.is_incomplete() {
            None
        } else {
            Some(match r {
                Ok(h) => Ok((h.len(), v2_source(h.command, h.addresses))),
                Err(e) => Err(e.to_string()),
            })
        }
    } else {
        return Parsed::Refused(Refused::Missing);
    };
    match result {
        None if buf.len() >= MAX_HEADER => Parsed::Refused(Refused::TooLong),
        None => Parsed::More,
        Some(Ok((len, source))) => Parsed::Header { len, source },
        Some(Err(e)) => Parsed::Refused(Refused::Malformed(e)),
    }
}

fn v1_source(a: V1) -> Option<SocketAddr> {
    match a {
        V1::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V1::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V1::Unknown => None,
    }
}

fn v2_source(command: Command, a: V2) -> Option<SocketAddr> {
    if command == Command::Local {
        return None;
    }
    match a {
        V2::IPv4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V2::IPv6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
        V2::Unspecified | V2::Unix(_) => None,
    }
}

/// Reads the PROXY header at the start of `stream` within `timeout`, and nothing after it:
/// the client's address, or `peer` when the header names none.
pub(crate) async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    timeout: Duration,
) -> Result<SocketAddr, Refused> {
    tokio::time::timeout(timeout, read(stream, peer))
        .await
        .unwrap_or(Err(Refused::Timeout))
}

async fn read(stream: &mut TcpStream, peer: SocketAddr) -> Result<SocketAddr, Refused> {
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        let n = stream.peek(&mut buf).await.map_err(|_| Refused::Closed)?;
        if n == 0 {
            return Err(Refused::Closed);
        }
        match parse(&buf[..n]) {
            // The rest is on its way (the caller bounds the wait).
            Parsed::More => tokio::time::sleep(Duration::from_millis(5)).await,
            Parsed::Header { len, source } => {
                let header = buf.get_mut(..len).ok_or(Refused::TooLong)?;
                stream
                    .read_exact(header)
                    .await
                    .map_err(|_| Refused::Closed)?;
                return Ok(source.unwrap_or(peer));
            }
            Parsed::Refused(r) => return Err(r),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v2(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        let len = u16::try_from(addresses.len() + tlvs.len()).unwrap();
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn v4_addresses() -> Vec<u8> {
        let mut a = vec![203, 0, 113, 7, 10, 0, 0, 1];
        a.extend_from_slice(&4711u16.to_be_bytes());
        a.extend_from_slice(&443u16.to_be_bytes());
        a
    }

    #[test]
    fn v1_headers_name_the_source() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 80\r\nGET / HTTP/1.1\r\n";
        assert_eq!(
            parse(h),
            Parsed::Header {
                len: 41,
                source: Some("203.0.113.7:4711".parse().unwrap())
            }
        );
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 443\r\n";
        assert_eq!(
            parse(h),
            Parsed::Header {
                len: h.len(),
                source: Some("[2001:db8::7]:4711".parse().unwrap())
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n\x16\x03\x01"),
            Parsed::Header {
                len: 15,
                source: None
            }
        );
    }

    #[test]
    fn v2_headers_name_the_source_unless_local() {
        let h = v2(1, 0x11, &v4_addresses(), &[]);
        assert_eq!(
            parse(&h),
            Parsed::Header {
                len: 28,
                source: Some("203.0.113.7:4711".parse().unwrap())
            }
        );
        // TLVs are part of the header's length.
        let h = v2(1, 0x11, &v4_addresses(), &[0x04, 0x00, 0x02, 0xAB, 0xCD]);
        assert!(matches!(parse(&h), Parsed::Header { len: 33, .. }));
        let mut a = Vec::new();
        a.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        a.extend_from_slice(&[0x12, 0x67, 0x01, 0xBB]);
        assert_eq!(
            parse(&v2(1, 0x21, &a, &[])),
            Parsed::Header {
                len: 52,
                source: Some("[2001:db8::7]:4711".parse().unwrap())
            }
        );
        // LOCAL: the balancer's own connection (a health check).
        assert_eq!(
            parse(&v2(0, 0x00, &[], &[])),
            Parsed::Header {
                len: 16,
                source: None
            }
        );
        assert!(matches!(
            parse(&v2(0, 0x11, &v4_addresses(), &[])),
            Parsed::Header { source: None, .. }
        ));
        // UNSPEC with PROXY: nothing to take.
        assert!(matches!(
            parse(&v2(1, 0x00, &[], &[])),
            Parsed::Header { source: None, .. }
        ));
    }

    #[test]
    fn a_partial_header_waits_for_more() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 80\r\n";
        for n in [0, 1, 5, 6, 20, h.len() - 1] {
            assert_eq!(parse(&h[..n]), Parsed::More, "{n} bytes");
        }
        let h = v2(1, 0x11, &v4_addresses(), &[]);
        for n in [1, 12, 15, 16, h.len() - 1] {
            assert_eq!(parse(&h[..n]), Parsed::More, "{n} bytes");
        }
    }

    #[test]
    fn bad_input_is_refused() {
        for missing in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"PRI * HTTP/2.0\r\n",
            b"proxy TCP4",
            b"\r\n\r\nX",
        ] {
            assert_eq!(parse(missing), Parsed::Refused(Refused::Missing));
        }
        for malformed in [
            &b"PROXY TCP4 203.0.113.7\r\n"[..],
            b"PROXY TCP4 999.0.113.7 10.0.0.1 4711 80\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 80\r\n",
            b"PROXY TCP4 2001:db8::7 10.0.0.1 4711 80\r\n",
            b"PROXY UDP4 203.0.113.7 10.0.0.1 4711 80\r\n",
            b"PROXY TCP4 203.0.113.7 10.0.0.1 4711 80\n",
            b"PROXY \xff\xfe\r\n",
        ] {
            assert!(
                matches!(parse(malformed), Parsed::Refused(Refused::Malformed(_))),
                "{:?}: {:?}",
                String::from_utf8_lossy(malformed),
                parse(malformed)
            );
        }
        // v2: a bad version, a bad command, addresses shorter than the family needs.
        let mut bad_version = v2(1, 0x11, &v4_addresses(), &[]);
        bad_version[12] = 0x31;
        let short = v2(1, 0x11, &v4_addresses()[..6], &[]);
        let bad_command = v2(0x0F, 0x11, &v4_addresses(), &[]);
        for h in [bad_version, short, bad_command] {
            assert!(
                matches!(parse(&h), Parsed::Refused(Refused::Malformed(_))),
                "{h:?}: {:?}",
                parse(&h)
            );
        }
        // Too long: v1 without its end, v2 declaring more than the bound.
        let endless = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        assert!(matches!(parse(&endless), Parsed::Refused(_)));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xFF, 0xFF]);
        assert_eq!(parse(&huge), Parsed::Refused(Refused::TooLong));
    }
}
