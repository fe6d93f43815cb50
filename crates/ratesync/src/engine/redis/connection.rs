//! The one connection of a store: opened on first use, shared by every limiter and
//! key, replaced after it fails.
//!
//! A standalone or Sentinel store holds one `MultiplexedConnection` (requests from all
//! tasks are pipelined on one socket); a Cluster store one async `ClusterConnection`
//! (one multiplexed socket per node, slots followed by the client). Taking it is a
//! read lock and a clone of a few pointers: no pool, no checkout. When a call fails
//! in a way that says the socket is gone (I/O error, dropped connection, a timeout,
//! or a Sentinel master turned replica answering READONLY), the connection is
//! discarded and the next call opens a new one — asking the sentinels again, so a
//! failover is followed. One task reconnects at a time; the others wait for it,
//! bounded by the core's deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError, ServerErrorKind, Value};

use super::target::Target;
use crate::config::RedisConfig;
use crate::store::{client_timeout, StoreError};

#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends `cmd`; a server error reply (NOSCRIPT, READONLY, ...) comes back as `Err`.
    async fn query(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        let value = match self {
            Conn::Single(c) => c.req_packed_command(cmd).await?,
            Conn::Cluster(c) => c.req_packed_command(cmd).await?,
        };
        value.extract_error()
    }
}

pub(crate) struct Connection {
    pub target: Target,
    current: RwLock<Option<(u64, Conn)>>,
    /// Bumped on every new connection, so a failure on an old one does not discard
    /// its replacement.
    generation: AtomicU64,
    /// Which configured Cluster node the next release subscription tries.
    pubsub_turn: AtomicU64,
    connecting: tokio::sync::Mutex<()>,
    config: AsyncConnectionConfig,
    connect_timeout: Duration,
    response_timeout: Duration,
    /// Passwords that must not leak into error messages.
    secrets: Vec<String>,
}

