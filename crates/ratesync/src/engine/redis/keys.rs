//! Redis key names.
//!
//! Layout: every key of one (limiter, key) shares one hash tag, so each script touches
//! one slot and Redis Cluster can run it:
//!
//! ```text
//! {<prefix>:<limiter>:<key>}:tb      token-bucket TAT (string, µs)
//! {<prefix>:<limiter>:<key>}:runs    sliding-window log (string: packed runs, see lib.lua)
//! {<prefix>:<limiter>:<key>}:fw      fixed window (string: packed start µs and units)
//! {<prefix>:<limiter>:<key>}:lease   concurrency leases (ZSET: lease id -> expiry µs)
//! <prefix>:releases                  pub/sub channel; messages are `<origin>:<limiter>:<key>`
//! ```
//!
//! `<prefix>` (the store's `key_prefix`), `<limiter>` and `<key>` are encoded by
//! [`crate::engine::encoding`]: no identifier contains the separator or a brace (no
//! collisions, no escaping the namespace, no broken hash tag), and
//! `{<prefix>:<limiter>:*` is a SCAN pattern that matches exactly one limiter's keys.
//! The rate keys are named per algorithm so that a limiter reconfigured from one
//! algorithm to another never finds a value of the wrong type. The log has its own
//! suffix for its bounded representation: the `:sw` ZSET (one member per unit) and
//! the `:seq` counter of older versions are never read, and expire with their TTL.

use redis::{RedisWrite, ToRedisArgs};

use crate::engine::encoding::{decode, encode, encode_into};

/// The key names of one limiter, encoded once when the limiter is created.
#[derive(Debug, Clone)]
pub(crate) struct LimiterKeys {
    /// `{<prefix>:<limiter>:`: every key of the limiter starts with it.
    tag_start: Box<str>,
}

impl LimiterKeys {
    pub fn new(prefix: &str, limiter: &str) -> Self {
        let mut tag_start = String::with_capacity(prefix.len() + limiter.len() + 3);
        tag_start.push('{');
        encode_into(&mut tag_start, prefix);
        tag_start.push(':');
        encode_into(&mut tag_start, limiter);
        tag_start.push(':');
        LimiterKeys {
            tag_start: tag_start.into(),
        }
    }

    /// The hash tag of `key` (`{<prefix>:<limiter>:<key>}`), to which suffixes are added.
    #[inline]
    pub fn tag(&self, key: &str) -> KeyTag {
        let mut tag = String::with_capacity(self.tag_start.len() + key.len() + 1);
        tag.push_str(&self.tag_start);
        encode_into(&mut tag, key);
        tag.push('}');
        KeyTag(tag)
    }

    /// A SCAN pattern matching every key of this limiter.
    pub fn scan_pattern(&self) -> String {
        format!("{}*", self.tag_start)
    }

    /// The key whose leases are stored under `name` (a key name a SCAN of this
    /// limiter found), or `None` for its other keys.
    pub fn leases_owner(&self, name: &[u8]) -> Option<String> {
        let name = std::str::from_utf8(name).ok()?;
        let encoded = name
            .strip_prefix(&*self.tag_start)?
            .strip_suffix(Suffix::Leases.as_str())?
            .strip_suffix('}')?;
        decode(encoded)
    }
}

/// The release channel of a store whose `key_prefix` is `prefix`.
pub(crate) fn release_channel(prefix: &str) -> String {
    let mut channel = encode(prefix);
    channel.push_str(":releases");
    channel
}

/// The hash tag of one (limiter, key).
#[derive(Debug, Clone)]
pub(crate) struct KeyTag(String);

/// The rate and lease keys hanging off a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suffix {
    TokenBucket,
    Log,
    FixedWindow,
    Leases,
}

impl Suffix {
    fn as_str(self) -> &'static str {
        match self {
            Suffix::TokenBucket => ":tb",
            Suffix::Log => ":runs",
            Suffix::FixedWindow => ":fw",
            Suffix::Leases => ":lease",
        }
    }

    /// Every suffix, for deleting all the keys of one key.
    pub const ALL: [Suffix; 4] = [
        Suffix::TokenBucket,
        Suffix::Log,
        Suffix::FixedWindow,
        Suffix::Leases,
    ];
}

impl KeyTag {
    /// The tag itself (`{...}`), which decides the key's Cluster slot.
    pub fn hash_tag(&self) -> &str {
        &self.0
    }

    /// One key of this tag, written straight into the command being built (no
    /// string is allocated per key).
    #[inline]
    pub fn key(&self, suffix: Suffix) -> KeyArg<'_> {
        KeyArg {
            tag: &self.0,
            suffix: suffix.as_str(),
        }
    }

    #[cfg(test)]
    fn full(&self, suffix: Suffix) -> String {
        format!("{}{}", self.0, suffix.as_str())
    }
}

/// A key name as a command argument: tag and suffix written as one argument.
pub(crate) struct KeyArg<'a> {
    tag: &'a str,
    suffix: &'static str,
}

impl ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + RedisWrite,
    {
        use std::io::Write;
        let mut writer = out.writer_for_next_arg();
        // Writing into the command's in-memory buffer cannot fail.
        let _ = writer.write_all(self.tag.as_bytes());
        let _ = writer.write_all(self.suffix.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_identifiers_stay_readable() {
        let keys = LimiterKeys::new("rate_limit", "api");
        assert_eq!(
            keys.tag("user-42").full(Suffix::TokenBucket),
            "{rate_limit:api:user-42}:tb"
        );
        assert_eq!(keys.tag("").full(Suffix::Leases), "{rate_limit:api:}:lease");
        assert_eq!(keys.scan_pattern(), "{rate_limit:api:*");
    }

    #[test]
    fn hostile_identifiers_cannot_escape_or_collide() {
        let keys = LimiterKeys::new("p", "a:b");
        let other = LimiterKeys::new("p", "a");
        // `a:b` + key `c` must not be limiter `a` + key `b:c`.
        assert_ne!(
            keys.tag("c").full(Suffix::Log),
            other.tag("b:c").full(Suffix::Log)
        );
        for hostile in ["}x{", "a}:tb", "*", "%41", "é ü\n\0", "[a-z]?\\"] {
            let tag = keys.tag(hostile).full(Suffix::Log);
            // One `{`, one `}`: the hash tag is the whole identifier part.
            assert_eq!(tag.matches('{').count(), 1, "{tag}");
            assert_eq!(tag.matches('}').count(), 1, "{tag}");
            assert!(!tag.contains(['*', '?', '[', ']', '\\']), "{tag}");
        }
    }

    #[test]
    fn a_scanned_lease_key_names_its_owner() {
        let keys = LimiterKeys::new("p", "lim:1");
        for key in ["", "user:{7}", "a}:lease"] {
            let name = keys.tag(key).full(Suffix::Leases);
            assert_eq!(keys.leases_owner(name.as_bytes()).as_deref(), Some(key));
        }
        let window = keys.tag("u").full(Suffix::Log);
        assert_eq!(keys.leases_owner(window.as_bytes()), None);
        let other = LimiterKeys::new("p", "lim").tag("1:u").full(Suffix::Leases);
        assert_eq!(keys.leases_owner(other.as_bytes()), None);
    }
}
