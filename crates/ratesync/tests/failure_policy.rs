//! The failure policy (`docs/design.md#failure-policy`), engine-independent: a store
//! that fails, hangs or comes back, simulated by wrapping the memory engine. Remote
//! engines repeat these against real servers they kill and restart.

mod conformance;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use conformance::flaky::{Faults, FlakyEngine};
use ratesync::config::MemoryConfig;
use ratesync::engine::memory::MemoryEngine;
use ratesync::store::StoreError;
use ratesync::{AcquireError, Config, LimiterBuilder, Registry, StoreBuilder, TokioClock};
use tokio::time::Instant;

fn setup() -> (Registry, Arc<Faults>) {
    let faults = Arc::new(Faults::default());
    let engine = FlakyEngine {
        inner: MemoryEngine::with_clock(&MemoryConfig::default(), Arc::new(TokioClock::default())),
        faults: faults.clone(),
    };
    let config = Config::builder()
        .store("s", StoreBuilder::memory())
        .limiter("open", LimiterBuilder::token_bucket("s", 1.0))
        .limiter(
            "closed",
            LimiterBuilder::token_bucket("s", 1.0).fail_closed(true),
        )
        .build()
        .unwrap();
    let registry = Registry::builder(config)
        .engine("s", Arc::new(engine))
        .build()
        .unwrap();
    (registry, faults)
}

#[tokio::test(start_paused = true)]
async fn fail_open_admits_and_fail_closed_refuses_with_a_distinct_error() {
    let (registry, faults) = setup();
    faults.down.store(true, Ordering::SeqCst);
    let open = registry.limiter("open").unwrap();
    for _ in 0..3 {
        open.try_acquire()
            .await
            .expect("fail-open admits while the store is down");
    }
    let closed = registry.limiter("closed").unwrap();
    let error = closed.acquire().await.unwrap_err();
    assert!(
        matches!(error, AcquireError::StoreUnavailable { .. }),
        "{error}"
    );
    assert!(!error.is_rate_limited(), "an outage is not a 429");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_store_is_bounded_by_the_call_deadline() {
    let (registry, faults) = setup();
    faults.hang.store(true, Ordering::SeqCst);
    let closed = registry.limiter("closed").unwrap();
    let started = Instant::now();
    let error = closed.try_acquire().await.unwrap_err();
    assert!(
        matches!(
            &error,
            AcquireError::StoreUnavailable {
                source: StoreError::Timeout(_),
                ..
            }
        ),
        "{error}"
    );
    // The default deadline (socket_timeout) is 5 s.
    assert_eq!(started.elapsed().as_secs(), 5);
}

#[tokio::test(start_paused = true)]
async fn the_circuit_opens_after_repeated_failures_and_closes_when_the_store_answers() {
    let (registry, faults) = setup();
    let closed = registry.limiter("closed").unwrap();
    faults.down.store(true, Ordering::SeqCst);
    for _ in 0..5 {
        closed.try_acquire().await.unwrap_err();
    }
    let calls_when_opened = faults.calls.load(Ordering::SeqCst);
    for _ in 0..100 {
        let error = closed.try_acquire().await.unwrap_err();
        assert!(
            matches!(
                &error,
                AcquireError::StoreUnavailable {
                    source: StoreError::CircuitOpen,
                    ..
                }
            ),
            "{error}"
        );
    }
    assert_eq!(
        faults.calls.load(Ordering::SeqCst),
        calls_when_opened,
        "open circuit spares the store"
    );

    faults.down.store(false, Ordering::SeqCst);
    // The background probe backs off from 0.5 s; within a few seconds it has retried.
    tokio::time::sleep(Duration::from_secs(3)).await;
    closed
        .try_acquire()
        .await
        .expect("the store is used again once it answers");
}
