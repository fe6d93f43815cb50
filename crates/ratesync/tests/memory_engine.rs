//! What is specific to the memory engine (`docs/design.md#memory`): exactness under
//! real thread contention (single calls and groups), idle-key expiry and the
//! store-wide `max_keys` bound.

mod support;

use futures::FutureExt;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::{
    AcquireError, Config, Limiter, LimiterBuilder, ManualClock, Period, Registry, StoreBuilder,
};

fn setup(limiter: LimiterBuilder, max_keys: Option<usize>) -> (Limiter, MemoryEngine, ManualClock) {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let engine = MemoryEngine::with_clock(
        &MemoryConfig {
            max_keys: max_keys.and_then(NonZeroUsize::new),
        },
        Arc::new(clock.clone()),
    );
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("l", limiter)
        .build()
        .unwrap();
    let registry = Registry::builder(config)
        .engine("m", Arc::new(engine.clone()))
        .build()
        .unwrap();
    (registry.limiter("l").unwrap(), engine, clock)
}

/// Hammers `limiter` from 8 OS threads at frozen time; returns units admitted.
fn hammer(limiter: &Limiter, key: &'static str, attempts_per_thread: usize) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let (limiter, admitted) = (limiter.clone(), admitted.clone());
            scope.spawn(move || {
                for _ in 0..attempts_per_thread {
                    if let Some(Ok(_)) = limiter.key(key).try_acquire().now_or_never() {
                        admitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    admitted.load(Ordering::Relaxed)
}

#[test]
fn threads_racing_on_one_key_get_exactly_the_burst() {
    let (bucket, _, _) = setup(LimiterBuilder::token_bucket("m", 1.0).burst(1000), None);
    assert_eq!(hammer(&bucket, "", 10_000), 1000);
    assert_eq!(hammer(&bucket, "k", 10_000), 1000);
}

#[test]
fn threads_racing_on_a_window_get_exactly_the_limit() {
    let (window, _, _) = setup(LimiterBuilder::sliding_window("m", 777, 10.0), None);
    assert_eq!(hammer(&window, "k", 10_000), 777);
}

#[test]
fn idle_keys_expire_without_changing_any_decision() {
    let (l, engine, clock) = setup(LimiterBuilder::token_bucket("m", 1.0), None);
    l.key("busy").try_acquire().now_or_never().unwrap().unwrap();
    for i in 0..5_000 {
        l.key(&format!("k{i}"))
            .try_acquire()
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    assert_eq!(engine.tracked_keys(), 5_001);
    // After half a second, "busy" and all k* are still limited: nothing may be dropped.
    clock.advance(Duration::from_millis(500));
    l.key("busy-2")
        .try_acquire()
        .now_or_never()
        .unwrap()
        .unwrap();
    for i in 0..6_000 {
        let _ = l.key(&format!("j{i}")).try_acquire().now_or_never();
    }
    assert!(
        l.key("busy").try_acquire().now_or_never().unwrap().is_err(),
        "still limited"
    );
    // Once the first batch's buckets have been full again for the sweep's grace
    // period (1 s), a sweep forgets them.
    clock.advance(Duration::from_millis(2_600));
    for i in 0..12_000 {
        let _ = l.key(&format!("m{i}")).try_acquire().now_or_never();
    }
    assert!(
        engine.tracked_keys() < 5_001 + 6_000 + 12_000,
        "idle keys were dropped: {} tracked",
        engine.tracked_keys()
    );
}

#[test]
fn max_keys_bounds_the_store_evicting_idle_keys_first() {
    let (l, engine, clock) = setup(LimiterBuilder::token_bucket("m", 1.0), Some(1_000));
    // An old, limited key; then many keys that go idle.
    l.key("old").try_acquire().now_or_never().unwrap().unwrap();
    for i in 0..900 {
        l.key(&format!("idle{i}"))
            .try_acquire()
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    clock.advance(Duration::from_millis(999));
    l.key("recent")
        .try_acquire()
        .now_or_never()
        .unwrap()
        .unwrap();
    clock.advance(Duration::from_millis(2));
    // "old" and idle* are idle now; "recent" is not. Fill past the bound.
    for i in 0..500 {
        l.key(&format!("new{i}"))
            .try_acquire()
            .now_or_never()
            .unwrap()
            .unwrap();
    }
    assert!(
        engine.tracked_keys() <= 1_000,
        "{} tracked",
        engine.tracked_keys()
    );
    assert!(
        l.key("recent")
            .try_acquire()
            .now_or_never()
            .unwrap()
            .is_err(),
        "a limited key survives while idle keys can be evicted"
    );
    // With no idle key left, the bound still holds.
    for i in 0..5_000 {
        let _ = l.key(&format!("more{i}")).try_acquire().now_or_never();
    }
    assert!(
        engine.tracked_keys() <= 1_000,
        "{} tracked",
        engine.tracked_keys()
    );
}

/// `max_keys` bounds the store, not each limiter: a limiter that adds keys evicts
/// the store's idlest keys whichever limiter holds them, and one limiter whose keys
/// are all busy cannot push the store past the bound.
#[test]
fn max_keys_bounds_the_whole_store_whatever_limiter_adds_keys() {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let engine = MemoryEngine::with_clock(
        &MemoryConfig {
            max_keys: NonZeroUsize::new(100),
        },
        Arc::new(clock.clone()),
    );
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        // Slow buckets: a key used once stays busy (not idle) for 1000 s.
        .limiter("first", LimiterBuilder::token_bucket("m", 0.001))
        .limiter("second", LimiterBuilder::token_bucket("m", 0.001))
        .build()
        .unwrap();
    let registry = Registry::builder(config)
        .engine("m", Arc::new(engine.clone()))
        .build()
        .unwrap();
    let (first, second) = (
        registry.limiter("first").unwrap(),
        registry.limiter("second").unwrap(),
    );
    let take =
        |limiter: &Limiter, key: &str| limiter.key(key).try_acquire().now_or_never().unwrap();
    // The first limiter fills the store with busy keys.
    for i in 0..100 {
        take(&first, &format!("f{i}")).unwrap();
    }
    assert_eq!(engine.tracked_keys(), 100);
    // The second adds keys: the store stays bounded, room is made from the first
    // limiter's keys (the second has none to give).
    for i in 0..300 {
        take(&second, &format!("s{i}")).unwrap();
        assert!(
            engine.tracked_keys() <= 100,
            "{} tracked",
            engine.tracked_keys()
        );
    }
    let first_kept = (0..100)
        .filter(|i| take(&first, &format!("f{i}")).is_err())
        .count();
    assert!(
        first_kept < 100,
        "the first limiter gave up keys: {first_kept} kept"
    );
    // Idle keys go first, wherever they are: let the second's keys be the oldest.
    clock.advance(Duration::from_secs(2_000));
    for i in 0..10 {
        take(&first, &format!("g{i}")).unwrap();
    }
    assert!(engine.tracked_keys() <= 100);
}

/// 4 threads × 32 tasks take two limiters of one memory store as one group: the
/// group locks its slots in a fixed order, so exactly the tight limiter's 100
/// groups are admitted and the loose one holds exactly those units.
#[test]
fn a_group_is_all_or_nothing_across_threads() {
    let config =
        Config::from_toml_str(&support::groups::config("engine = \"memory\""), "test").unwrap();
    let registry = Registry::from_config(config).unwrap();
    support::groups::check_across_threads(&registry);
}

/// A permit taken outside any tokio runtime (plain threads, a sync API) is renewed
/// on ratesync's own background runtime, so it keeps its slot past `lease_ttl`.
/// Real time: the lease lives 1 s and is renewed every ~333 ms; holding it 2.5 s
/// leaves a 600 ms margin for a stalled machine.
#[test]
fn permits_taken_outside_a_runtime_are_renewed() {
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter(
            "l",
            LimiterBuilder::token_bucket("m", 1000.0)
                .burst(10)
                .max_concurrent(1)
                .lease_ttl(1.0),
        )
        .build()
        .unwrap();
    let l = Registry::from_config(config).unwrap().limiter("l").unwrap();
    let held = l.key("k").try_acquire().now_or_never().unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(2_500));
    let refused = l.key("k").try_acquire().now_or_never().unwrap();
    assert!(refused.is_err(), "the held lease was renewed: {refused:?}");
    drop(held);
    let again = l.key("k").try_acquire().now_or_never().unwrap();
    assert!(again.is_ok(), "released on drop: {again:?}");
}

/// `docs/design.md#fixed-windows`: a daily quota resets at UTC midnight, and a
/// monthly one at local midnight of the 1st, on the memory store's clock.
#[tokio::test]
async fn calendar_quotas_reset_at_midnight() {
    // 2026-12-31 23:59:59 UTC.
    let clock = ManualClock::at(Duration::from_secs(1_798_761_599));
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("daily", LimiterBuilder::calendar("m", 2, Period::Day))
        .limiter(
            "monthly",
            LimiterBuilder::calendar("m", 1, Period::Month).utc_offset("+05:30"),
        )
        .build()
        .unwrap();
    let registry = Registry::builder(config)
        .clock(clock.clone())
        .build()
        .unwrap();
    let daily = registry.limiter("daily").unwrap();
    daily.key("api-key").cost(2).try_acquire().await.unwrap();
    let refusal = match daily.key("api-key").try_acquire().await {
        Err(AcquireError::Denied { decision, .. }) => decision,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(refusal.retry_after(), Duration::from_secs(1));
    assert_eq!(refusal.reset_after(), Duration::from_secs(1));
    clock.advance(Duration::from_millis(999));
    assert!(daily.key("api-key").try_acquire().await.is_err());
    clock.advance(Duration::from_millis(1));
    let permit = daily.key("api-key").try_acquire().await.unwrap();
    assert_eq!(permit.decision().remaining(), 1);
    assert_eq!(permit.decision().reset_after(), Duration::from_secs(86_400));

    // At UTC+05:30 it is already 05:29:59 on January 1st: January's quota, until
    // February 1st 00:00 local (18:30 UTC on January 31st).
    let monthly = registry.limiter("monthly").unwrap();
    let permit = monthly.try_acquire().await.unwrap();
    let until_february = 31 * 86_400 - (5 * 3600 + 1800);
    assert_eq!(
        permit.decision().reset_after(),
        Duration::from_secs(until_february)
    );
}
