//! The client IP of a request, believing forwarding headers only from trusted proxies.
//!
//! The one implementation of these rules: the Python
//! `ratesync.contrib.fastapi.ip_utils.get_client_ip` calls [`client_ip_from_lines`]
//! through the extension, so both surfaces key a request identically:
//!
//! - The direct peer is the client unless it is in a trusted network.
//! - From a trusted peer, `X-Forwarded-For` (else `Forwarded`, RFC 7239, else
//!   `X-Real-IP`) is read right to left: each hop is believed only while the hop that
//!   reported it is trusted, so the client is the first hop from the right outside the
//!   trusted networks. An unusable hop (`unknown`, obfuscated, garbage) stops the walk
//!   at the last address known.
//! - A header forged by an untrusted peer changes nothing.
//!
//! Header bytes are read as Latin-1 and trimmed of Python's whitespace (what
//! `str.strip()` removes), as the Python integration always read them: Python passes
//! Starlette's raw header bytes, so a header means the same on both surfaces.

use std::net::IpAddr;

use http::HeaderMap;

/// Networks whose forwarding headers are believed. Empty (the default) trusts nobody:
/// the peer address is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<Network>,
}

/// A string that is not a network such as `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a network such as 10.0.0.0/8 or 2001:db8::/32")]
pub struct InvalidNetwork(pub String);

impl TrustedProxies {
    /// Trusts nobody.
    pub fn none() -> Self {
        Self::default()
    }

    /// Trusts `networks` (CIDR strings; a bare address is a /32 or /128; host bits
    /// may be set, as Python's `ip_network(strict=False)` allows).
    pub fn new<I>(networks: I) -> Result<Self, InvalidNetwork>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let networks = networks
            .into_iter()
            .map(|raw| {
                Network::parse(raw.as_ref()).ok_or_else(|| InvalidNetwork(raw.as_ref().into()))
            })
            .collect::<Result<_, _>>()?;
        Ok(TrustedProxies { networks })
    }

    /// The `[http]` (or `[fastapi]`) `trusted_proxy_networks` of a configuration:
    /// the one list that both the Python and the Rust HTTP integrations read.
    pub fn from_config(config: &crate::Config) -> Self {
        // Validated when the configuration was loaded, so nothing is dropped here.
        let networks = config
            .fastapi
            .trusted_proxy_networks
            .iter()
            .filter_map(|raw| Network::parse(raw))
            .collect();
        TrustedProxies { networks }
    }

    /// Whether nobody is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is in a trusted network (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|network| network.contains(ip))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    fn parse(raw: &str) -> Option<Self> {
        let raw = py_strip(raw);
        let (addr, prefix) = match raw.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (raw, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|bits| *bits <= max)?,
            None => max,
        };
        Some(Network { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                same_prefix(u32::from(net).into(), u32::from(ip).into(), 32, self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), 128, self.prefix)
            }
            _ => false,
        }
    }
}

/// Whether the first `prefix` of the `width` low bits of `a` and `b` agree.
fn same_prefix(a: u128, b: u128, width: u32, prefix: u8) -> bool {
    let shift = width - u32::from(prefix);
    // `checked_shr` is `None` for an IPv6 /0 (a shift by all 128 bits): all match.
    (a ^ b).checked_shr(shift).unwrap_or(0) == 0
}

/// The client's address: `peer` itself unless it is a trusted proxy, else what the
/// forwarding headers say, believed hop by hop.
///
/// An IPv4-mapped IPv6 address (`::ffff:1.2.3.4`, how a dual-stack socket sees an
/// IPv4 client) comes back as its IPv4 address, so one client has one key whichever
/// socket it came through.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let lines = [XFF, FORWARDED, REAL_IP].into_iter().flat_map(|name| {
        headers
            .get_all(name)
            .iter()
            .map(move |value| (name.as_bytes(), value.as_bytes()))
    });
    client_ip_from_lines(peer, lines, trusted)
}

