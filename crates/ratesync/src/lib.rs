//! # ratesync
//!
//! A distributed rate limiter: token bucket (GCRA) with burst and cost, exact sliding
//! window, and concurrency leases, decided atomically inside a shared store (Redis,
//! PostgreSQL, NATS JetStream KV) or in process memory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
//!
//! let config = Config::builder()
//!     .store("local", StoreBuilder::memory())
//!     .limiter("api", LimiterBuilder::token_bucket("local", 100.0).burst(20))
//!     .build()?;
//! let registry = Registry::from_config(config)?;
//! let api = registry.limiter("api")?;
//!
//! let _permit = api.acquire().await?;                  // waits if needed
//! let _permit = api.key("user-42").cost(3).try_acquire().await?; // never waits
//! # Ok(()) }
//! ```
//!
//! The tree follows the layers of `docs/design.md#layers`, each using only those
//! before it: [`algorithm`] is the pure math every engine is tested against;
//! [`config`] reads `rate-sync.toml` into validated rules; [`store`] is the engine
//! contract and what every store gets around it (deadlines, circuit breaker, lease
//! renewal, release signalling); [`engine`] holds one module per store; the limiter
//! (`Limiter`, `Permit`, groups) decides through a store; [`Registry`] builds it
//! all from a configuration; `http` (feature `http`, and `axum` for the extractor)
//! is the tower layer and axum extractor.

#![warn(missing_docs)]

pub mod algorithm;
mod background;
pub mod clock;
pub mod config;
mod decision;
pub mod engine;
mod error;
mod global;
#[cfg(feature = "http")]
pub mod http;
mod limiter;
mod metrics;
mod registry;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "watch")]
mod watch;

pub use algorithm::{
    FixedWindow, LeaseId, Period, Policy, RateQuota, Rule, SlidingWindow, TokenBucket,
};
pub use clock::{Clock, ManualClock, MonotonicClock, TokioClock};
pub use config::{
    Config, ConfigError, KeyOverride, LimiterBuilder, LimiterConfig, OverrideBuilder, StoreBuilder,
    StoreConfig,
};
pub use decision::{Decision, DeniedBy};
pub use error::{AcquireAllError, AcquireError, Error, SettleError};
pub use global::{
    acquire, default_registry, limiter, set_default_registry, try_acquire, DefaultAcquireError,
};
pub use limiter::{
    acquire_all, try_acquire_all, Call, KeyRule, Limiter, Permit, ResolveFn, Resolver, TryAcquire,
    MAX_RESOLVED_RULES,
};
pub use registry::{Registry, RegistryBuilder};
#[cfg(feature = "watch")]
pub use watch::{ConfigWatch, WatchedRegistry};

/// The Rust examples of the documentation pages, compiled and run as doc tests.
#[cfg(doctest)]
mod documentation;
