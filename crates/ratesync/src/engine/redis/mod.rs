//! The Redis engine (SPEC §5 redis): every decision is one Lua script run atomically
//! by the server, on the server's clock.
//!
//! - [`keys`]: key names; all keys of one (limiter, key) share a hash tag (Cluster).
//! - [`scripts`] and `scripts/*.lua`: one script per operation, run with EVALSHA.
//! - [`connection`]: one lazily opened, multiplexed connection per store, replaced
//!   after failures; [`target`]: standalone, Cluster or Sentinel from the config.
//! - [`limiter`]: the [`EngineLimiter`] that builds each script call.
//! - [`releases`]: one pub/sub subscription per store that wakes waiters for a
//!   concurrency slot when another process releases one.
//!
//! The scripts decide in whole microseconds (TIME's resolution, and exact in Lua's
//! doubles): a token bucket's interval and a window's length are rounded *up* to
//! whole microseconds, so rounding can only make a limit stricter. `timing_margin_ms`
//! is accepted for compatibility and ignored: a margin could only loosen limits.

mod connection;
mod keys;
mod limiter;
mod releases;
mod scripts;
mod target;

use std::sync::Arc;

use self::connection::Connection;
use self::releases::Releases;
use self::scripts::Scripts;
use super::{Engine, EngineFuture, EngineLimiter, LimiterSpec, StoreError};
use crate::config::RedisConfig;

pub use self::limiter::RedisLimiter;

/// A Redis store: one multiplexed connection shared by all its limiters and keys.
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisEngine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    connection: Arc<Connection>,
    scripts: Scripts,
    key_prefix: String,
    releases: Arc<Releases>,
}

impl RedisEngine {
    /// Prepares the engine without any I/O: the connection is opened by the first
    /// call (and reopened after failures), so a registry builds while Redis is down.
    /// Fails only on a configuration the Redis client cannot use.
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        Ok(RedisEngine {
            shared: Arc::new(Shared {
                connection: Arc::new(Connection::new(config)?),
                scripts: Scripts::new(),
                releases: Arc::new(Releases::new(keys::release_channel(&config.key_prefix))),
                key_prefix: config.key_prefix.clone(),
            }),
        })
    }

    /// An engine for the Redis at `url` with every other setting at its default, as
    /// a `[stores.x] engine = "redis"` table with only `url` would give (tests, tools).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let config = crate::Config::builder()
            .store("redis", crate::StoreBuilder::redis(url))
            .build()
            .map_err(|error| StoreError::Backend(error.to_string()))?;
        match config.stores.get("redis").map(|store| &store.engine) {
            Some(crate::config::EngineConfig::Redis(redis)) => Self::new(redis),
            _ => Err(StoreError::Backend("not a Redis store".to_owned())),
        }
    }

    /// The concrete limiter handle (what [`Engine::limiter`] returns, unboxed), for
    /// tests that drive the scripts directly.
    pub fn redis_limiter(&self, spec: LimiterSpec) -> Result<Arc<RedisLimiter>, StoreError> {
        let limiter = RedisLimiter::new(self.shared.clone(), &spec)?;
        if spec.policy.concurrency.is_some() {
            self.shared.releases.watch(
                &self.shared.connection,
                limiter.keys().encoded_limiter(),
                spec.releases,
            );
        }
        Ok(Arc::new(limiter))
    }
}

impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(self.redis_limiter(spec)?)
    }

    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(async move {
            let reply: String = self.shared.connection.query(&redis::cmd("PING")).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(StoreError::Backend("unexpected answer to PING".to_owned()))
            }
        })
    }
}