/// [`client_ip`] over raw header lines, `(name, value)` in the order received (the
/// ASGI `scope["headers"]` of the Python integration). Names match without regard
/// to ASCII case, as in a `HeaderMap`; values may hold any bytes.
pub fn client_ip_from_lines<'a, I>(peer: IpAddr, lines: I, trusted: &TrustedProxies) -> IpAddr
where
    I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
{
    if !trusted.contains(peer) {
        // The lines are not even read.
        return peer.to_canonical();
    }
    let mut forwarding = ForwardingHeaders::default();
    for (name, value) in lines {
        forwarding.add(name, value);
    }
    believed_hop(peer, &forwarding, trusted).to_canonical()
}

/// `text` as an IP address, read as a forwarding-header node's address is: Python's
/// whitespace around it ignored, an IPv4-mapped IPv6 address given as its IPv4
/// address (the Python `validate_ip`). `None` for anything else.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    py_strip(text)
        .parse()
        .ok()
        .map(|ip: IpAddr| ip.to_canonical())
}

const XFF: &str = "x-forwarded-for";
const FORWARDED: &str = "forwarded";
const REAL_IP: &str = "x-real-ip";

/// The values of the three forwarding headers, each in the order received.
#[derive(Default)]
struct ForwardingHeaders<'a> {
    xff: Vec<&'a [u8]>,
    forwarded: Vec<&'a [u8]>,
    real_ip: Vec<&'a [u8]>,
}

impl<'a> ForwardingHeaders<'a> {
    fn add(&mut self, name: &[u8], value: &'a [u8]) {
        let list = if name.eq_ignore_ascii_case(XFF.as_bytes()) {
            &mut self.xff
        } else if name.eq_ignore_ascii_case(FORWARDED.as_bytes()) {
            &mut self.forwarded
        } else if name.eq_ignore_ascii_case(REAL_IP.as_bytes()) {
            &mut self.real_ip
        } else {
            return;
        };
        list.push(value);
    }

    /// The hops of the first forwarding header present, left to right; `None` for a
    /// hop that is not an address.
    fn hops(&self) -> Vec<Option<IpAddr>> {
        if !self.xff.is_empty() {
            return self
                .xff
                .iter()
                .flat_map(|value| latin1(value).split(',').map(node_ip).collect::<Vec<_>>())
                .collect();
        }
        if !self.forwarded.is_empty() {
            return self
                .forwarded
                .iter()
                .flat_map(|value| forwarded_for(&latin1(value)))
                .collect();
        }
        match self.real_ip.first() {
            Some(value) if !value.is_empty() => vec![node_ip(&latin1(value))],
            _ => Vec::new(),
        }
    }
}

fn believed_hop(peer: IpAddr, headers: &ForwardingHeaders<'_>, trusted: &TrustedProxies) -> IpAddr {
    let hops = headers.hops();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(hop) = *hop else {
            // Nothing to the left of an unusable hop can be attributed: the last
            // trusted proxy is the best known address.
            return client;
        };
        client = hop;
        if !trusted.contains(hop) {
            return hop;
        }
    }
    client
}

/// The `for=` node of each element of a `Forwarded` header, left to right.
fn forwarded_for(value: &str) -> Vec<Option<IpAddr>> {
    value
        .split(',')
        .map(|element| {
            let node = element
                .split(';')
                .filter_map(|pair| {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    py_strip(name).eq_ignore_ascii_case("for").then_some(value)
                })
                .next_back();
            node.and_then(node_ip)
        })
        .collect()
}

/// The address of one forwarding-header node (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`,
/// `"[::1]"`), or `None` (`unknown`, an obfuscated `_name`, garbage).
fn node_ip(node: &str) -> Option<IpAddr> {
    let node = py_strip(py_strip(node).trim_matches('"'));
    if node.starts_with('[') {
        let end = node.find(']')?;
        return parse_ip(&node[1..end]);
    }
    let host = match node.matches(':').count() {
        1 => node.split(':').next().unwrap_or(node),
        _ => node,
    };
    parse_ip(host)
}

