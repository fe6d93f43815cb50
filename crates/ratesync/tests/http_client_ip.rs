//! Forwarding-header parsing under arbitrary input (SPEC §8.4: header parsing is
//! fuzzed): it never panics, an untrusted peer's headers never change the key, and a
//! trusted chain is read right to left exactly as the model says. A table of cases
//! answered by the Python `get_client_ip` pins the two surfaces together.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::{HeaderMap, HeaderValue, Request};
use proptest::prelude::*;
use ratesync::http::{client_ip, ClientIp, KeyExtractor, TrustedProxies};

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

proptest! {
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

/// (peer, header lines, the client IP the Python `get_client_ip` found), with the
/// trusted networks below: drawn from 20,000 random cases on which the two
/// implementations agreed, most of them where the answer is not the peer.
type Case = (
    &'static str,
    &'static [(&'static str, &'static [u8])],
    &'static str,
);

#[rustfmt::skip]
const PYTHON_ANSWERS: &[Case] = &[
    ("10.2.3.4", &[("x-forwarded-for", b"[::ffff:1.2.3.4]:49590,[::ffff:1.2.3.4]:9232"), ("forwarded", b"")], "1.2.3.4"),
    ("2001:db8::1", &[("x-forwarded-for", b"[255.255.255.255]:5173;2001:db9::1;for=\"unknown\";by=x"), ("x-forwarded-for", b"[::1]:22975, 192.168.1.1, for=\"unknown\";by=x"), ("x-forwarded-for", b"10.0.0.1")], "10.0.0.1"),
    ("10.0.0.1", &[("x-real-ip", b"[192.168.1.1]:7443"), ("forwarded", b"49\xffa13\x096 ; 0.0.0.0 ; ]93  ;"), ("x-forwarded-for", b"0.0.0.0:97;10.0.0.1;192.168.1.1")], "0.0.0.0"),
    ("10.2.3.4", &[("x-real-ip", b"o69\xa0 ; for=\"2001:db9::1\";by=x ; 2001:db9::1"), ("forwarded", b"[1.2.3.4]:19423 ; \x09455\xe9=\xe9 ; 6\x859\x85\x09 ; 1.2.3.4"), ("forwarded", b",2, 10.0.0.1:81, 198.51.100.7, FOR=1.2.3.4")], "1.2.3.4"),
    ("10.2.3.4", &[("x-real-ip", b"192.168.1.1")], "192.168.1.1"),
    ("192.168.1.1", &[("forwarded", b""), ("forwarded", b"\xff8f], "), ("x-forwarded-for", b"[10.0.0.1]:25215 ; 10.2.3.4 ; 1.2.3.4:12")], "10.0.0.1"),
    ("192.168.1.1", &[("x-real-ip", b"2\xa0"), ("x-forwarded-for", b"\x09\xa06,10.2.3.4")], "10.2.3.4"),
    ("::ffff:10.0.0.9", &[("x-forwarded-for", b""), ("x-forwarded-for", b"2001:db9::1")], "2001:db9::1"),
    ("10.0.0.1", &[("x-forwarded-for", b"255.255.255.255, 2001:db8::1, 10.2.3.4:79")], "255.255.255.255"),
    ("10.2.3.4", &[("x-forwarded-for", b"198.51.100.7, \xa0r\x8536, 2001:db9::1"), ("x-real-ip", b"68rf ; [10.0.0.1]:11723"), ("forwarded", b"")], "2001:db9::1"),
    ("::ffff:10.0.0.9", &[("x-real-ip", b"::ffff:1.2.3.4, a5], 1.2.3.4"), ("forwarded", b"::ffff:1.2.3.4;for=\"[255.255.255.255]\";proto=https;::ffff:1.2.3.4"), ("x-real-ip", b",10.0.0.1")], "255.255.255.255"),
    ("::ffff:10.0.0.9", &[("x-real-ip", b"[1.2.3.4]:48311,,]a\xff")], "1.2.3.4"),
    ("192.168.1.1", &[("x-forwarded-for", b"255.255.255.255")], "255.255.255.255"),
    ("192.168.1.1", &[("x-forwarded-for", b""), ("x-forwarded-for", b"10.0.0.1")], "10.0.0.1"),
    ("192.168.1.1", &[("x-forwarded-for", b"\xa0: ,;3,,for=\"::ffff:10.0.0.9\";by=x,::ffff:10.0.0.9")], "10.0.0.9"),
    ("10.2.3.4", &[("x-forwarded-for", b"198.51.100.7:48 ; 198.51.100.7")], "198.51.100.7"),
    ("192.168.1.1", &[("forwarded", b"for=\"unknown\", 02[[f7\x09"), ("x-forwarded-for", b"by=1.2.3.4")], "192.168.1.1"),
    ("10.0.0.1", &[("x-real-ip", b"2001:db8::1:95"), ("forwarded", b"a\xa02, ; 6\xe9 ; 10.0.0.1:38 ; 255.255.255.255:7")], "10.0.0.1"),
    ("2001:db8::1", &[("forwarded", b"[2001:db8::1]:50576,\xe91[;\xa047\",255.255.255.255"), ("x-real-ip", b"by=1.2.3.4;[::ffff:10.0.0.9]:67498;[::ffff:10.0.0.9]:11403")], "2001:db8::1"),
    ("10.0.0.1", &[("x-real-ip", b"for=\"10.2.3.4\";by=x,,"), ("forwarded", b",;::ffff:1.2.3.4:72;::ffff:10.0.0.9:10")], "10.0.0.1"),
    ("2001:db8::1", &[("forwarded", b"::1:93 ; 1.2.3.4 ; 2001:db8::1")], "2001:db8::1"),
    ("2001:db8::1", &[("x-forwarded-for", b"")], "2001:db8::1"),
];

#[test]
fn the_python_helper_gives_the_same_answers() {
    let trusted = TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32", "192.168.0.0/16"]).unwrap();
    for (peer, lines, python) in PYTHON_ANSWERS {
        let mut headers = HeaderMap::new();
        for (name, value) in *lines {
            headers.append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let peer: IpAddr = peer.parse().unwrap();
        let expected: IpAddr = python.parse().unwrap();
        assert_eq!(
            client_ip(peer, &headers, &trusted),
            expected,
            "{peer} {headers:?}"
        );
    }
}
