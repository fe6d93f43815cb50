//! The one way user-supplied identifiers (limiter names, keys) are made safe in a
//! store's names and messages (`docs/design.md#keys`): percent-encoding, with the
//! character set each store allows.
//!
//! Any string is a valid key, but a key may contain the store's separators, glob
//! characters or bytes its names cannot hold. Encoding every byte outside a store's
//! safe set as `%XX` (`%` itself included) is injective, so two identifiers never
//! share a name and none can escape its namespace; decoding gives the identifier
//! back (release messages name the key whose slot came free).
//!
//! - Redis key names and the text release messages of Redis and PostgreSQL keep
//!   printable ASCII except `%`, the separator `:`, the hash-tag braces `{` `}` and
//!   the glob characters `* ? [ ] \`.
//! - NATS KV keys allow only `A-Z a-z 0-9 - _ = / .`: everything else is encoded, and
//!   the escape character is `=` instead of `%` (which NATS refuses).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet};

/// Bytes a Redis name or a text release message cannot hold as they are.
#[cfg(any(feature = "redis", feature = "postgres"))]
const NAME: &AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'%')
    .add(b':')
    .add(b'{')
    .add(b'}')
    .add(b'*')
    .add(b'?')
    .add(b'[')
    .add(b']')
    .add(b'\\');

/// Bytes a NATS KV key token cannot hold as they are (`.` separates tokens).
#[cfg(feature = "nats")]
const NATS_TOKEN: &AsciiSet = &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Appends `raw`, encoded for a Redis name or a release message, to `out`.
#[cfg(any(feature = "redis", feature = "postgres"))]
#[inline]
pub(crate) fn encode_into(out: &mut String, raw: &str) {
    out.extend(utf8_percent_encode(raw, NAME));
}

/// `raw`, encoded for a Redis name.
#[cfg(feature = "redis")]
pub(crate) fn encode(raw: &str) -> String {
    utf8_percent_encode(raw, NAME).to_string()
}

/// The identifier [`encode`] (or [`nats_token`], once its escapes are back to `%`)
/// made `encoded` from; `None` when it does not decode to UTF-8.
pub(crate) fn decode(encoded: &str) -> Option<String> {
    percent_decode_str(encoded)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

/// `raw` as a NATS KV key token: `=XX` escapes.
#[cfg(feature = "nats")]
pub(crate) fn nats_token(raw: &str) -> String {
    // `%` and `=` are both encoded, so the only `%` in the output are escapes: turning
    // them into `=` keeps the encoding injective.
    utf8_percent_encode(raw, NATS_TOKEN)
        .to_string()
        .replace('%', "=")
}

/// The identifier a NATS token made by [`nats_token`] stands for.
#[cfg(feature = "nats")]
pub(crate) fn decode_nats_token(token: &str) -> Option<String> {
    if token.contains('%') {
        return None;
    }
    decode(&token.replace('=', "%"))
}

/// A release message of a text feed (Redis pub/sub, PostgreSQL NOTIFY):
/// `<origin>:<limiter>:<key>`, limiter and key encoded; origin `-` for messages
/// every engine instance acts on (resets).
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn release_message(
    origin: Option<crate::store::listener::Origin>,
    limiter: &str,
    key: &str,
) -> String {
    let mut message = String::with_capacity(limiter.len() + key.len() + 20);
    match origin {
        Some(origin) => message.push_str(&origin.hex()),
        None => message.push('-'),
    }
    message.push(':');
    encode_into(&mut message, limiter);
    message.push(':');
    encode_into(&mut message, key);
    message
}

/// A release message read back; `None` for text [`release_message`] cannot have made.
#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) fn parse_release_message(message: &str) -> Option<crate::store::listener::Released> {
    use crate::store::listener::{Origin, Released};
    let mut parts = message.splitn(3, ':');
    let origin = match parts.next()? {
        "-" => None,
        hex => Some(Origin::parse_hex(hex)?),
    };
    let limiter = decode(parts.next()?)?;
    let key = decode(parts.next()?)?;
    Some(Released {
        origin,
        limiter: limiter.into_bytes().into_boxed_slice(),
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: [&str; 7] = ["}x{", "a}:tb", "*", "%41", "é ü\n\0", "[a-z]?\\", "a=b.c/d"];

    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[test]
    fn names_keep_plain_text_and_round_trip_the_rest() {
        // `encode_into`: `encode` exists only with Redis, which PostgreSQL's release
        // messages do without.
        let encode = |raw: &str| {
            let mut encoded = String::new();
            encode_into(&mut encoded, raw);
            encoded
        };
        assert_eq!(encode("user-42@example.com"), "user-42@example.com");
        for raw in HOSTILE {
            let encoded = encode(raw);
            assert!(
                !encoded.contains(['{', '}', ':', '*', '?', '[', ']', '\\', ' ']),
                "{encoded}"
            );
            assert_eq!(decode(&encoded).as_deref(), Some(raw));
        }
        assert_ne!(encode("%41"), encode("A"));
    }

    #[cfg(feature = "nats")]
    #[test]
    fn nats_tokens_use_the_kv_charset() {
        assert_eq!(nats_token("user-42_x"), "user-42_x");
        for raw in HOSTILE {
            let token = nats_token(raw);
            assert!(
                token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
                "{token}"
            );
            assert_eq!(decode_nats_token(&token).as_deref(), Some(raw));
        }
        assert_ne!(nats_token("=41"), nats_token("A"));
    }

    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[test]
    fn release_messages_round_trip() {
        use crate::store::listener::Origin;
        let origin = Origin(0xff);
        let message = release_message(Some(origin), "lim:1", "user:{7}");
        let parsed = parse_release_message(&message).unwrap();
        assert_eq!(parsed.origin, Some(origin));
        assert_eq!(&*parsed.limiter, b"lim:1");
        assert_eq!(parsed.key, "user:{7}");
        let reset = parse_release_message(&release_message(None, "a", "")).unwrap();
        assert_eq!((reset.origin, reset.key.as_str()), (None, ""));
        assert!(parse_release_message("0000000000000000:nocolon").is_none());
        assert!(parse_release_message("zz:a:b").is_none());
    }
}
