//! The PostgreSQL engine's SQL functions against the reference math of
//! `ratesync::algorithm`: for the same rule, history and times, both give the same
//! decisions (allowed, remaining, retry-after, reset-after, denied-by), receipts,
//! lease answers, refunds and group outcomes, also for calls decided together in one
//! batch. Also: the server's clock, cleanup, reset, release notifications across
//! engines, a missing table's error, and hostile schema, table and key names.
//!
//! The functions decide in microseconds and the reference in nanoseconds, so each rule
//! is built from whole microseconds (`interval_us * 1000`) and the reference decides
//! at `t_us * 1000` while the engine's clock is pinned to `t_us` (a test hook, feature
//! `testing`). Runs against a PostgreSQL server this file starts on a free port.

#![cfg(feature = "postgres")]

mod reference;
mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::{FutureExt, LocalBoxFuture};
use ratesync::algorithm::{GroupDecision, LeaseId, Policy};
use ratesync::config::PostgresConfig;
use ratesync::engine::postgres::PostgresEngine;
use ratesync::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, ReleaseSignal, StoreError};
use ratesync::testing::PinnedClock;
use ratesync::{Config, DeniedBy, LimiterBuilder, Registry, StoreBuilder};
use reference::{concurrency, sliding_window, token_bucket, BatchSender, PinnedStore};
use support::{runtime, PostgresServer};

/// The server this test process shares.
fn server() -> &'static PostgresServer {
    static SHARED: OnceLock<PostgresServer> = OnceLock::new();
    SHARED.get_or_init(PostgresServer::start)
}

fn config(server: &PostgresServer, options: &[(&str, &str)]) -> PostgresConfig {
    let mut store = StoreBuilder::postgres(&server.url()).option("auto_create", true);
    for (key, value) in options {
        store = store.option(key, *value);
    }
    support::postgres_config(store)
}

/// An engine with `auto_create`.
fn engine(server: &PostgresServer) -> PostgresEngine {
    PostgresEngine::new(&config(server, &[])).unwrap()
}

/// An engine whose functions read the time the test pins (on a table of its own:
/// its functions take the pinned time as an extra parameter).
fn pinned(server: &PostgresServer) -> PinnedStore {
    pinned_engine(server).0
}

/// [`pinned`], and the engine itself.
fn pinned_engine(server: &PostgresServer) -> (PinnedStore, PostgresEngine) {
    let clock = PinnedClock::new();
    let config = config(server, &[("table_name", "ratesync_pinned")]);
    let engine = PostgresEngine::with_pinned_clock(&config, clock.clone()).unwrap();
    let store = PinnedStore {
        engine: Arc::new(engine.clone()),
        set_now: Box::new(move |t_us| clock.set_micros(t_us)),
        unit_ns: 1000,
    };
    (store, engine)
}

fn limiter(engine: &PostgresEngine, policy: Policy) -> Arc<dyn EngineLimiter> {
    let id = format!("eq-{}", fastrand::u64(..));
    engine
        .limiter(LimiterSpec {
            id: id.into(),
            policy,
            releases: ReleaseSignal::detached(),
        })
        .unwrap()
}

#[test]
fn sql_decisions_equal_the_reference() {
    reference::check_random_histories(&runtime(), &pinned(server()));
}

#[test]
fn hand_written_histories_match() {
    reference::check_hand_written_histories(&runtime(), &pinned(server()));
}

#[test]
fn sql_groups_equal_the_reference() {
    reference::check_random_groups(&runtime(), &pinned(server()));
}

#[test]
fn hand_written_batches_match() {
    let (store, engine) = pinned_engine(server());
    reference::check_hand_written_batches(&runtime(), &store, &engine);
}

#[test]
fn sql_batches_equal_the_reference() {
    let (store, engine) = pinned_engine(server());
    reference::check_random_batches(&runtime(), &store, &engine);
}

/// Batches go to the server through a test hook: one call of the acquire function
/// for exactly the calls given, as for calls that queued together on a client.
impl BatchSender for PostgresEngine {
    fn send_batch<'a>(
        &'a self,
        calls: &'a [Vec<GroupMember<'a>>],
    ) -> LocalBoxFuture<'a, Result<Vec<GroupDecision>, StoreError>> {
        self.acquire_batch(calls).boxed_local()
    }
}

