//! `try_acquire_all` and `acquire_all`: several calls admitted together or not at all
//! (`docs/design.md#groups`), on the memory engine at frozen (or paused) time.

use std::time::Duration;

use ratesync::{
    acquire_all, try_acquire_all, AcquireError, Config, DeniedBy, LimiterBuilder, ManualClock,
    Registry, StoreBuilder, TokioClock,
};

fn limiters() -> Config {
    Config::builder()
        .store("m", StoreBuilder::memory())
        .store("other", StoreBuilder::memory())
        .limiter("wide", LimiterBuilder::token_bucket("m", 1.0).burst(5))
        .limiter("tight", LimiterBuilder::token_bucket("m", 1.0).burst(1))
        .limiter("window", LimiterBuilder::sliding_window("m", 3, 60.0))
        .limiter("slots", LimiterBuilder::new("m").max_concurrent(1))
        .limiter(
            "elsewhere",
            LimiterBuilder::token_bucket("other", 1.0).burst(1),
        )
        .build()
        .unwrap()
}

fn registry() -> Registry {
    let clock = ManualClock::new();
    clock.advance(Duration::from_secs(1));
    Registry::builder(limiters()).clock(clock).build().unwrap()
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
    assert_eq!(permits[0].decision().remaining(), 4);

    let refusal = try_acquire_all(&calls).await.unwrap_err();
    assert_eq!(refusal.index, 1, "the tight limiter refused");
    assert!(matches!(refusal.error, AcquireError::Denied { .. }));
    assert_eq!(refusal.decisions.len(), 2);
    assert_eq!(
        refusal.decisions[0].unwrap().remaining(),
        4,
        "a peek of the wide limiter"
    );
    assert_eq!(
        wide.key("k").state().await.unwrap().remaining(),
        4,
        "the refused group consumed nothing from the limiter that admitted"
    );
}

#[tokio::test]
async fn a_refused_group_takes_no_slot_and_no_window_unit() {
    let registry = registry();
    let (window, slots, tight) = (
        registry.limiter("window").unwrap(),
        registry.limiter("slots").unwrap(),
        registry.limiter("tight").unwrap(),
    );
    let _held = tight.key("k").try_acquire().await.unwrap();
    for _ in 0..5 {
        let refusal = try_acquire_all(&[window.key("k"), slots.key("k"), tight.key("k")])
            .await
            .unwrap_err();
        assert_eq!(refusal.index, 2);
    }
    assert_eq!(window.key("k").state().await.unwrap().remaining(), 3);
    assert!(
        slots.key("k").state().await.unwrap().allowed(),
        "no slot taken"
    );
    // Admitted, the permits hold the slot, and it comes back with them.
    let other = [window.key("j"), slots.key("j")];
    let permits = try_acquire_all(&other).await.unwrap();
    let refusal = try_acquire_all(&other).await.unwrap_err();
    assert_eq!(refusal.index, 1);
    assert_eq!(
        refusal.decisions[1].unwrap().denied_by(),
        Some(DeniedBy::Concurrency)
    );
    drop(permits);
    try_acquire_all(&other).await.unwrap();
}

#[tokio::test]
async fn one_limiter_and_key_twice_is_decided_as_one_call() {
    let registry = registry();
    let wide = registry.limiter("wide").unwrap();
    let permits = try_acquire_all(&[wide.key("k").cost(2), wide.key("k").cost(3)])
        .await
        .unwrap();
    assert_eq!(permits.len(), 2);
    assert_eq!(
        wide.key("k").state().await.unwrap().remaining(),
        0,
        "2 + 3 taken"
    );

    let tight = registry.limiter("tight").unwrap();
    let error = try_acquire_all(&[tight.key("a"), tight.key("a")])
        .await
        .unwrap_err();
    assert!(
        matches!(error.error, AcquireError::InvalidCost { .. }),
        "1 + 1 exceeds a burst of 1: {}",
        error.error
    );
    let slots = registry.limiter("slots").unwrap();
    let error = try_acquire_all(&[slots.key("a"), slots.key("a")])
        .await
        .unwrap_err();
    assert!(
        matches!(error.error, AcquireError::SlotTwice { .. }),
        "{}",
        error.error
    );
    assert!(slots.key("a").state().await.unwrap().allowed());
}

#[tokio::test]
async fn across_stores_a_later_refusal_refunds_the_earlier_store() {
    let registry = registry();
    let (window, elsewhere) = (
        registry.limiter("window").unwrap(),
        registry.limiter("elsewhere").unwrap(),
    );
    let _held = elsewhere.key("k").try_acquire().await.unwrap();
    for _ in 0..4 {
        let refusal = try_acquire_all(&[window.key("k"), elsewhere.key("k")])
            .await
            .unwrap_err();
        assert_eq!(refusal.index, 1);
    }
    assert_eq!(
        window.key("k").state().await.unwrap().remaining(),
        3,
        "what the first store admitted was given back"
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
        refusal.decisions[0].unwrap().retry_after(),
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
    assert_eq!(wide.key("k").state().await.unwrap().remaining(), 5);
}

/// On tokio's paused clock: `acquire_all` sleeps exactly the refusing limiter's
/// retry-after, waits for a slot's release, and times out with the last refusal.
#[tokio::test(start_paused = true)]
async fn acquire_all_waits_as_one_call_does() {
    let registry = Registry::builder(limiters())
        .clock(TokioClock::default())
        .build()
        .unwrap();
    let (wide, tight, slots) = (
        registry.limiter("wide").unwrap(),
        registry.limiter("tight").unwrap(),
        registry.limiter("slots").unwrap(),
    );
    let calls = [wide.key("k"), tight.key("k")];
    acquire_all(&calls, None).await.unwrap();
    let started = tokio::time::Instant::now();
    acquire_all(&calls, Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "one interval of `tight`"
    );
    // `wide` refilled its unit meanwhile: one taken of five.
    assert_eq!(wide.key("k").state().await.unwrap().remaining(), 4);

    let timed_out = acquire_all(&calls, Some(Duration::from_millis(500)))
        .await
        .unwrap_err();
    assert!(matches!(timed_out.error, AcquireError::TimedOut { .. }));
    assert_eq!(timed_out.index, 1);

    let held = slots.key("s").try_acquire().await.unwrap();
    let waiting = {
        let (wide, slots) = (wide.clone(), slots.clone());
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            acquire_all(&[wide.key("s"), slots.key("s")], None)
                .await
                .unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.release().await;
    let waited = waiting.await.unwrap();
    assert_eq!(waited, Duration::from_millis(200), "woken by the release");
}
