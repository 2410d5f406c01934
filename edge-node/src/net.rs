//! Client networks as config names them: CIDR, or a bare address for one host.

/// A client network (`purge_from`, rule conditions): CIDR, or a bare address for one host.
pub(crate) fn parse_network(s: &str) -> Result<ipnet::IpNet, String> {
    let s = s.trim();
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!(
                "{s:?} is not a network: an address with a prefix length (CIDR), \
                 such as \"10.0.0.0/8\" or \"127.0.0.1/32\""
            )
        })
}