#[test]
fn server_clock_cleanup_and_reset() {
    let server = server();
    let rt = runtime();
    rt.block_on(async {
        let engine = engine(server);
        engine.ping().await.unwrap();
        let policy = Policy {
            rule: Some(sliding_window(2, 60_000_000)),
            concurrency: concurrency(5, 10_000_000),
        };
        let lim = limiter(&engine, policy);
        for key in ["a", "b", "weird key:{x}*'\"\0"] {
            let (d, _) = lim.acquire(key, 1, Some(LeaseId(7))).await.unwrap();
            assert!(d.allowed(), "{key}");
        }
        let (d, _) = lim.acquire("a", 1, None).await.unwrap();
        assert!(d.allowed());
        let (d, _) = lim.acquire("a", 1, None).await.unwrap();
        assert_eq!(d.denied_by(), Some(DeniedBy::Rate));
        assert!(d.retry_after() > Duration::from_secs(59));
        assert!(lim.renew("a", LeaseId(7)).await.unwrap());
        lim.release("a", LeaseId(7)).await.unwrap();
        assert!(!lim.renew("a", LeaseId(7)).await.unwrap());
        // Reset of one key, then of the whole limiter.
        lim.reset(Some("a")).await.unwrap();
        assert!(lim.peek("a", 2).await.unwrap().allowed());
        assert!(!lim.peek("b", 2).await.unwrap().allowed());
        lim.reset(None).await.unwrap();
        assert!(lim.peek("b", 2).await.unwrap().allowed());
        assert!(lim.peek("weird key:{x}*'\"\0", 2).await.unwrap().allowed());

        // Cleanup deletes rows whose state is fresh again, and only those.
        let short = limiter(
            &engine,
            Policy {
                rule: Some(token_bucket(1_000, 1)),
                concurrency: None,
            },
        );
        for key in 0..50 {
            assert!(short.acquire(&key.to_string(), 1, None).await.unwrap().0.allowed());
        }
        assert!(lim.acquire("kept", 1, None).await.unwrap().0.allowed());
        // Expiry is kept to the next whole second.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        while engine.cleanup(20).await.unwrap() == 20 {}
        let expired = "SELECT count(*) FROM public.rate_limiter_state \
                       WHERE convert_from(limiter, 'UTF8') LIKE 'eq-%' \
                         AND convert_from(key, 'UTF8') ~ '^[0-9]+$'";
        assert_eq!(server.psql(expired), "0", "cleanup left expired rows");
        let count = server.psql("SELECT count(*) FROM public.rate_limiter_state WHERE expires_at < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint - 1000000");
        assert_eq!(count, "0");
        assert!(!lim.peek("kept", 2).await.unwrap().allowed(), "live state survives");
    });
}

#[test]
fn a_release_in_another_process_wakes_waiters() {
    let server = server();
    let rt = runtime();
    rt.block_on(async {
        // Two registries, each with its own engine: two "processes".
        let name = format!("jobs{}", fastrand::u32(..));
        let config = || {
            Config::builder()
                .store("shared", StoreBuilder::postgres(&server.url()))
                .limiter(
                    &name,
                    LimiterBuilder::token_bucket("shared", 1000.0)
                        .burst(100)
                        .max_concurrent(1)
                        .no_timeout(),
                )
                .build()
                .unwrap()
        };
        let registry = |config| {
            let engine = Arc::new(engine(server));
            Registry::builder(config)
                .engine("shared", engine)
                .build()
                .unwrap()
        };
        let (first, second) = (registry(config()), registry(config()));
        let holder = first.limiter(&name).unwrap();
        let waiter = second.limiter(&name).unwrap();
        let permit = holder.key("k").acquire().await.unwrap();
        // Let the second process's listener start before the release.
        let waiting = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let _permit = waiter.key("k").acquire().await.unwrap();
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        let released = tokio::time::Instant::now();
        drop(permit);
        let waited = waiting.await.unwrap();
        let after_release = released.elapsed();
        assert!(waited >= Duration::from_millis(600), "admitted while held");
        // The fallback poll is 500 ms: a wake-up well under it came from NOTIFY.
        assert!(
            after_release < Duration::from_millis(250),
            "woken {after_release:?} after the release"
        );
    });
}

