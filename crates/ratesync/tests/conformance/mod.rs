//! The conformance suite (`docs/design.md#conformance-suite`): one set of behaviour
//! tests that every engine must pass. An engine plugs in with one line:
//!
//! ```ignore
//! mod conformance;
//! conformance::suite!(|| async { MemoryBackend::new() }, paused: true);
//! // A backend that cannot take its store down runs the rest:
//! conformance::suite!(|| async { Cluster::new() }, paused: false, cases: without_outage);
//! ```
//!
//! Tests wait with `tokio::time::sleep`. The memory backend runs them under paused
//! tokio time with a [`ratesync::TokioClock`], so every wait is instant and every
//! number exact; a remote engine runs them in real time against its store's clock,
//! with the backend's `tolerance` absorbing round trips. Each test uses its own
//! randomly named limiters, so tests can share one server.

#![allow(dead_code)]

pub mod cases;
pub mod flaky;

use futures::future::BoxFuture;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ratesync::store::Engine;
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};

/// What the suite needs from an engine under test.
pub trait Backend: Send + Sync + 'static {
    /// A fresh engine (a new client of the same store is fine).
    fn engine(&self) -> Arc<dyn Engine>;

    /// How far a time-dependent number may be off: zero for engines on an injected
    /// clock, a few round trips for remote stores.
    fn tolerance(&self) -> Duration;

    /// A way to take the store down and bring it back (kill and restart a server),
    /// for the failure-policy case; `None` when the backend has none.
    fn outage(&self) -> Option<&dyn Outage> {
        None
    }
}

/// Takes a backend's store down and brings it back.
pub trait Outage: Send + Sync {
    /// From now on, calls to the store fail (connection refused).
    fn begin(&self) -> BoxFuture<'_, ()>;
    /// The store answers again (empty, as after a restart, is fine).
    fn end(&self) -> BoxFuture<'_, ()>;
}

/// Generates one `#[tokio::test]` per conformance case for a backend factory (an
/// async closure returning a [`Backend`]).
/// `cases: without_outage` leaves out the case that takes the store down, for
/// backends that cannot (a Redis Cluster).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr, paused: $paused:literal) => {
        $crate::conformance_suite!($factory, paused: $paused, cases: without_outage);
        $crate::conformance_suite!(@cases $factory, $paused;
            store_outage_follows_the_failure_policy,
        );
    };
    ($factory:expr, paused: $paused:literal, cases: without_outage) => {
        $crate::conformance_suite!(@cases $factory, $paused;
            token_bucket_burst_then_spacing,
            token_bucket_retry_after_is_exact,
            sliding_window_is_exact,
            sliding_window_retry_after_is_exact,
            cost_takes_units_and_is_bounded,
            settle_gives_back_the_unused_part,
            peek_consumes_nothing,
            reset_forgets_a_key_or_the_limiter,
            keys_are_isolated_whatever_their_bytes,
            concurrency_caps_holders,
            released_and_expired_leases_return,
            double_release_changes_nothing,
            held_leases_are_renewed,
            rate_and_concurrency_are_atomic,
            acquire_sleeps_exactly_the_retry_after,
            acquire_times_out_with_retry_after,
            acquire_is_woken_by_a_release,
            waiters_are_served_in_order,
            cancelled_acquire_consumes_nothing,
            concurrent_callers_never_exceed_the_limit,
            groups_are_all_or_nothing,
            shadow_mode_admits_what_it_would_refuse,
            overrides_give_keys_their_own_rule,
        );
    };
    (@cases $factory:expr, $paused:literal; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "current_thread", start_paused = $paused)]
            async fn $case() {
                let backend = ($factory)().await;
                $crate::conformance::cases::$case(&backend).await;
            }
        )*
    };
}

#[allow(unused_imports)]
pub use conformance_suite as suite;

/// A limiter name no other test uses.
pub fn unique(name: &str) -> String {
    format!("{name}-{:016x}", fastrand::u64(..))
}

/// A registry with the given limiters, all on one store backed by `backend`.
pub fn registry(backend: &dyn Backend, limiters: Vec<(String, LimiterBuilder)>) -> Registry {
    let mut config = Config::builder().store("s", StoreBuilder::memory());
    for (name, limiter) in limiters {
        config = config.limiter(&name, limiter);
    }
    let config: Config = config.build().expect("valid test configuration");
    Registry::builder(config)
        .engine("s", backend.engine())
        .build()
        .expect("registry builds")
}

/// One limiter on the backend.
pub fn limiter(backend: &dyn Backend, limiter: LimiterBuilder) -> ratesync::Limiter {
    let name = unique("lim");
    registry(backend, vec![(name.clone(), limiter)])
        .limiter(&name)
        .unwrap()
}

/// Asserts `actual` is within `tolerance` below `expected` (time only passes, so a
/// retry-after measured later can only be smaller).
pub fn assert_about(actual: Duration, expected: Duration, tolerance: Duration, what: &str) {
    assert!(
        actual <= expected && actual + tolerance >= expected,
        "{what}: got {actual:?}, expected {expected:?} (tolerance {tolerance:?})"
    );
}

/// Sleeps `d` (instant under paused time).
pub fn advance(d: Duration) -> impl Future<Output = ()> {
    tokio::time::sleep(d)
}
