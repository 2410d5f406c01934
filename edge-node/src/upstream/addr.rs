//! Upstream addresses: an origin or shield base URL (`http://host:port` or
//! `https://host:port`), parsed strictly.

use http::uri::{Authority, Scheme};
use http::Uri;

/// An origin base URL: `http://host:port` or `https://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginAddr {
    /// Scheme (http or https).
    pub scheme: Scheme,
    /// host:port.
    pub authority: Authority,
}

impl OriginAddr {
    /// Parses an origin URL; only `http://host[:port]` or `https://host[:port]` without a path
    /// is accepted.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let uri: Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{s:?} needs a scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("{s:?}: only http:// and https:// are supported"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{s:?} has no host"))?;
        // `Authority::port` is `None` for digits that are no port (80000): read them here.
        if let Some((_, port)) = authority.as_str().rsplit_once(':') {
            if !port.contains(']') && port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{s:?}: port {port} is not a port (1 to 65535)"));
            }
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "{s:?}: an origin URL must not have a path or query"
            ));
        }
        Ok(Self { scheme, authority })
    }
}

impl OriginAddr {
    /// Whether it is reached over TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

impl std::fmt::Display for OriginAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.authority)
    }
}

#[cfg(test)]
mod tests {
    use super::OriginAddr;

    #[test]
    fn a_port_out_of_range_is_refused_with_the_value() {
        for bad in [
            "http://127.0.0.1:80000",
            "http://127.0.0.1:70000",
            "https://a.test:0",
        ] {
            let e = OriginAddr::parse(bad).err();
            assert!(
                e.as_deref().is_some_and(|e| e.contains("is not a port")),
                "{bad}: {e:?}"
            );
        }
        assert!(OriginAddr::parse("http://127.0.0.1:65535").is_ok());
        assert!(OriginAddr::parse("https://a.test").is_ok());
    }
}
