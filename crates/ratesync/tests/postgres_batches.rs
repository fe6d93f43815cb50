//! Acquires that queue while others are in flight on their client reach PostgreSQL
//! together, as one call of the acquire function deciding each in order
//! (`docs/design.md#batches`): every call gets its own decision, exactly as if sent
//! alone one after the other, and a call whose caller has gone before its batch is
//! sent consumes nothing.
//!
//! Each test starts its own PostgreSQL server on a free port (missing binaries fail
//! the test: the test runner installs them).

#![cfg(feature = "postgres")]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::future::join_all;
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
use support::PostgresServer;

fn registry(server: &PostgresServer, limiter: LimiterBuilder) -> Registry {
    let store = StoreBuilder::postgres(&server.url()).option("auto_create", true);
    let config = Config::builder()
        .store("s", store)
        .limiter("api", limiter)
        .build()
        .expect("valid configuration");
    Registry::from_config(config).expect("a registry builds without connecting")
}

/// The server's next transaction id (reading it takes one).
fn next_xid(server: &PostgresServer) -> u64 {
    server
        .psql("SELECT txid_current()")
        .parse()
        .expect("a transaction id")
}

/// 64 attempts at one key started together: all admitted, each seeing the ones
/// decided before it (the `remaining` values are 999 down to 936, each once), in far
/// fewer transactions than attempts (each call of the function is one transaction,
/// and takes one transaction id when it writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_queue_are_decided_together_in_order() {
    let server = PostgresServer::start();
    let reg = registry(
        &server,
        LimiterBuilder::token_bucket("s", 0.001).burst(1000),
    );
    let api = reg.limiter("api").unwrap();
    // Connected, the table and functions made: what follows is only the attempts.
    api.key("warm-up").try_acquire().await.unwrap();

    let before = next_xid(&server);
    // One task polls all 64: the first calls are sent at once, the others queue
    // behind them within the same poll, before any answer can arrive.
    let attempts = (0..64).map(|_| api.key("k").try_acquire());
    let remaining: Vec<u64> = join_all(attempts)
        .await
        .into_iter()
        .map(|permit| permit.expect("admitted").decision().remaining())
        .collect();
    let transactions = next_xid(&server) - before - 1;

    let distinct: BTreeSet<u64> = remaining.iter().copied().collect();
    assert_eq!(
        distinct,
        (936..1000).collect(),
        "one decision after another"
    );
    assert!(
        transactions < 16,
        "64 attempts took {transactions} transactions: queued calls are not batched"
    );
    assert_eq!(api.key("k").state().await.unwrap().remaining(), 936);
}

/// While another session holds the key's row, attempts fill the client's senders
/// and one more queues behind them; its caller gives up before the row is free.
/// Once it is, the attempts in flight are decided and the abandoned one is never
/// sent: the key lost exactly the units of the attempts that were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_queued_consumes_nothing() {
    let server = PostgresServer::start();
    let reg = registry(&server, LimiterBuilder::token_bucket("s", 0.001).burst(100));
    let api = reg.limiter("api").unwrap();
    api.key("k").try_acquire().await.unwrap();

    let mut holder = server.psql_spawn(
        "BEGIN; SELECT 1 FROM rate_limiter_state FOR UPDATE; SELECT pg_sleep(1); COMMIT;",
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let in_flight: Vec<_> = (0..16)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move { api.key("k").try_acquire().await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), api.key("k").try_acquire()).await;
    assert!(
        abandoned.is_err(),
        "the locked row cannot have been decided"
    );

    for attempt in in_flight {
        attempt
            .await
            .unwrap()
            .expect("decided once the row is free");
    }
    let held = tokio::task::spawn_blocking(move || holder.wait())
        .await
        .unwrap();
    assert!(held.unwrap().success(), "the session holding the row ran");
    assert_eq!(
        api.key("k").state().await.unwrap().remaining(),
        100 - 1 - 16,
        "the abandoned attempt took nothing"
    );
}
