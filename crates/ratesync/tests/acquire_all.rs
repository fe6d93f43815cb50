//! `try_acquire_all`: several calls admitted together or not at all (SPEC §6.1),
//! on the memory engine at frozen time.

use std::sync::Arc;
use std::time::Duration;

use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::{
    try_acquire_all, AcquireError, Config, LimiterBuilder, ManualClock, Registry, StoreBuilder,
};

fn registry() -> Registry {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    let engine = MemoryEngine::with_clock(&MemoryConfig::default(), Arc::new(clock));
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("wide", LimiterBuilder::token_bucket("m", 1.0).burst(5))
        .limiter("tight", LimiterBuilder::token_bucket("m", 1.0).burst(1))
        .limiter("slots", LimiterBuilder::new("m").max_concurrent(1))
        .build()
        .unwrap();
    Registry::builder(config)
        .engine("m", Arc::new(engine))
        .build()
        .unwrap()
}

#[tokio::test]
async fn all_admit_or_none_is_consumed() {
    let registry = registry();
    let (wide, tight) = (
        registry.limiter("wide").unwrap(),
        registry.limiter("tight").unwrap(),
    );
    let calls = [wide.key("k"), tight.key("k")];
    let permits = try_acquire_all(&calls).await.unwrap();
    assert_eq!(permits.len(), 2);
    assert_eq!(permits[0].decision().remaining, 4);

    let refusal = try_acquire_all(&calls).await.unwrap_err();
    assert_eq!(refusal.index, 1, "the tight limiter refused");
    assert!(matches!(refusal.error, AcquireError::Denied { .. }));
    assert_eq!(refusal.decisions.len(), 2);
    assert_eq!(
        refusal.decisions[0].unwrap().remaining,
        4,
        "a peek of the wide limiter"
    );
    assert_eq!(
        wide.key("k").state().await.unwrap().remaining,
        4,
        "the refused attempt consumed nothing from the limiter that admitted"
    );
}

#[tokio::test]
async fn a_lost_race_gives_back_the_slots_taken_but_not_the_rate_units() {
    let registry = registry();
    // Two calls on one key: each peek sees the single slot (or unit) free, so the
    // second take loses the race to the first, exactly as another client would.
    let slots = registry.limiter("slots").unwrap();
    let refusal = try_acquire_all(&[slots.key("k"), slots.key("k")])
        .await
        .unwrap_err();
    assert_eq!(refusal.index, 1);
    assert!(
        slots.key("k").state().await.unwrap().allowed,
        "the first slot came back"
    );

    let tight = registry.limiter("tight").unwrap();
    let refusal = try_acquire_all(&[tight.key("k"), tight.key("k")])
        .await
        .unwrap_err();
    assert_eq!(refusal.index, 1);
    assert!(
        !tight.key("k").state().await.unwrap().allowed,
        "a rate unit taken before the lost race is not refunded (documented)"
    );
}

#[tokio::test]
async fn no_calls_admit_and_one_call_is_a_plain_attempt() {
    let registry = registry();
    assert!(try_acquire_all(&[]).await.unwrap().is_empty());
    let tight = registry.limiter("tight").unwrap();
    try_acquire_all(&[tight.key("a")]).await.unwrap();
    let refusal = try_acquire_all(&[tight.key("a")]).await.unwrap_err();
    assert_eq!(
        refusal.decisions[0].unwrap().retry_after,
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn an_impossible_cost_is_an_error_not_a_refusal() {
    let registry = registry();
    let (wide, tight) = (
        registry.limiter("wide").unwrap(),
        registry.limiter("tight").unwrap(),
    );
    let refusal = try_acquire_all(&[wide.key("k"), tight.key("k").cost(2)])
        .await
        .unwrap_err();
    assert_eq!(refusal.index, 1);
    assert!(matches!(refusal.error, AcquireError::InvalidCost { .. }));
    assert_eq!(wide.key("k").state().await.unwrap().remaining, 5);
}
