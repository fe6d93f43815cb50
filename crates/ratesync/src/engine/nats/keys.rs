//! KV key names.
//!
//! NATS KV keys may only use `A-Z a-z 0-9 - _ = / .`, and `.` separates subject
//! tokens. Layout:
//!
//! ```text
//! <limiter>.<key>        the whole state of one (limiter, key)
//! =clock.<origin>        this engine instance's clock probe (see `clock`)
//! ```
//!
//! `<limiter>` and `<key>` are escaped by [`encode`] (through
//! [`crate::engine::encoding`]): `A-Z a-z 0-9 - _` stay as they are, every other byte
//! becomes `=XX` (two upper-case hex digits). The encoding never
//! produces `.`, so the separator is unambiguous; it is injective, so two identifiers
//! never share an entry. Two forms the escaping can never produce mark the special
//! cases: the limiter-wide key (`""`) is `=`, and an identifier whose escaped form
//! would exceed [`MAX_ENCODED`] characters (a subject must fit the server's control
//! line) is `=H` followed by the hex SHA-256 of its bytes. A key `<limiter>.>` is
//! the watch filter that matches exactly one limiter's entries.

use std::fmt::Write as _;

use crate::engine::encoding::{decode_nats_token, nats_token};

/// Longest escaped identifier kept readable; longer ones are hashed.
pub(crate) const MAX_ENCODED: usize = 256;

/// `raw` in the KV key charset (see the module docs).
pub(crate) fn encode(raw: &str) -> String {
    if raw.is_empty() {
        return "=".to_owned();
    }
    let token = nats_token(raw);
    if token.len() <= MAX_ENCODED {
        return token;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, raw.as_bytes());
    let mut out = String::with_capacity(66);
    out.push_str("=H");
    for byte in digest.as_ref() {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// The inverse of [`encode`] for escaped identifiers; `None` for hashed ones and for
/// text `encode` cannot have produced.
pub(crate) fn decode(encoded: &str) -> Option<String> {
    match encoded {
        "=" => Some(String::new()),
        hashed if hashed.starts_with("=H") => None,
        escaped => decode_nats_token(escaped),
    }
}

/// The KV keys of one limiter, its name encoded once.
#[derive(Debug, Clone)]
pub(crate) struct LimiterKeys {
    /// `<limiter>.`: every entry of the limiter starts with it.
    prefix: Box<str>,
}

impl LimiterKeys {
    pub fn new(limiter: &str) -> Self {
        let mut prefix = encode(limiter);
        prefix.push('.');
        LimiterKeys {
            prefix: prefix.into(),
        }
    }

    /// The entry of `key`.
    pub fn entry(&self, key: &str) -> String {
        let mut name = String::with_capacity(self.prefix.len() + key.len() + 1);
        name.push_str(&self.prefix);
        name.push_str(&encode(key));
        name
    }

    /// The encoded limiter name (the first token of its entries).
    pub fn encoded_limiter(&self) -> &str {
        &self.prefix[..self.prefix.len() - 1]
    }

    /// A watch filter matching every entry of this limiter.
    pub fn filter(&self) -> String {
        format!("{}>", self.prefix)
    }
}

/// Splits an entry name into (encoded limiter, decoded key); the key is `None`
/// when it was hashed. `None` for names this module did not make (clock probes).
pub(crate) fn split_entry(name: &str) -> Option<(&str, Option<String>)> {
    let (limiter, key) = name.split_once('.')?;
    if limiter.starts_with("=clock") {
        return None;
    }
    Some((limiter, decode(key)))
}

/// The clock-probe entry of the engine instance `origin`.
pub(crate) fn clock_probe(origin: crate::store::listener::Origin) -> String {
    format!("=clock.{}", origin.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(key: &str) -> bool {
        !key.is_empty()
            && !key.starts_with('.')
            && !key.ends_with('.')
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
    }

    #[test]
    fn plain_identifiers_stay_readable() {
        let keys = LimiterKeys::new("api");
        assert_eq!(keys.entry("user-42"), "api.user-42");
        assert_eq!(keys.entry(""), "api.=");
        assert_eq!(keys.filter(), "api.>");
        assert_eq!(keys.encoded_limiter(), "api");
    }

    #[test]
    fn hostile_identifiers_cannot_escape_or_collide() {
        let a = LimiterKeys::new("a.b");
        let b = LimiterKeys::new("a");
        assert_ne!(a.entry("c"), b.entry("b.c"));
        assert_ne!(encode("=3D"), encode("="));
        assert_ne!(encode(""), encode("="));
        for hostile in [
            "",
            ".",
            "..",
            "*",
            ">",
            "a.>",
            "=",
            "=41",
            "é ü\n\0",
            "a b",
            "/x/",
        ] {
            let name = a.entry(hostile);
            assert!(valid(&name), "{name:?}");
            assert_eq!(name.matches('.').count(), 1, "{name}");
            assert_eq!(decode(&encode(hostile)).as_deref(), Some(hostile));
            let (limiter, key) = split_entry(&name).unwrap();
            assert_eq!((limiter, key.as_deref()), ("a=2Eb", Some(hostile)));
        }
    }

    #[test]
    fn long_identifiers_are_hashed_and_stay_distinct() {
        let long = "x".repeat(1000);
        let longer = "x".repeat(1001);
        let name = encode(&long);
        assert!(name.starts_with("=H") && name.len() == 66, "{name}");
        assert_ne!(name, encode(&longer));
        assert!(valid(&LimiterKeys::new(&long).entry(&longer)));
        assert_eq!(decode(&name), None);
        // At the bound the identifier is still escaped, not hashed.
        assert_eq!(encode(&"y".repeat(MAX_ENCODED)), "y".repeat(MAX_ENCODED));
    }

    #[test]
    fn clock_probes_are_not_limiter_entries() {
        use crate::store::listener::Origin;
        assert!(split_entry(&clock_probe(Origin(7))).is_none());
        assert!(valid(&clock_probe(Origin(u64::MAX))));
    }
}