/// Bytes as Latin-1 characters: every byte string is a string, as in Starlette.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&byte| char::from(byte)).collect()
}

/// Python's `str.strip()`: what `str.isspace()` calls whitespace is Unicode's
/// `White_Space` and the four separators `\x1c`..`\x1f`.
fn py_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn networks_match_by_prefix() {
        let trusted = TrustedProxies::new(["10.0.0.0/8", "::1", "0.0.0.0/0"]).unwrap();
        assert!(trusted.contains(ip("10.1.2.3")));
        assert!(trusted.contains(ip("8.8.8.8")), "/0 matches everything");
        assert!(trusted.contains(ip("::1")));
        assert!(!trusted.contains(ip("::2")));
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        assert!(trusted.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped");
        assert!(!trusted.contains(ip("11.0.0.1")));
        for bad in ["10.0.0.0/33", "x", "10.0.0.0/", "::/129", ""] {
            assert!(TrustedProxies::new([bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn nodes_parse_like_the_python_helper() {
        assert_eq!(node_ip(" 1.2.3.4 "), Some(ip("1.2.3.4")));
        assert_eq!(node_ip("1.2.3.4:8080"), Some(ip("1.2.3.4")));
        assert_eq!(node_ip("\"[2001:db8::1]:443\""), Some(ip("2001:db8::1")));
        assert_eq!(node_ip("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(node_ip("[::1"), None);
        assert_eq!(node_ip("unknown"), None);
        assert_eq!(node_ip("_hidden"), None);
        assert_eq!(node_ip("\u{a0}1.2.3.4\u{a0}"), Some(ip("1.2.3.4")));
    }

    #[test]
    fn addresses_parse_like_the_python_validate_ip() {
        assert_eq!(parse_ip("\u{3000} 1.2.3.4\x1c"), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip("::ffff:1.2.3.4"), Some(ip("1.2.3.4")));
        assert_eq!(parse_ip("2001:DB8::1"), Some(ip("2001:db8::1")));
        for bad in [
            "",
            "1.2.3",
            "01.2.3.4",
            "1.2.3.4:80",
            "fe80::1%eth0",
            "unknown",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn raw_lines_read_as_a_header_map() {
        let trusted = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let peer = ip("10.0.0.1");
        let lines: [(&[u8], &[u8]); 4] = [
            (b"X-Real-IP", b"7.7.7.7"),
            (b"x-forwarded-for", b"6.6.6.6, 1.2.3.4"),
            (b"content-type", b"text/plain"),
            (b"X-Forwarded-For", b"10.0.0.2"),
        ];
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(
                http::HeaderName::from_bytes(name).unwrap(),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        assert_eq!(client_ip_from_lines(peer, lines, &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(peer, &map, &trusted), ip("1.2.3.4"));
        // Bytes a HeaderMap refuses (a NUL) are read too: an unusable hop.
        let lines: [(&[u8], &[u8]); 1] = [(b"x-forwarded-for", b"1.2.3.4, \0, 10.0.0.2")];
        assert_eq!(client_ip_from_lines(peer, lines, &trusted), ip("10.0.0.2"));
        // An untrusted peer: its lines are not even read.
        assert_eq!(
            client_ip_from_lines(ip("::ffff:8.8.8.8"), lines, &trusted),
            ip("8.8.8.8")
        );
    }

    #[test]
    fn forwarded_takes_the_last_for_of_each_element() {
        let hops = forwarded_for("for=1.1.1.1;proto=https, For=\"[::1]:80\";by=x, by=y");
        assert_eq!(hops, vec![Some(ip("1.1.1.1")), Some(ip("::1")), None]);
    }
}
