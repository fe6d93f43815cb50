//! Acquires that queue while others are in flight reach Redis together, as one
//! function call deciding each in order (`docs/design.md#batches`): every call gets
//! its own decision, exactly as if sent alone one after the other, and a call whose
//! caller has gone before its batch is sent consumes nothing.
//!
//! Each test starts its own redis-server on a free port (a missing binary fails the
//! test: the test runner installs it).

#![cfg(feature = "redis")]

mod support;

use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
use support::batches::{self, IN_FLIGHT, TOGETHER};
use support::RedisServer;

fn registry(server: &RedisServer, burst: u32) -> Registry {
    let config = Config::builder()
        .store("s", StoreBuilder::redis(&server.url()))
        .limiter("api", LimiterBuilder::token_bucket("s", 0.001).burst(burst))
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

/// Attempts started together while the server is stalled (`DEBUG SLEEP`) all queue
/// behind the few sent at once, then are decided one after another in far fewer
/// function calls than attempts. The stall makes the count independent of how fast
/// a loaded machine polls the attempts: without it, answers arriving mid-poll split
/// the queue into smaller batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_queue_are_decided_together_in_order() {
    let server = RedisServer::start();
    let reg = registry(&server, 1000);
    let api = reg.limiter("api").unwrap();
    // Connected and the library loaded: what follows is only the attempts.
    api.key("warm-up").try_acquire().await.unwrap();
    assert_eq!(server.cli(&["CONFIG", "RESETSTAT"]), "OK");

    let mut sleeper = server.cli_spawn(&["DEBUG", "SLEEP", "2"]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    batches::attempts_together_are_decided_in_order(&api).await;
    let slept = tokio::task::spawn_blocking(move || sleeper.wait())
        .await
        .unwrap();
    assert!(slept.unwrap().success(), "DEBUG SLEEP ran");
    let calls = acquire_calls(&server);
    assert!(
        calls < TOGETHER / 4,
        "{TOGETHER} attempts took {calls} function calls: queued calls are not batched"
    );
}

/// While the server is stalled (`DEBUG SLEEP`), attempts fill every sender and one
/// more queues behind them; its caller gives up before the server answers. Once the
/// server is back, the attempts in flight are decided and the abandoned one is never
/// sent: the key lost exactly the units of the attempts that were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_queued_consumes_nothing() {
    let server = RedisServer::start();
    let reg = registry(&server, 100);
    let api = reg.limiter("api").unwrap();
    api.key("k").try_acquire().await.unwrap();

    let mut sleeper = server.cli_spawn(&["DEBUG", "SLEEP", "1"]);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for attempt in batches::attempts_behind_a_stall(&api).await {
        attempt.await.unwrap();
    }
    let slept = tokio::task::spawn_blocking(move || sleeper.wait())
        .await
        .unwrap();
    assert!(slept.unwrap().success(), "DEBUG SLEEP ran");
    assert_eq!(
        api.key("k").state().await.unwrap().remaining(),
        100 - 1 - IN_FLIGHT,
        "the abandoned attempt took nothing"
    );
}
