//! What a store's configuration points at: one server, a Cluster, or a master found
//! through Sentinel. Built without I/O: a store that is down at start is a store
//! error at its first call, not a failure to build the registry.

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsMode};

use crate::config::RedisConfig;
use crate::engine::StoreError;

/// The port sentinels listen on unless told otherwise.
const SENTINEL_PORT: u16 = 26379;

pub(crate) enum Target {
    Standalone(Client),
    Cluster {
        client: ClusterClient,
        /// The configured nodes: the release subscription connects to one of them
        /// (PUBLISH reaches every node of a cluster).
        nodes: Vec<ConnectionInfo>,
    },
    /// Asked again for the master on every reconnect, so a failover is followed.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

impl Target {
    pub fn from_config(config: &RedisConfig) -> Result<Self, StoreError> {
        let raw = config.url.expose().trim();
        let invalid =
            |what: &str| StoreError::Backend(format!("invalid Redis URL `{}`: {what}", config.url));
        if raw.starts_with("rediss") || raw.contains("rediss://") {
            // rustls needs a process-wide crypto provider; an application that
            // installed its own keeps it.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if raw.starts_with("redis+sentinel://") || !config.sentinels.is_empty() {
            return sentinel(config, raw).map(|c| Target::Sentinel(tokio::sync::Mutex::new(c)));
        }
        let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
        let mut nodes = Vec::with_capacity(parts.len());
        for part in &parts {
            let info = part
                .into_connection_info()
                .map_err(|_| invalid("not a redis:// or rediss:// URL"))?;
            nodes.push(with_credentials(info, config));
        }
        if config.cluster || nodes.len() > 1 {
            if nodes.iter().any(|n| n.redis_settings().db() != 0) {
                return Err(invalid("Redis Cluster has only database 0 (`db`)"));
            }
            let mut builder = ClusterClientBuilder::new(nodes.clone())
                .connection_timeout(config.socket_connect_timeout)
                .response_timeout(config.socket_timeout);
            if let Some(password) = &config.password {
                builder = builder.password(password.expose());
            }
            let client = builder
                .build()
                .map_err(|_| invalid("not a usable list of cluster nodes"))?;
            return Ok(Target::Cluster { client, nodes });
        }
        let node = nodes.pop().ok_or_else(|| invalid("empty"))?;
        Client::open(node)
            .map(Target::Standalone)
            .map_err(|_| invalid("not a usable Redis URL"))
    }
}

/// `password` and `db` from the store's configuration override the URL's.
fn with_credentials(info: ConnectionInfo, config: &RedisConfig) -> ConnectionInfo {
    let mut redis = info.redis_settings().clone();
    if let Some(password) = &config.password {
        redis = redis.set_password(password.expose());
    }
    if let Some(db) = config.db {
        redis = redis.set_db(i64::from(db));
    }
    info.set_redis_settings(redis)
}

/// A Sentinel setup: `redis+sentinel://[user:pass@]host[:port][,host[:port]...]/master[/db]`,
/// or `sentinels = [...]` with `sentinel_master` (and the URL's credentials and db for
/// the master).
fn sentinel(config: &RedisConfig, raw: &str) -> Result<SentinelClient, StoreError> {
    let invalid = |what: &str| {
        StoreError::Backend(format!(
            "invalid Redis Sentinel setup (`{}`): {what}",
            config.url
        ))
    };
    let parsed = parse_sentinel_url(raw).ok_or_else(|| invalid("cannot read the URL"))?;
    let mut sentinels: Vec<ConnectionInfo> = Vec::new();
    for url in &config.sentinels {
        let info = url
            .expose()
            .into_connection_info()
            .map_err(|_| invalid("a `sentinels` entry is not host:port"))?;
        sentinels.push(info);
    }
    if sentinels.is_empty() {
        for (host, port) in &parsed.hosts {
            sentinels.push(
                ConnectionAddr::Tcp(host.clone(), *port)
                    .into_connection_info()
                    .map_err(|_| invalid("a sentinel address is not host:port"))?,
            );
        }
    }
    let master = config
        .sentinel_master
        .clone()
        .or(parsed.master)
        .ok_or_else(|| invalid("no master name (`sentinel_master` or the URL's path)"))?;
    let mut redis = redis::RedisConnectionInfo::default();
    if let Some(user) = parsed.username.filter(|u| !u.is_empty()) {
        redis = redis.set_username(user);
    }
    if let Some(password) = config
        .password
        .as_ref()
        .map(|p| p.expose().to_owned())
        .or(parsed.password)
    {
        redis = redis.set_password(password);
    }
    if let Some(db) = config.db.map(i64::from).or(parsed.db) {
        redis = redis.set_db(db);
    }
    let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(redis);
    if parsed.tls {
        node = node.set_tls_mode(TlsMode::Secure);
    }
    SentinelClient::build(sentinels, master, Some(node), SentinelServerType::Master)
        .map_err(|_| invalid("no usable sentinel"))
}

#[derive(Debug, Default, PartialEq)]
struct SentinelUrl {
    hosts: Vec<(String, u16)>,
    master: Option<String>,
    username: Option<String>,
    password: Option<String>,
    db: Option<i64>,
    /// The master speaks TLS (`rediss://` given with a `sentinels` list).
    tls: bool,
}

/// Reads a `redis+sentinel://` URL (several hosts, which `url::Url` cannot parse), or
/// the credentials and db of a plain URL given alongside a `sentinels` list.
fn parse_sentinel_url(raw: &str) -> Option<SentinelUrl> {
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
