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

use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};
use support::batches::{self, IN_FLIGHT, TOGETHER};
use support::PostgresServer;

fn registry(server: &PostgresServer, burst: u32) -> Registry {
    let store = StoreBuilder::postgres(&server.url()).option("auto_create", true);
    let config = Config::builder()
        .store("s", store)
        .limiter("api", LimiterBuilder::token_bucket("s", 0.001).burst(burst))
        .build()
        .expect("valid configuration");
    Registry::from_config(config).expect("a registry builds without connecting")
}

/// The server's next transaction id (reading it takes one). Each call of the acquire
/// function is one transaction, which takes a transaction id when it writes.
fn next_xid(server: &PostgresServer) -> u64 {
    server
        .psql("SELECT txid_current()")
        .parse()
        .expect("a transaction id")
}

/// Attempts started together while another session locks the table all queue
/// behind the few sent at once, then are decided one after another in far fewer
/// transactions than attempts. The lock makes the count independent of how fast a
/// loaded machine polls the attempts: without it, answers arriving mid-poll split
/// the queue into smaller batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_queue_are_decided_together_in_order() {
    let server = PostgresServer::start();
    let reg = registry(&server, 1000);
    let api = reg.limiter("api").unwrap();
    // Connected, the table and functions made: what follows is only the attempts.
    api.key("warm-up").try_acquire().await.unwrap();

    let before = next_xid(&server);
    // Taking a lock writes nothing, so the holder's transaction takes no id.
    let mut holder = server.psql_spawn(
        "BEGIN; LOCK TABLE rate_limiter_state IN EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    batches::attempts_together_are_decided_in_order(&api).await;
    let held = tokio::task::spawn_blocking(move || holder.wait())
        .await
        .unwrap();
    assert!(held.unwrap().success(), "the session holding the lock ran");
    // Less the read of `before` and the state read at the end (which writes nothing).
    let transactions = next_xid(&server) - before - 1;
    assert!(
        transactions < TOGETHER / 4,
        "{TOGETHER} attempts took {transactions} transactions: queued calls are not batched"
    );
}

/// While another session holds the key's row, attempts fill the client's senders
/// and one more queues behind them; its caller gives up before the row is free.
/// Once it is, the attempts in flight are decided and the abandoned one is never
/// sent: the key lost exactly the units of the attempts that were answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_abandoned_while_queued_consumes_nothing() {
    let server = PostgresServer::start();
    let reg = registry(&server, 100);
    let api = reg.limiter("api").unwrap();
    api.key("k").try_acquire().await.unwrap();

    let mut holder = server.psql_spawn(
        "BEGIN; SELECT 1 FROM rate_limiter_state FOR UPDATE; SELECT pg_sleep(1); COMMIT;",
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for attempt in batches::attempts_behind_a_stall(&api).await {
        attempt.await.unwrap();
    }
    let held = tokio::task::spawn_blocking(move || holder.wait())
        .await
        .unwrap();
    assert!(held.unwrap().success(), "the session holding the row ran");
    assert_eq!(
        api.key("k").state().await.unwrap().remaining(),
        100 - 1 - IN_FLIGHT,
        "the abandoned attempt took nothing"
    );
}
