//! Header values and keys written on the stack, for the layer's hot path
//! (`docs/design.md#http`): each header value of an admitted request costs one
//! allocation, its own, and a client-IP key none.

use std::fmt;
use std::net::IpAddr;

use http::HeaderValue;

/// Room on the stack: one limit's `RateLimit-Policy` is its quoted name and about
/// 30 bytes more, so this holds a route of a few limits; longer values move to the
/// heap.
pub(crate) const STACK: usize = 256;

/// The bytes of one header value, built without allocating until they outgrow `N`
/// bytes; [`Self::value`] then copies them into the `HeaderValue` (one allocation,
/// exactly sized).
pub(crate) struct ValueBuf<const N: usize = STACK> {
    stack: [u8; N],
    len: usize,
    /// Everything, once it no longer fits on the stack.
    heap: Option<Vec<u8>>,
}

impl<const N: usize> ValueBuf<N> {
    pub(crate) fn new() -> Self {
        ValueBuf {
            stack: [0; N],
            len: 0,
            heap: None,
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if let Some(heap) = &mut self.heap {
            heap.extend_from_slice(bytes);
        } else if let Some(room) = self.stack.get_mut(self.len..self.len + bytes.len()) {
            room.copy_from_slice(bytes);
            self.len += bytes.len();
        } else {
            self.spill(bytes);
        }
    }

    #[cold]
    #[inline(never)]
    fn spill(&mut self, bytes: &[u8]) {
        let mut heap = Vec::with_capacity(2 * N.max(bytes.len()));
        heap.extend_from_slice(&self.stack[..self.len]);
        heap.extend_from_slice(bytes);
        self.heap = Some(heap);
    }

    #[inline]
    pub(crate) fn push_str(&mut self, text: &str) {
        self.push(text.as_bytes());
    }

    /// `n` in decimal.
    #[inline]
    pub(crate) fn push_u64(&mut self, n: u64) {
        self.push(itoa::Buffer::new().format(n).as_bytes());
    }

    /// A structured-field string (RFC 8941): quoted, `\` and `"` escaped, characters
    /// outside printable ASCII dropped.
    pub(crate) fn push_sf_string(&mut self, value: &str) {
        let plain = |c: &u8| (b' '..=b'~').contains(c) && *c != b'\\' && *c != b'"';
        self.push(b"\"");
        if value.bytes().all(|c| plain(&c)) {
            // A policy name usually is: copied whole.
            self.push(value.as_bytes());
        } else {
            for c in value.bytes().filter(|c| (b' '..=b'~').contains(c)) {
                if !plain(&c) {
                    self.push(b"\\");
                }
                self.push(&[c]);
            }
        }
        self.push(b"\"");
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap,
            None => &self.stack[..self.len],
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }

    /// The header value. Everything written here is visible ASCII (`push_sf_string`
    /// drops anything else), so this is `None` only if a caller pushed other bytes.
    pub(crate) fn value(&self) -> Option<HeaderValue> {
        HeaderValue::from_bytes(self.as_bytes()).ok()
    }
}

/// Each octet as text followed by a dot, after its length: `[2, b'4', b'2', b'.', 0]`.
const OCTETS: [[u8; 5]; 256] = {
    let mut table = [[0; 5]; 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = match n {
            0..=9 => [2, b'0' + u, b'.', 0, 0],
            10..=99 => [3, b'0' + t, b'0' + u, b'.', 0],
            _ => [4, b'0' + h, b'0' + t, b'0' + u, b'.'],
        };
        n += 1;
    }
    table
};

/// An IP address as text (what `IpAddr::to_string` gives), on the stack: the client-IP
/// key of a request, without the allocation of a `String`.
pub(crate) struct IpText {
    // The longest form is an IPv4-mapped IPv6 address in full, 45 bytes.
    bytes: [u8; 48],
    len: usize,
}

impl IpText {
    pub(crate) fn new(ip: IpAddr) -> Self {
        let mut text = IpText {
            bytes: [0; 48],
            len: 0,
        };
        match ip {
            // The common case, written out without `fmt`.
            IpAddr::V4(v4) => {
                let mut at = 0;
                for octet in v4.octets() {
                    // Each octet's digits and a dot, copied whole; the next one
                    // starts after its own length (the last dot is cut off).
                    let [len, digits @ ..] = OCTETS[usize::from(octet)];
                    text.bytes[at..at + 4].copy_from_slice(&digits);
                    at += usize::from(len);
                }
                text.len = at - 1;
            }
            // IPv6's compression rules are `std`'s to apply.
            IpAddr::V6(v6) => {
                let _ = fmt::write(&mut text, format_args!("{v6}"));
            }
        }
        text
    }

    fn push(&mut self, bytes: &[u8]) -> bool {
        match self.bytes.get_mut(self.len..self.len + bytes.len()) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.len += bytes.len();
                true
            }
            None => false,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII is ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for IpText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes()).then_some(()).ok_or(fmt::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_to_string() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.200.3.45",
            "::",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
        for n in 0..=255 {
            let ip = IpAddr::from([n, 255 - n, n / 10, n % 10]);
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn numbers_and_long_values() {
        let (mut buf, mut expected) = (ValueBuf::<STACK>::new(), String::new());
        let powers = (0..20).map(|e| 10u64.pow(e));
        let around = powers.flat_map(|p| {
            [
                p - 1,
                p,
                p + 1,
                p.saturating_mul(5),
                p.saturating_mul(10) - 1,
            ]
        });
        for n in around.chain([0, 42, u64::MAX]) {
            buf.push_u64(n);
            buf.push_str(",");
            expected += &format!("{n},");
        }
        assert_eq!(buf.as_bytes(), expected.as_bytes());
        let long = "x".repeat(3 * STACK);
        let mut buf = ValueBuf::<STACK>::new();
        buf.push_str("ab");
        buf.push_sf_string(&long);
        buf.push_u64(42);
        assert_eq!(buf.as_bytes(), format!("ab\"{long}\"42").as_bytes());
        assert_eq!(buf.value().unwrap().len(), 3 * STACK + 6);
    }
}