impl Connection {
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        let target = Target::from_config(config)?;
        let mut secrets: Vec<String> = config
            .password
            .iter()
            .map(|p| p.expose().to_owned())
            .collect();
        for url in std::iter::once(&config.url).chain(&config.sentinels) {
            for part in url.expose().split(',') {
                if let Ok(url) = url::Url::parse(part.trim()) {
                    secrets.extend(url.password().map(str::to_owned));
                }
            }
        }
        secrets.retain(|s| !s.is_empty());
        // The store runtime cuts every call at `socket_timeout` (the engine's
        // deadline); the client's own timeout fires a little earlier so that this
        // layer sees it and replaces a connection whose server vanished without
        // closing it (a cancelled call would leave it in place).
        let response_timeout = client_timeout(config.socket_timeout);
        Ok(Connection {
            target,
            current: RwLock::new(None),
            generation: AtomicU64::new(0),
            pubsub_turn: AtomicU64::new(0),
            connecting: tokio::sync::Mutex::new(()),
            config: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.socket_connect_timeout))
                .set_response_timeout(Some(response_timeout)),
            connect_timeout: config.socket_connect_timeout,
            response_timeout,
            secrets,
        })
    }

    /// Sends `cmd` and parses the reply, mapping every failure to a [`StoreError`].
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, StoreError> {
        self.query_raw(cmd).await.map_err(|e| self.map_error(e))
    }

    /// As [`Connection::query`], keeping the Redis error (scripts look for NOSCRIPT).
    pub async fn query_raw<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        let (generation, mut conn) = self.get().await?;
        match conn.query(cmd).await {
            Ok(value) => T::from_redis_value(value).map_err(RedisError::from),
            Err(error) => {
                if must_reconnect(&error) {
                    self.discard(generation);
                }
                Err(error)
            }
        }
    }

    /// Runs `cmd` on one node of a cluster (by `host:port`), or on the only server.
    pub async fn query_node<T: FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let Some((host, port)) = node else {
            return self.query(cmd).await;
        };
        let (generation, conn) = self.get().await.map_err(|e| self.map_error(e))?;
        let Conn::Cluster(mut cluster) = conn else {
            return self.query(cmd).await;
        };
        use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: host.clone(),
            port: *port,
        });
        let routed = cluster.route_command(cmd.clone(), routing).await;
        match routed.and_then(Value::extract_error) {
            Ok(value) => T::from_redis_value(value).map_err(|e| self.map_error(e.into())),
            Err(error) => {
                if must_reconnect(&error) {
                    self.discard(generation);
                }
                Err(self.map_error(error))
            }
        }
    }

    /// Whether the store is a cluster (commands that scan must visit every master).
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster { .. })
    }

    /// The current connection, opened if there is none.
    async fn get(&self) -> Result<(u64, Conn), RedisError> {
        if let Some(current) = self.current.read().as_ref() {
            return Ok(current.clone());
        }
        let _connecting = self.connecting.lock().await;
        // Another task may have connected while this one waited.
        if let Some(current) = self.current.read().as_ref() {
            return Ok(current.clone());
        }
        let conn = self.connect().await?;
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *self.current.write() = Some((generation, conn.clone()));
        Ok((generation, conn))
    }

    fn discard(&self, generation: u64) {
        let mut current = self.current.write();
        if current.as_ref().is_some_and(|(g, _)| *g == generation) {
            *current = None;
        }
    }

    async fn connect(&self) -> Result<Conn, RedisError> {
        match &self.target {
            Target::Standalone(client) => client
                .get_multiplexed_async_connection_with_config(&self.config)
                .await
                .map(Conn::Single),
            Target::Cluster { client, .. } => {
                let connecting = client.get_async_connection();
                match tokio::time::timeout(self.connect_timeout, connecting).await {
                    Ok(conn) => conn.map(Conn::Cluster),
                    Err(_) => Err(timed_out()),
                }
            }
            Target::Sentinel(sentinel) => {
                let master = {
                    let mut sentinel = sentinel.lock().await;
                    // Asking the sentinels is itself bounded: they may be down too.
                    tokio::time::timeout(self.connect_timeout, sentinel.async_get_client())
                        .await
                        .map_err(|_| timed_out())??
                };
                master
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
                    .map(Conn::Single)
            }
        }
    }

    /// A client for the release subscription: the server, a cluster node, or the
    /// master the sentinels name now.
    pub async fn pubsub_client(&self) -> Result<redis::Client, RedisError> {
        match &self.target {
            Target::Standalone(client) => Ok(client.clone()),
            Target::Cluster { nodes, .. } => {
                // Classic PUBLISH reaches every node of a cluster, so any node will
                // do; each new subscription takes the next one, so a node that is
                // down (or gone) is left for the next instead of retried forever.
                let turn = self.pubsub_turn.fetch_add(1, Ordering::Relaxed);
                let node = nodes.get(turn as usize % nodes.len().max(1));
                redis::Client::open(node.ok_or_else(timed_out)?.clone())
            }
            Target::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                tokio::time::timeout(self.connect_timeout, sentinel.async_get_client())
                    .await
                    .map_err(|_| timed_out())?
            }
        }
    }

    /// The bound on opening a connection (`socket_connect_timeout`).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// A Redis error as a [`StoreError`], with any password masked.
    pub fn map_error(&self, error: RedisError) -> StoreError {
        let mut text = error.to_string();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "***");
            }
        }
        if error.is_timeout() {
            StoreError::Timeout(self.response_timeout)
        } else if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_cluster_error()
            || matches!(
                error.kind(),
                redis::ErrorKind::ClusterConnectionNotFound
                    | redis::ErrorKind::MasterNameNotFoundBySentinel
                    | redis::ErrorKind::EmptySentinelList
                    | redis::ErrorKind::AuthenticationFailed
            )
        {
            StoreError::Connection(text)
        } else {
            StoreError::Backend(text)
        }
    }
}

/// Whether an error says the socket (or the master behind it) is no longer usable.
fn must_reconnect(error: &RedisError) -> bool {
    error.is_unrecoverable_error()
        || error.is_io_error()
        || error.is_connection_dropped()
        || error.is_timeout()
        || matches!(
            error.kind(),
            redis::ErrorKind::Server(ServerErrorKind::ReadOnly)
                | redis::ErrorKind::Server(ServerErrorKind::MasterDown)
        )
}

fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "connection timed out",
    ))
}
