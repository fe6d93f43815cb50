//! Checks of string values with a format: store URLs, CIDR networks, SQL identifiers,
//! NATS bucket names. Messages never contain a URL (not even masked): a malformed
//! URL cannot be masked reliably, and the user knows which one they wrote.

use std::net::IpAddr;

use crate::config::sentinel_url::parse_sentinel_url;

/// URL schemes each engine accepts, as written in messages.
pub(crate) const REDIS_SCHEMES: &[&str] =
    &["redis", "rediss", "redis+sentinel", "unix", "redis+unix"];
pub(crate) const POSTGRES_SCHEMES: &[&str] = &["postgres", "postgresql"];
pub(crate) const NATS_SCHEMES: &[&str] = &["nats", "tls", "ws", "wss"];

/// Checks one store URL (or, when `list` is set, a comma-separated list of them).
pub(crate) fn check_url(
    raw: &str,
    engine: &str,
    schemes: &[&str],
    list: bool,
) -> Result<(), String> {
    if raw.trim().is_empty() {
        return Err("empty URL (an unset variable with an empty default?)".to_owned());
    }
    let parts: Vec<&str> = if list {
        raw.split(',').map(str::trim).collect()
    } else {
        vec![raw.trim()]
    };
    for (i, part) in parts.iter().enumerate() {
        // Which URL of a list is wrong, since the URL itself cannot be shown.
        let which = if parts.len() > 1 {
            format!("server {} of the list: ", i + 1)
        } else {
            String::new()
        };
        if part.is_empty() {
            return Err(format!("{which}empty URL"));
        }
        if part.starts_with("redis+sentinel://") && schemes.contains(&"redis+sentinel") {
            check_sentinel_url(part)?;
            continue;
        }
        let expected = expected_schemes(schemes);
        let url = url::Url::parse(part)
            .map_err(|e| format!("{which}invalid URL ({e}); expected {expected}"))?;
        if !schemes.contains(&url.scheme()) {
            return Err(format!(
                "{which}URL scheme not usable by a {engine} store; expected {expected}"
            ));
        }
        let needs_path = matches!(url.scheme(), "unix" | "redis+unix");
        if needs_path && url.path().trim_matches('/').is_empty() {
            return Err(format!(
                "{which}URL names no socket path (unix:///path/to/redis.sock)"
            ));
        }
    }
    Ok(())
}

/// A `redis+sentinel://` URL: its host list, as the engine will read it.
fn check_sentinel_url(raw: &str) -> Result<(), String> {
    let url = parse_sentinel_url(raw).ok_or(
        "invalid redis+sentinel:// URL; expected \
         redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db]",
    )?;
    if url.hosts.is_empty() {
        return Err("the redis+sentinel:// URL names no sentinel host".to_owned());
    }
    Ok(())
}

fn expected_schemes(schemes: &[&str]) -> String {
    let list: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    list.join(", ")
}

/// Checks a CIDR network (`10.0.0.0/8`, `::1/128`) or a single address.
/// Host bits may be set (`10.1.2.3/8`), as Python's `ip_network(strict=False)` allows.
pub(crate) fn check_cidr(raw: &str) -> Result<(), String> {
    let bad = || format!("`{raw}` is not a network such as 10.0.0.0/8 or 2001:db8::/32");
    let (addr, prefix) = match raw.trim().split_once('/') {
        Some((addr, prefix)) => (addr, Some(prefix)),
        None => (raw.trim(), None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if let Some(prefix) = prefix {
        let bits: u8 = prefix.parse().map_err(|_| bad())?;
        if bits > max {
            return Err(format!("`{raw}` has a prefix longer than {max} bits"));
        }
    }
    Ok(())
}

/// A PostgreSQL identifier usable without quoting, as rate-sync interpolates
/// schema and table names into SQL: this also rules out SQL injection.
pub(crate) fn check_sql_identifier(raw: &str) -> Result<(), String> {
    let mut chars = raw.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        && raw.len() <= 63
    {
        Ok(())
    } else {
        Err(format!(
            "`{raw}` is not a plain SQL identifier (a letter or `_`, then letters, digits, `_` or `$`; at most 63 bytes)"
        ))
    }
}

/// A NATS JetStream key-value bucket name.
pub(crate) fn check_bucket_name(raw: &str) -> Result<(), String> {
    if !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "`{raw}` is not a valid bucket name (letters, digits, `_` and `-` only)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(check_url("redis://:pw@cache:6379/0", "redis", REDIS_SCHEMES, false).is_ok());
        assert!(check_url(
            "redis+sentinel://s1:26379/mymaster",
            "redis",
            REDIS_SCHEMES,
            false
        )
        .is_ok());
        assert!(check_url("unix:///run/redis.sock", "redis", REDIS_SCHEMES, false).is_ok());
        assert!(check_url("unix://", "redis", REDIS_SCHEMES, false).is_err());
        assert!(check_url("postgresql://u:p@db/app", "redis", REDIS_SCHEMES, false).is_err());
        assert!(check_url("nats://a:4222, tls://b:4222", "nats", NATS_SCHEMES, true).is_ok());
        assert!(check_url("nats://a:4222,", "nats", NATS_SCHEMES, true).is_err());
        assert!(check_url("cache:6379", "redis", REDIS_SCHEMES, false).is_err());
        let message =
            check_url("redis://u:hunter2@h:99999", "redis", REDIS_SCHEMES, false).unwrap_err();
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn networks() {
        for ok in [
            "10.0.0.0/8",
            "127.0.0.1",
            "::1/128",
            "10.1.2.3/8",
            "2001:db8::/32",
        ] {
            assert!(check_cidr(ok).is_ok(), "{ok}");
        }
        for bad in ["10.0.0.0/33", "10.0.0/8", "::/129", "x", "10.0.0.0/", ""] {
            assert!(check_cidr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(check_sql_identifier("rate_limiter_state").is_ok());
        assert!(check_sql_identifier("state; drop table x").is_err());
        assert!(check_sql_identifier("1abc").is_err());
        assert!(check_bucket_name("rate_limits").is_ok());
        assert!(check_bucket_name("rate.limits").is_err());
    }
}
