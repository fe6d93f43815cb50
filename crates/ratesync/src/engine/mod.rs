//! The engine contract: what a store must do for ratesync to limit through it.
//!
//! A store's [`Engine`] hands out one [`EngineLimiter`] per configured limiter; that
//! handle makes every decision for the limiter's keys. The contract every engine keeps:
//!
//! - **Atomic inside the store.** `acquire` reads the key's state, decides with the
//!   functions of [`crate::algorithm`] (or a faithful port of them to Lua or SQL) and
//!   writes the new state as one indivisible step in the store: two processes can
//!   never both take the last unit. Rate and concurrency are taken together or not at
//!   all; a refusal writes nothing that changes a later decision.
//! - **The store's clock.** "Now" is read by the store at decision time (Redis `TIME`,
//!   PostgreSQL `clock_timestamp()`, NATS server timestamps, the memory engine's
//!   [`crate::Clock`]), never by the calling host, so hosts with skewed clocks share
//!   one exact limit.
//! - **Keys expire.** State that has become indistinguishable from a fresh key may be
//!   dropped at any time, and every store keeps it under a TTL so idle keys vanish.
//! - **Keys are opaque.** Any string is a valid key (the empty string is the
//!   limiter-wide key); engines encode or hash keys so none can escape its namespace.
//! - **Bounded calls.** Every future resolves within the store's deadline; a store
//!   that cannot answer returns [`StoreError`], and the limiter applies its failure
//!   policy (SPEC §4.7). Engines never panic on store input.
//! - **Leases.** `acquire` with a lease id takes a concurrency slot that expires
//!   `lease_ttl` later unless renewed; `release` and `renew` of an unknown or expired
//!   lease change nothing. When a lease is released in another process, the engine
//!   calls [`ReleaseSignal::released`] so local waiters retry at once.

pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
mod release_routes;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::algorithm::{LeaseId, Policy};
use crate::decision::Decision;

pub use crate::limiter::ReleaseSignal;

/// The future every engine call returns.
pub type EngineFuture<'a, T> = BoxFuture<'a, Result<T, StoreError>>;

/// A coordination backend: memory, Redis, PostgreSQL, NATS.
pub trait Engine: Send + Sync + 'static {
    /// The configuration name of the engine (`"memory"`, `"redis"`, ...).
    fn name(&self) -> &'static str;

    /// Whether decisions cross a network (used to decide whether store-call latency
    /// is worth measuring and whether the circuit breaker applies).
    fn is_remote(&self) -> bool;

    /// The handle through which all decisions of limiter `id` are made. Called once
    /// per limiter when a registry is built.
    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError>;

    /// A cheap call that succeeds when the store answers; the circuit breaker probes
    /// with it in the background while the circuit is open.
    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What an engine needs to know about a limiter.
#[derive(Debug, Clone)]
pub struct LimiterSpec {
    /// The limiter's configured name; engines use it to namespace keys.
    pub id: Arc<str>,
    /// The rule and concurrency cap to enforce.
    pub policy: Policy,
    /// Where to report releases observed from other processes.
    pub releases: ReleaseSignal,
}

/// Decisions for one limiter, on one store.
pub trait EngineLimiter: Send + Sync + 'static {
    /// Decides an attempt of `cost` on `key` and consumes it when admitted; with a
    /// lease id, also takes a concurrency slot under that id, atomically.
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision>;

    /// The decision an attempt of `cost` would get now, consuming nothing.
    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision>;

    /// Gives back a concurrency slot. Unknown or expired leases are ignored.
    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()>;

    /// Extends a live lease by `lease_ttl` from now. `false` when it had expired.
    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool>;

    /// Forgets the state of `key`, or of every key of this limiter when `None`.
    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()>;

    /// The memory engine's limiter, when this is one: its decisions are made in this
    /// process without I/O, so callers skip the future (and the dynamic dispatch) on
    /// the hot path, and the Python binding decides without a thread hop.
    fn local(&self) -> Option<&memory::MemoryLimiter> {
        None
    }
}

/// A store that could not give an answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the `{engine}` engine is not available in this build of ratesync (build with the `{engine}` cargo feature)")]
    EngineUnavailable { engine: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the store: {0}")]
    Connection(String),
    #[error("the store refused the call: {0}")]
    Backend(String),
    #[error("circuit open after repeated store failures; retrying in the background")]
    CircuitOpen,
}

/// Engines compiled into this build, by configuration name.
pub const AVAILABLE: &[&str] = &[
    "memory",
    #[cfg(feature = "redis")]
    "redis",
    #[cfg(feature = "postgres")]
    "postgres",
    #[cfg(feature = "nats")]
    "nats",
];

/// Whether this build can open stores of `engine` (checked without connecting).
pub fn available(engine: &str) -> bool {
    AVAILABLE.contains(&engine)
}

/// Builds the engine a store's configuration names. Engines not compiled into this
/// build are refused here, when a registry is built, with a clear error.
pub fn build(config: &crate::config::EngineConfig) -> Result<Arc<dyn Engine>, StoreError> {
    use crate::config::EngineConfig;
    match config {
        EngineConfig::Memory(memory) => Ok(Arc::new(memory::MemoryEngine::new(memory))),
        // Building an engine never connects: a store that is down at start is a
        // store error at the first call, handled by the failure policy.
        #[cfg(feature = "redis")]
        EngineConfig::Redis(redis) => Ok(Arc::new(self::redis::RedisEngine::new(redis)?)),
        #[cfg(feature = "postgres")]
        EngineConfig::Postgres(postgres) => {
            Ok(Arc::new(self::postgres::PostgresEngine::new(postgres)?))
        }
        #[cfg(feature = "nats")]
        EngineConfig::Nats(nats) => Ok(Arc::new(self::nats::NatsEngine::new(nats)?)),
        // Reached only in builds without some engine's feature.
        #[allow(unreachable_patterns)]
        other => Err(StoreError::EngineUnavailable {
            engine: other.engine_name().to_owned(),
        }),
    }
}

/// The bound on each call to a store of this configuration.
pub(crate) fn call_timeout(config: &crate::config::EngineConfig) -> Duration {
    use crate::config::EngineConfig;
    match config {
        EngineConfig::Redis(redis) => redis.socket_timeout,
        _ => Duration::from_secs(5),
    }
}
