//! Redis key names.
//!
//! Layout: every key of one (limiter, key) shares one hash tag, so each script touches
//! one slot and Redis Cluster can run it:
//!
//! ```text
//! {<prefix>:<limiter>:<key>}:tb      token-bucket TAT (string, µs)
//! {<prefix>:<limiter>:<key>}:sw      sliding-window log (ZSET: unique id -> admission µs)
//! {<prefix>:<limiter>:<key>}:seq     the log's id sequence (INCRBY)
//! {<prefix>:<limiter>:<key>}:lease   concurrency leases (ZSET: lease id -> expiry µs)
//! <prefix>:releases                  pub/sub channel; messages are `<origin>:<limiter>:<key>`
//! ```
//!
//! `<prefix>` (the store's `key_prefix`), `<limiter>` and `<key>` are percent-encoded
//! ([`encode`]): `%`, `{`, `}`, `:`, the glob characters `* ? [ ] \`, space and every
//! byte outside printable ASCII become `%XX`. So no identifier contains the separator
//! or a brace (no collisions, no escaping the namespace, no broken hash tag), and
//! `{<prefix>:<limiter>:*` is a SCAN pattern that matches exactly one limiter's keys.
//! The rate keys are named per algorithm so that a limiter reconfigured from one
//! algorithm to the other never finds a value of the wrong type.

use std::fmt::Write as _;

use redis::{RedisWrite, ToRedisArgs};

/// Whether `byte` is kept as is by [`encode`].
#[inline]
fn is_plain(byte: u8) -> bool {
    matches!(byte, b'!'..=b'~')
        && !matches!(
            byte,
            b'%' | b'{' | b'}' | b':' | b'*' | b'?' | b'[' | b']' | b'\\'
        )
}

/// Appends `raw` to `out`, percent-encoded (see the module docs). Injective: `%`
/// itself is encoded, so distinct inputs give distinct outputs.
pub(crate) fn encode_into(out: &mut String, raw: &str) {
    if raw.bytes().all(is_plain) {
        out.push_str(raw);
        return;
    }
    for byte in raw.bytes() {
        if is_plain(byte) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// `raw`, percent-encoded.
pub(crate) fn encode(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    encode_into(&mut out, raw);
    out
}

/// The inverse of [`encode`]; `None` for text that `encode` cannot have produced.
pub(crate) fn decode(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The key names of one limiter, encoded once when the limiter is created.
#[derive(Debug, Clone)]
pub(crate) struct LimiterKeys {
    /// `{<prefix>:<limiter>:`: every key of the limiter starts with it.
    tag_start: Box<str>,
    /// `<limiter>`, encoded: the first part of a release message.
    limiter: Box<str>,
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
            limiter: encode(limiter).into(),
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

    /// The release message naming this limiter and `key`, sent by the engine
    /// instance `origin` (hex digits; `-` for messages every instance must act on).
    pub fn release_message(&self, origin: &str, key: &str) -> String {
        let mut message = String::with_capacity(origin.len() + self.limiter.len() + key.len() + 2);
        message.push_str(origin);
        message.push(':');
        message.push_str(&self.limiter);
        message.push(':');
        encode_into(&mut message, key);
        message
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

    /// The encoded limiter id, as release messages name it.
    pub fn encoded_limiter(&self) -> &str {
        &self.limiter
    }
}

/// The release channel of a store whose `key_prefix` is `prefix`.
pub(crate) fn release_channel(prefix: &str) -> String {
    let mut channel = encode(prefix);
    channel.push_str(":releases");
    channel
}

/// A release message read back: who sent it, the encoded limiter, the decoded key.
#[derive(Debug, PartialEq)]
pub(crate) struct ReleaseMessage<'a> {
    pub origin: &'a str,
    pub limiter: &'a str,
    pub key: String,
}

pub(crate) fn parse_release_message(message: &str) -> Option<ReleaseMessage<'_>> {
    let (origin, rest) = message.split_once(':')?;
    let (limiter, key) = rest.split_once(':')?;
    Some(ReleaseMessage {
        origin,
        limiter,
        key: decode(key)?,
    })
}

/// The hash tag of one (limiter, key).
#[derive(Debug, Clone)]
pub(crate) struct KeyTag(String);

/// The rate and lease keys hanging off a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Suffix {
    TokenBucket,
    Log,
    LogSequence,
    Leases,
}

impl Suffix {
    fn as_str(self) -> &'static str {
        match self {
            Suffix::TokenBucket => ":tb",
            Suffix::Log => ":sw",
            Suffix::LogSequence => ":seq",
            Suffix::Leases => ":lease",
        }
    }

    /// Every suffix, for deleting all the keys of one key.
    pub const ALL: [Suffix; 4] = [
        Suffix::TokenBucket,
        Suffix::Log,
        Suffix::LogSequence,
        Suffix::Leases,
    ];
}

impl KeyTag {
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
            assert_eq!(decode(&encode(hostile)).as_deref(), Some(hostile));
        }
        assert_ne!(encode("%41"), encode("A"));
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

    #[test]
    fn release_messages_round_trip() {
        let keys = LimiterKeys::new("p", "lim:1");
        let message = keys.release_message("00ff", "user:{7}");
        let parsed = parse_release_message(&message).unwrap();
        assert_eq!(parsed.origin, "00ff");
        assert_eq!(parsed.limiter, keys.encoded_limiter());
        assert_eq!(parsed.key, "user:{7}");
        assert_eq!(release_channel("rate_limit"), "rate_limit:releases");
        assert!(parse_release_message("o:nocolon").is_none());
        assert!(parse_release_message("o:a:%zz").is_none());
    }
}
