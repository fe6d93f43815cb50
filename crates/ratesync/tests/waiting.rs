//! `docs/design.md#waiting`: a wait whose retry-after lies past its deadline fails at
//! once by default; a call that waits out its timeout (`Call::wait_out_timeout`, the
//! contract of rate-sync's `try_acquire(timeout)`) lasts until the deadline, and is
//! admitted early when a reset frees room. Under tokio's paused time, with the memory
//! engine on tokio's clock: every wait is instant and every duration exact.

use std::time::Duration;

use ratesync::{AcquireError, Config, Limiter, LimiterBuilder, Registry, StoreBuilder, TokioClock};
use tokio::time::Instant;

/// How long the calls below may wait: less than the second a unit takes to return.
const TIMEOUT: Duration = Duration::from_millis(120);
/// The longest a call waiting out its timeout sleeps between re-tries.
const RECHECK: Duration = Duration::from_millis(100);

/// A memory bucket of 1 unit per second, its one unit taken.
async fn empty_bucket() -> Limiter {
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter("l", LimiterBuilder::token_bucket("m", 1.0))
        .build()
        .unwrap();
    let registry = Registry::builder(config)
        .clock(TokioClock::default())
        .build()
        .unwrap();
    let limiter = registry.limiter("l").unwrap();
    limiter.try_acquire().await.unwrap();
    limiter
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_cannot_succeed_in_time_fails_at_once() {
    let limiter = empty_bucket().await;
    let started = Instant::now();
    let error = limiter.cost(1).timeout(Some(TIMEOUT)).acquire().await;
    assert!(
        matches!(error, Err(AcquireError::TimedOut { .. })),
        "{error:?}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn waiting_out_the_timeout_fails_at_the_deadline() {
    let limiter = empty_bucket().await;
    let started = Instant::now();
    let call = limiter.cost(1).timeout(Some(TIMEOUT)).wait_out_timeout();
    let error = call.acquire().await.unwrap_err();
    assert_eq!(started.elapsed(), TIMEOUT);
    assert_eq!(error.waited(), Some(TIMEOUT));
    // The refusal is still the store's: when the unit comes back.
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1) - TIMEOUT));
}

#[tokio::test(start_paused = true)]
async fn a_reset_admits_a_call_waiting_out_its_timeout() {
    let limiter = empty_bucket().await;
    let waiting = tokio::spawn({
        let limiter = limiter.clone();
        async move {
            let call = limiter.cost(1).timeout(Some(Duration::from_millis(800)));
            call.wait_out_timeout().acquire().await.map(drop)
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    limiter.reset().await.unwrap();
    let reset = Instant::now();
    waiting.await.unwrap().unwrap();
    assert!(reset.elapsed() <= RECHECK, "{:?}", reset.elapsed());
}
