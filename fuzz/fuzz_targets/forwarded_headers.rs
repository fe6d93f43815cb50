//! Any bytes as forwarding headers (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`)
//! from any peer: `client_ip` never panics, an untrusted peer's headers never change
//! the answer, and the answer is the peer or an address one of the headers named.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ratesync::http::{client_ip, TrustedProxies};

const NAMES: [&str; 3] = ["x-forwarded-for", "forwarded", "x-real-ip"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let peer = match selector % 4 {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, selector)),
        1 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, selector.into())),
        2 => IpAddr::V6(Ipv4Addr::new(10, 9, 9, selector).to_ipv6_mapped()),
        _ => IpAddr::V4(Ipv4Addr::new(203, 0, 113, selector)),
    };
    // Header lines separated by 0xFF bytes (which no header value may hold); the first
    // byte of each picks its name.
    let mut headers = HeaderMap::new();
    for line in rest.split(|b| *b == 0xFF) {
        let Some((&name, value)) = line.split_first() else {
            continue;
        };
        if let Ok(value) = HeaderValue::from_bytes(value) {
            let name = HeaderName::from_static(NAMES[usize::from(name) % NAMES.len()]);
            headers.append(name, value);
        }
    }
    let trusted = TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
    let client = client_ip(peer, &headers, &trusted);
    if !trusted.contains(peer) {
        assert_eq!(client, peer.to_canonical(), "an untrusted peer's headers were believed");
    }
    assert_eq!(
        client_ip(peer, &headers, &TrustedProxies::none()),
        peer.to_canonical()
    );
});
