//! The `redis+sentinel://` URL: several sentinel hosts, then the master's name and
//! database (`redis+sentinel://[user:password@]host[:port][,host[:port]...]/master[/db]`).
//! `url::Url` cannot read a host list, so this reads it; the configuration checks a
//! store's URL with it at load time and the Redis engine builds its Sentinel client
//! from the same reading, so a URL that loads is one the engine can use.

/// The port of a sentinel host given without one.
pub(crate) const SENTINEL_PORT: u16 = 26379;

// Without the Redis engine only validation reads it (hosts and master).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SentinelUrl {
    pub hosts: Vec<(String, u16)>,
    pub master: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: Option<i64>,
    /// The master speaks TLS (`rediss://` given with a `sentinels` list).
    pub tls: bool,
}

/// Reads a `redis+sentinel://` URL (several hosts, which `url::Url` cannot parse), or
/// the credentials and db of a plain URL given alongside a `sentinels` list.
pub(crate) fn parse_sentinel_url(raw: &str) -> Option<SentinelUrl> {
    let (scheme, rest) = raw.split_once("://")?;
    let mut out = SentinelUrl {
        tls: scheme == "rediss",
        ..SentinelUrl::default()
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let hosts = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            out.username = Some(percent_decode(user)?);
            if !password.is_empty() {
                out.password = Some(percent_decode(password)?);
            }
            hosts
        }
        None => authority,
    };
    for host in hosts.split(',').map(str::trim).filter(|h| !h.is_empty()) {
        // `[::1]:26379`, `host:26379` or a bare host.
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(':') && !port.ends_with(']') => {
                (name, port.parse().ok()?)
            }
            _ => (host, SENTINEL_PORT),
        };
        out.hosts
            .push((name.trim_matches(['[', ']']).to_owned(), port));
    }
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if scheme == "redis+sentinel" {
        if let Some(master) = segments.next() {
            out.master = Some(percent_decode(master)?);
        }
    }
    if let Some(db) = segments.next() {
        out.db = Some(db.parse().ok()?);
    }
    Some(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let url = parse_sentinel_url("redis+sentinel://:p%40ss@s1:26380,s2/mymaster/2").unwrap();
        assert_eq!(
            url.hosts,
            vec![("s1".to_owned(), 26380), ("s2".to_owned(), SENTINEL_PORT)]
        );
        assert_eq!(url.master.as_deref(), Some("mymaster"));
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.db, Some(2));
        let url = parse_sentinel_url("rediss://u:pw@ignored:6379/3").unwrap();
        assert!(url.tls && url.master.is_none() && url.db == Some(3));
        assert!(parse_sentinel_url("redis+sentinel://s1:notaport/m").is_none());
    }
}
