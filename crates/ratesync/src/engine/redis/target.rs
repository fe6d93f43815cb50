//! What a store's configuration points at: one server, a Cluster, or a master found
//! through Sentinel. Built without I/O: a store that is down at start is a store
//! error at its first call, not a failure to build the registry.

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsMode};

use crate::config::sentinel_url::parse_sentinel_url;
use crate::config::RedisConfig;
use crate::store::StoreError;

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
