//! The batch tests every batching engine runs (`docs/design.md#batches`): the
//! attempts, and what they must find; each engine's test counts store operations
//! and stalls its store its own way.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use ratesync::Limiter;
use tokio::task::JoinHandle;

/// Attempts at key `k` started together, on a limiter with a burst of 1000 (and one
/// unit taken on another key to warm up): all admitted, each seeing the ones decided
/// before it, whatever batches they went in.
pub const TOGETHER: u64 = 64;

/// Makes [`TOGETHER`] attempts at key `k` of `api` (a token bucket with a burst of
/// 1000, far below its rate) from one task that polls them all, while the caller
/// keeps the store stalled: the first calls are sent at once, the others queue behind
/// them before any answer can arrive. Asserts that each was decided after the one before it (`remaining` is
/// 999 down to 936, each once) and that the key is left at 936.
pub async fn attempts_together_are_decided_in_order(api: &Limiter) {
    let attempts = (0..TOGETHER).map(|_| api.key("k").try_acquire());
    let remaining: BTreeSet<u64> = join_all(attempts)
        .await
        .into_iter()
        .map(|permit| permit.expect("admitted").decision().remaining())
        .collect();
    assert_eq!(
        remaining,
        (1000 - TOGETHER..1000).collect(),
        "one decision after another"
    );
    assert_eq!(
        api.key("k").state().await.unwrap().remaining(),
        1000 - TOGETHER
    );
}

/// Attempts at key `k` of `api` made while its store is stalled: [`IN_FLIGHT`] of
/// them (more than any engine sends at once, so some queue), then one more whose
/// caller gives up after 100 ms. Returns the first ones, to be awaited once the store
/// is back; asserts that the abandoned one got no answer.
pub async fn attempts_behind_a_stall(api: &Limiter) -> Vec<JoinHandle<()>> {
    let in_flight = (0..IN_FLIGHT)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                api.key("k")
                    .try_acquire()
                    .await
                    .map(drop)
                    .expect("decided once the store is back")
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), api.key("k").try_acquire()).await;
    assert!(abandoned.is_err(), "the stalled store cannot have answered");
    in_flight
}

/// Attempts [`attempts_behind_a_stall`] makes before the abandoned one.
pub const IN_FLIGHT: u64 = 16;
