//! The store layer (`docs/design.md#layers`): what a store must do, and what every
//! store gets around it. It sits below both the engines, which implement its
//! contract, and the limiters, which call through its runtime.
//!
//! - [`contract`](Engine): the [`Engine`] and [`EngineLimiter`] traits every engine
//!   implements, the [`StoreCall`] answer (at once, or later), [`StoreError`].
//! - `runtime`: a configured store at run time; the one place where an answer is
//!   taken, with the store's deadline and circuit breaker.
//! - `leases`: one task per store renews every held lease.
//! - `releases` and `listener`: release signalling (one listener loop, one origin
//!   per engine instance); the engines only say how their messages arrive.
//! - `groups`: all or nothing by reserving and refunding, for engines that cannot
//!   decide several keys in one step.
//! - `batches`: calls that queue while others are in flight go to the store
//!   together, decided in order by one operation.

#[cfg(any(feature = "redis", feature = "postgres"))]
pub(crate) mod batches;
mod contract;
pub(crate) mod groups;
pub(crate) mod leases;
#[cfg(any(feature = "redis", feature = "postgres", feature = "nats"))]
pub(crate) mod listener;
mod releases;
mod runtime;

pub use self::contract::{
    client_timeout, Engine, EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError,
    StoreFuture, DEFAULT_DEADLINE,
};
pub use self::releases::ReleaseSignal;
pub(crate) use self::runtime::{Answer, StoreRuntime};
