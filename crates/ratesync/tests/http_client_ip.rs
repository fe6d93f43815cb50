//! Forwarding-header parsing under arbitrary input (`docs/design.md#hostile-input`:
//! header parsing is fuzzed): it never panics, an untrusted peer's headers never change
//! the key, and a trusted chain is read right to left exactly as the model says.
//!
//! The Python `get_client_ip` is this same code (through the extension, on the raw
//! header lines of `client_ip_from_lines`); python/tests/test_fastapi_http.py checks
//! it on real Starlette requests against a table of documented cases. Here the raw
//! lines are checked to read as a `HeaderMap` does, on any bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderValue, Request};
use proptest::prelude::*;
use ratesync::http::{client_ip, client_ip_from_lines, ClientIp, KeyExtractor, TrustedProxies};

const HEADERS: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

fn trusted() -> TrustedProxies {
    TrustedProxies::new(["10.0.0.0/8", "192.168.0.0/16", "2001:db8::/32", "::1"]).unwrap()
}

fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        // Trusted ones, often, so that the headers are read at all.
        any::<[u8; 3]>().prop_map(|b| IpAddr::V4(Ipv4Addr::new(10, b[0], b[1], b[2]))),
        any::<u16>().prop_map(|x| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, x))),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V6(Ipv4Addr::from(b).to_ipv6_mapped())),
    ]
}

/// Header-like text: pieces of real syntax, shuffled with noise.
fn header_text() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        any_ip().prop_map(|ip| ip.to_string()),
        any_ip().prop_map(|ip| format!("[{ip}]:443")),
        any_ip().prop_map(|ip| format!("for=\"{ip}\";proto=https")),
        Just("unknown".to_owned()),
        Just("_hidden".to_owned()),
        "[ -~]{0,12}",
    ];
    let structured = proptest::collection::vec(piece, 0..6).prop_map(|pieces| {
        pieces
            .join(if pieces.len() % 2 == 0 { ", " } else { ";" })
            .into_bytes()
    });
    prop_oneof![structured, proptest::collection::vec(any::<u8>(), 0..48)]
}

/// Any bytes a header value may hold (what `http` accepts), a header chosen at random.
fn headers() -> impl Strategy<Value = HeaderMap> {
    proptest::collection::vec((0..HEADERS.len(), header_text()), 0..4).prop_map(|values| {
        let mut map = HeaderMap::new();
        for (name, bytes) in values {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                map.append(HEADERS[name], value);
            }
        }
        map
    })
}

/// Raw header lines as an ASGI server may hand them to Python: any bytes in names
/// (any case) and values, even those a `HeaderMap` refuses.
fn raw_lines() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let name = prop_oneof![
        (0..HEADERS.len()).prop_map(|i| HEADERS[i].as_bytes().to_vec()),
        (0..HEADERS.len()).prop_map(|i| HEADERS[i].to_ascii_uppercase().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    let value = prop_oneof![header_text(), proptest::collection::vec(any::<u8>(), 0..48)];
    proptest::collection::vec((name, value), 0..5)
}

proptest! {
    #[test]
    fn raw_lines_never_panic_and_read_as_a_header_map(peer in any_ip(), lines in raw_lines()) {
        let trusted = trusted();
        let client = client_ip_from_lines(
            peer,
            lines.iter().map(|(n, v)| (n.as_slice(), v.as_slice())),
            &trusted,
        );
        if !trusted.contains(peer) {
            prop_assert_eq!(client, peer.to_canonical());
        }
        // Where every line is one a HeaderMap can hold, both read the same.
        let mut map = HeaderMap::new();
        let mut representable = true;
        for (name, value) in &lines {
            match (http::HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
                (Ok(name), Ok(value)) => {
                    map.append(name, value);
                }
                _ => representable = false,
            }
        }
        if representable {
            prop_assert_eq!(client, client_ip(peer, &map, &trusted));
        }
    }

    #[test]
    fn parsing_never_panics_and_untrusted_peers_are_the_key(peer in any_ip(), headers in headers()) {
        let trusted = trusted();
        let client = client_ip(peer, &headers, &trusted);
        // Mapped IPv6 addresses (::ffff:a.b.c.d) come back as their IPv4 address.
        if !trusted.contains(peer) {
            prop_assert_eq!(client, peer.to_canonical());
        }
        // Through the key extractor, as a request would go.
        let mut request = Request::new(());
        *request.headers_mut() = headers;
        request.extensions_mut().insert(SocketAddr::new(peer, 1));
        let (mut parts, ()) = request.into_parts();
        let key = ClientIp::new(trusted).extract(&mut parts).unwrap();
        prop_assert_eq!(key, client.to_string());
    }

    #[test]
    fn nobody_trusted_means_the_peer_whatever_the_headers(peer in any_ip(), headers in headers()) {
        prop_assert_eq!(
            client_ip(peer, &headers, &TrustedProxies::none()),
            peer.to_canonical()
        );
    }

    #[test]
    fn a_trusted_chain_is_read_right_to_left(
        hops in proptest::collection::vec(any_ip(), 1..6),
        peer_host in any::<[u8; 3]>(),
    ) {
        let trusted = trusted();
        let peer = IpAddr::V4(Ipv4Addr::new(10, peer_host[0], peer_host[1], peer_host[2]));
        let list = hops.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::try_from(list).unwrap());
        // The model: the first hop from the right outside the trusted networks, else
        // the leftmost hop.
        let expected = hops
            .iter()
            .rev()
            .find(|hop| !trusted.contains(**hop))
            .unwrap_or(&hops[0]);
        prop_assert_eq!(client_ip(peer, &headers, &trusted), expected.to_canonical());
    }
}
