//! The engines: one module per store that implements the contract of
//! [`crate::store`] (`docs/design.md#engines`).
//!
//! - [`memory`]: process memory, the embedded default; decides in this process and
//!   answers at once.
//! - `redis`, `postgres`, `nats` (each behind its cargo feature): decide inside the
//!   store, on the store's clock.
//!
//! Shared by the engines: `encoding` (the one way keys are made safe for a store's
//! names) and `micros` (the microsecond units of the engines that decide in Lua or
//! SQL).

#[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
pub(crate) mod encoding;
pub mod memory;
#[cfg(any(feature = "redis", feature = "postgres"))]
mod micros;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;

use std::sync::Arc;

use crate::config::EngineConfig;
use crate::store::{Engine, StoreError};

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
pub fn build(config: &EngineConfig) -> Result<Arc<dyn Engine>, StoreError> {
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
