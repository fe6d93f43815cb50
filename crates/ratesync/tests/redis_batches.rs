//! Acquires that queue while others are in flight reach Redis together, as one
//! script call deciding each in order (`docs/design.md#redis`): every call gets its
//! own decision, exactly as if sent alone one after the other, and a call whose
//! caller has gone before its batch is sent consumes nothing.
//!
//! Each test starts its own redis-server on a free port (a missing binary fails the
//! test: the test runner installs it).

#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
use support::RedisServer;

fn registry(server: &RedisServer, limiter: LimiterBuilder) -> Registry {
    let config = Config::builder()
        .store("s", StoreBuilder::redis(&server.url()))
        .limiter("api", limiter)
        .build()
        .expect("valid configuration");
    Registry::from_config(config).expect("a registry builds without connecting")
}

/// Calls of the acquire function the server has run since its stats were reset.
fn acquire_calls(server: &RedisServer) -> u64 {
    let stats = server.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a call count"))
}

/// 64 attempts at one key started together: all admitted, each seeing the ones
/// decided before it (the `remaining` values are 999 down to 936, each once), in
/// far fewer script calls than attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_queue_are_decided_together_in_order() {
    let server = RedisServer::start();
    let reg = registry(
        &server,
        LimiterBuilder::token_bucket("s", 0.001).burst(1000),
    );
    let api = reg.limiter("api").unwrap();
    // Connected and the library loaded: what follows is only the attempts.
    api.key("warm-up").try_acquire().await.unwrap();
    assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");

    // One task polls all 64: the first few are sent at once, the others queue
    // behind them within the same poll, before any answer can arrive.
    let attempts = (0..64).map(|_| api.key("k").try_acquire());
    let remaining: Vec<u64> = join_all(attempts)
        .await
        .into_iter()
        .map(|permit| permit.expect("admitted").decision().remaining())
        .collect();

    let distinct: BTreeSet<u64> = remaining.iter().copied().collect();
    assert_eq!(
        distinct,
        (936..1000).collect(),
        "one decision after another"
    );
    let calls = acquire_calls(&server);
    assert!(
        calls < 16,
        "64 attempts took {calls} script calls: queued calls are not batched"
    );
    assert_eq!(api.key("k").state().await.unwrap().remaining(), 936);
}

/// While the server is stalled (`DEBUG SLEEP`), attempts fill every sender and one
/// more queues behind them; its caller gives up before the server answers. Once the
/// server is back, the attempts in flight are decided and the abandoned one is never
/// sent: the key lost exactly the units of the attempts that were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_queued_consumes_nothing() {
    let server = RedisServer::start();
    let reg = registry(&server, LimiterBuilder::token_bucket("s", 0.001).burst(100));
    let api = reg.limiter("api").unwrap();
    api.key("warm-up").try_acquire().await.unwrap();

    let mut sleeper = server.cli_spawn(&["DEBUG", "SLEEP", "1"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Senders are few (a handful); 16 attempts fill them and queue the rest.
    let in_flight: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn({
                let api = api.clone();
                async move { api.key("k").try_acquire().await.map(drop) }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), api.key("k").try_acquire()).await;
    assert!(
        abandoned.is_err(),
        "the stalled server cannot have answered"
    );

    for attempt in in_flight {
        attempt
            .await
            .unwrap()
            .expect("decided once the server is back");
    }
    let slept = tokio::task::spawn_blocking(move || sleeper.wait())
        .await
        .unwrap();
    assert!(slept.unwrap().success(), "DEBUG SLEEP ran");
    assert_eq!(
        api.key("k").state().await.unwrap().remaining(),
        100 - 16,
        "the abandoned attempt took nothing"
    );
}
