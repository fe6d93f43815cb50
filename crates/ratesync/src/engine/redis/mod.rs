//! The Redis engine (`docs/design.md#redis`): decisions are made by Lua run
//! atomically by the server, on the server's clock.
//!
//! - `keys`: key names; all keys of one (limiter, key) share a hash tag (Cluster).
//! - `scripts` and `scripts/*.lua`: one function per operation, in a function
//!   library (EVALSHA scripts on servers without functions); the reference algorithm
//!   is ported once, in `scripts/lib.lua`.
//! - `batch`: acquires that queue while others are in flight go in one call
//!   (`docs/design.md#batches`).
//! - `connection`: one lazily opened, multiplexed connection per store, replaced
//!   after failures; `target`: standalone, Cluster or Sentinel from the config.
//! - `limiter`: the [`EngineLimiter`] that builds each script call.
//! - `releases`: the store's pub/sub channel as a release feed.
//!
//! A group is one script call over all its keys. In a Cluster its keys must share a
//! slot for that; a group whose keys do not (they belong to different limiters,
//! each with its own hash tag) is reserved member by member and refunded instead
//! (`docs/design.md#groups`).
//!
//! The scripts decide in whole microseconds (`engine::micros`).
//! `timing_margin_ms` is accepted for compatibility and ignored: a margin could only
//! loosen limits.

mod batch;
mod connection;
mod keys;
mod limiter;
mod releases;
mod scripts;
mod target;

use std::sync::Arc;
use std::time::Duration;

use self::connection::Connection;
use self::scripts::{ScriptClock, Scripts};
use crate::algorithm::GroupDecision;
use crate::config::RedisConfig;
use crate::store::listener::ReleaseListener;
use crate::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError};

pub use self::limiter::RedisLimiter;

/// A Redis store: one multiplexed connection shared by all its limiters and keys.
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisEngine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    connection: Arc<Connection>,
    /// Acquires waiting to be sent together.
    batches: batch::Batches,
    scripts: Scripts,
    key_prefix: String,
    /// The pub/sub channel of release messages.
    channel: String,
    listener: Arc<ReleaseListener>,
    deadline: Duration,
}

impl RedisEngine {
    /// Prepares the engine without any I/O: the connection is opened by the first
    /// call (and reopened after failures), so a registry builds while Redis is down.
    /// Fails only on a configuration the Redis client cannot use.
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        Self::build(config, ScriptClock::Server)
    }

    /// As [`Self::new`], deciding at the time `clock` says instead of the server's
    /// (test hook).
    #[cfg(feature = "testing")]
    pub fn with_pinned_clock(
        config: &RedisConfig,
        clock: crate::testing::PinnedClock,
    ) -> Result<Self, StoreError> {
        Self::build(config, ScriptClock::Pinned(clock))
    }

    /// This engine, running its scripts with EVALSHA as on a server without
    /// functions (test hook: that path is tested on servers that have them).
    #[cfg(feature = "testing")]
    pub fn without_functions(self) -> Self {
        self.shared.scripts.without_functions();
        self
    }

    fn build(config: &RedisConfig, clock: ScriptClock) -> Result<Self, StoreError> {
        Ok(RedisEngine {
            shared: Arc::new(Shared {
                connection: Arc::new(Connection::new(config)?),
                batches: batch::Batches::default(),
                scripts: Scripts::new(&clock),
                channel: keys::release_channel(&config.key_prefix),
                listener: ReleaseListener::new(),
                key_prefix: config.key_prefix.clone(),
                deadline: config.socket_timeout,
            }),
        })
    }
}

impl Engine for RedisEngine {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn deadline(&self) -> Duration {
        self.shared.deadline
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let limiter = RedisLimiter::new(self.shared.clone(), &spec)?;
        if spec.policy.concurrency.is_some() {
            let shared = &self.shared;
            shared
                .listener
                .watch(spec.id.as_bytes(), &spec.releases, || {
                    releases::RedisFeed::new(&shared.connection, &shared.channel)
                });
        }
        Ok(Arc::new(limiter))
    }

    fn ping(&self) -> StoreCall<'_, ()> {
        StoreCall::pending(async move {
            let reply: String = self.shared.connection.query(&redis::cmd("PING")).await?;
            if reply == "PONG" {
                Ok(())
            } else {
                Err(StoreError::Backend("unexpected answer to PING".to_owned()))
            }
        })
    }

    fn acquire_all<'a>(&'a self, members: &'a [GroupMember<'a>]) -> StoreCall<'a, GroupDecision> {
        let limiters: Option<Vec<&RedisLimiter>> = members
            .iter()
            .map(|m| {
                m.limiter
                    .downcast::<RedisLimiter>()
                    .filter(|l| l.is_of(&self.shared))
            })
            .collect();
        let Some(limiters) = limiters else {
            return StoreCall::Ready(Err(StoreError::ForeignLimiter));
        };
        if self.shared.connection.is_cluster() && !limiter::one_slot(&limiters, members) {
            return StoreCall::pending(crate::store::groups::reserve_in_order(members));
        }
        StoreCall::pending(limiter::acquire_group(&self.shared, limiters, members))
    }
}