#[test]
fn a_missing_table_names_the_fix() {
    let server = server();
    let rt = runtime();
    rt.block_on(async {
        let config_of = config;
        let mut config = config_of(server, &[("table_name", "never_created")]);
        config.auto_create = false;
        let engine = PostgresEngine::new(&config).unwrap();
        let error = engine.ping().await.unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, StoreError::Backend(_)), "{message}");
        assert!(
            message.contains("ratesync migrate") && message.contains("never_created"),
            "{message}"
        );
        // The SQL `ratesync migrate --print` shows creates it; then it works.
        let sql = ratesync::engine::postgres::migration_sql(&config, false).unwrap();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"public\".\"never_created\""));
        ratesync::engine::postgres::migrate(&config, false)
            .await
            .unwrap();
        ratesync::engine::postgres::migrate(&config, false)
            .await
            .unwrap();
        let engine = PostgresEngine::new(&config).unwrap();
        engine.ping().await.unwrap();

        // rate-sync's own table has the same default name: refused clearly.
        server.psql(
            "CREATE TABLE rate_sync_style (group_id varchar(255) PRIMARY KEY, \
             last_acquisition_at timestamptz NOT NULL)",
        );
        let config = config_of(server, &[("table_name", "rate_sync_style")]);
        let error = PostgresEngine::new(&config)
            .unwrap()
            .ping()
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not created by ratesync"),
            "{error}"
        );
    });
}

/// Schema and table names with quotes, unicode, `$` tags and 63 bytes, built in code
/// (the configuration file only accepts plain identifiers); keys with any bytes.
#[test]
fn hostile_identifiers_and_keys() {
    let server = server();
    let rt = runtime();
    rt.block_on(async {
        let long_table = format!("{}{}", "ü".repeat(30), "t\"x"); // 63 bytes
        assert_eq!(long_table.len(), 63);
        for (schema, table) in [
            ("sch\"ema'; DROP TABLE x; --", "ta\"ble $rs0$ $$"),
            ("Ünïcødé schéma", long_table.as_str()),
            ("public", "UPPER case"),
        ] {
            let mut config = config(server, &[]);
            config.schema_name = schema.to_owned();
            config.table_name = table.to_owned();
            let engine = PostgresEngine::new(&config).unwrap();
            let lim = limiter(
                &engine,
                Policy {
                    rule: Some(sliding_window(2, 60_000_000)),
                    concurrency: concurrency(1, 10_000_000),
                },
            );
            let long_key = "k".repeat(10_000);
            for key in [
                "",
                "'; DROP TABLE t; --",
                "\0\u{7f}\"",
                "🦀 ключ",
                &long_key,
            ] {
                assert!(lim
                    .acquire(key, 1, Some(LeaseId(1)))
                    .await
                    .unwrap()
                    .0
                    .allowed());
                let (d, _) = lim.acquire(key, 1, Some(LeaseId(2))).await.unwrap();
                assert_eq!(
                    d.denied_by(),
                    Some(DeniedBy::Concurrency),
                    "{schema}.{table}"
                );
                lim.release(key, LeaseId(1)).await.unwrap();
                assert!(lim
                    .acquire(key, 1, Some(LeaseId(2)))
                    .await
                    .unwrap()
                    .0
                    .allowed());
                assert!(!lim.peek(key, 1).await.unwrap().allowed());
            }
            lim.reset(None).await.unwrap();
            assert!(lim.peek(&long_key, 2).await.unwrap().allowed());
        }
        // Names PostgreSQL would silently truncate are refused, clearly.
        let mut config = config(server, &[]);
        config.table_name = "x".repeat(64);
        let error = PostgresEngine::new(&config)
            .err()
            .expect("64 bytes refused");
        assert!(error.to_string().contains("at most 63 bytes"), "{error}");
    });
}
