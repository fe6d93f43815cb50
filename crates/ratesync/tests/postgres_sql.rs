//! The PostgreSQL engine's SQL functions against the reference math of
//! `ratesync::algorithm`: for the same rule, history and times, both give the same
//! decisions (allowed, remaining, retry-after, reset-after, denied-by), lease answers
//! included. Also: the server's clock, cleanup, reset, release notifications across
//! engines, a missing table's error, and hostile schema, table and key names.
//!
//! The functions decide in microseconds and the reference in nanoseconds, so each rule
//! is built from whole microseconds (`interval_us * 1000`) and the reference decides
//! at `t_us * 1000` while the function's clock is pinned to `t_us` (a parameter only
//! tests pass). Runs against a PostgreSQL server this file starts on a free port.

#![cfg(feature = "postgres")]

mod support;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use ratesync::algorithm::{self, Concurrency, KeyState, LeaseId, Policy, Rule};
use ratesync::config::PostgresConfig;
use ratesync::engine::postgres::{PostgresEngine, PostgresLimiter};
use ratesync::engine::{Engine, EngineLimiter, LimiterSpec, ReleaseSignal, StoreError};
use ratesync::{
    Config, DeniedBy, LimiterBuilder, Registry, SlidingWindow, StoreBuilder, TokenBucket,
};
use support::PostgresServer;

/// A plausible epoch time in µs: the functions must stay exact at real magnitudes.
const EPOCH_US: u64 = 1_750_000_000_000_000;

/// The server this test process shares, or `None` after a loud skip.
fn server() -> Option<&'static PostgresServer> {
    static SHARED: OnceLock<Option<PostgresServer>> = OnceLock::new();
    SHARED.get_or_init(PostgresServer::start_or_skip).as_ref()
}

fn config(server: &PostgresServer, options: &[(&str, &str)]) -> PostgresConfig {
    let mut store = StoreBuilder::postgres(&server.url()).option("auto_create", true);
    for (key, value) in options {
        store = store.option(key, *value);
    }
    support::postgres_config(store)
}

/// An engine with `auto_create` and no background cleanup (pinned clocks make rows
/// look expired on the real one).
fn engine(server: &PostgresServer) -> PostgresEngine {
    PostgresEngine::without_cleanup(&config(server, &[])).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn limiter(engine: &PostgresEngine, policy: Policy) -> Arc<PostgresLimiter> {
    let id = format!("eq-{}", fastrand::u64(..));
    engine
        .postgres_limiter(LimiterSpec {
            id: id.into(),
            policy,
            releases: ReleaseSignal::detached(),
        })
        .unwrap()
}

fn token_bucket(interval_us: u64, burst: u32) -> Rule {
    Rule::TokenBucket(TokenBucket::with_interval_nanos(interval_us * 1000, burst).unwrap())
}

fn sliding_window(limit: u32, window_us: u64) -> Rule {
    Rule::SlidingWindow(SlidingWindow::with_window_nanos(limit, window_us * 1000).unwrap())
}

fn concurrency(max: u32, ttl_us: u64) -> Option<Concurrency> {
    Some(Concurrency {
        max,
        lease_ttl: ttl_us * 1000,
    })
}

#[derive(Debug, Clone)]
enum Op {
    Acquire {
        cost: u32,
        lease: bool,
    },
    Peek {
        cost: u32,
    },
    /// Releases / renews the n-th lease taken so far (modulo their number).
    Release(usize),
    Renew(usize),
}

/// The reference and the SQL functions side by side, on one key.
struct Pair {
    policy: Policy,
    state: KeyState,
    sql: Arc<PostgresLimiter>,
    key: String,
    leases: Vec<LeaseId>,
}

impl Pair {
    fn new(engine: &PostgresEngine, policy: Policy) -> Self {
        Pair {
            policy,
            state: KeyState::fresh(&policy.rule),
            sql: limiter(engine, policy),
            key: format!("user:{{{}}}", fastrand::u32(..)),
            leases: Vec::new(),
        }
    }

    /// Applies `op` at `t_us` to both; panics with the step on any difference.
    async fn step(&mut self, t_us: u64, op: &Op) -> Result<(), TestCaseError> {
        let now = t_us * 1000;
        match *op {
            Op::Acquire { cost, lease } => {
                let cost = cost.min(self.policy.rule.capacity());
                let id = (lease && self.policy.concurrency.is_some()).then(LeaseId::random);
                let expected = algorithm::decide(&self.policy, &mut self.state, now, cost, id);
                let actual = self
                    .sql
                    .acquire_at(&self.key, cost, id, Some(t_us))
                    .await
                    .unwrap();
                prop_assert_eq!(actual, expected, "acquire cost {} at {}", cost, t_us);
                if let (Some(id), true) = (id, expected.allowed) {
                    self.leases.push(id);
                }
            }
            Op::Peek { cost } => {
                let cost = cost.min(self.policy.rule.capacity());
                let expected = algorithm::peek(&self.policy, &self.state, now, cost);
                let actual = self.sql.peek_at(&self.key, cost, Some(t_us)).await.unwrap();
                prop_assert_eq!(actual, expected, "peek cost {} at {}", cost, t_us);
            }
            Op::Release(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                self.state.leases.release(id);
                self.sql.release(&self.key, id).await.unwrap();
            }
            Op::Renew(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                let ttl = self.policy.concurrency.map_or(0, |c| c.lease_ttl);
                let expected = self.state.leases.renew(id, now, ttl);
                let actual = self.sql.renew_at(&self.key, id, Some(t_us)).await.unwrap();
                prop_assert_eq!(actual, expected, "renew at {}", t_us);
            }
            Op::Release(_) | Op::Renew(_) => {}
        }
        Ok(())
    }
}

fn policies() -> impl Strategy<Value = Policy> {
    let rule = prop_oneof![
        (1u64..=2_000_000, 1u32..=8).prop_map(|(i, b)| token_bucket(i, b)),
        (1u32..=8, 1u64..=3_000_000).prop_map(|(l, w)| sliding_window(l, w)),
    ];
    let cap = prop_oneof![
        Just(None),
        (1u32..=3, 1u64..=4_000_000).prop_map(|(m, t)| concurrency(m, t)),
    ];
    (rule, cap).prop_map(|(rule, concurrency)| Policy { rule, concurrency })
}

/// The spans of `policy` in µs: the instants where decisions change.
fn spans(policy: &Policy) -> Vec<u64> {
    let mut spans = vec![match policy.rule {
        Rule::TokenBucket(tb) => tb.interval_nanos() / 1000,
        Rule::SlidingWindow(sw) => sw.window_nanos() / 1000,
    }];
    spans.extend(policy.concurrency.map(|c| c.lease_ttl / 1000));
    spans
}

fn ops(policy: &Policy) -> impl Strategy<Value = Vec<(u64, Op)>> {
    let op = prop_oneof![
        6 => (1u32..=8, any::<bool>()).prop_map(|(cost, lease)| Op::Acquire { cost, lease }),
        2 => (1u32..=8).prop_map(|cost| Op::Peek { cost }),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Renew),
    ];
    // Steps of zero (same microsecond), small, long enough to refill or expire, and
    // exactly one span of the rule or lease (±1 µs), where off-by-one errors show.
    let spans = spans(policy);
    let edge = (prop::sample::select(spans), -1i64..=1)
        .prop_map(|(span, off)| span.saturating_add_signed(off));
    let dt = prop_oneof![
        Just(0u64).boxed(),
        (0u64..2_000).boxed(),
        (0u64..1_500_000).boxed(),
        (0u64..6_000_000).boxed(),
        edge.boxed(),
    ];
    prop::collection::vec((dt, op), 1..40)
}

#[test]
fn sql_decisions_equal_the_reference() {
    let Some(server) = server() else {
        return;
    };
    let rt = runtime();
    let engine = engine(server);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let start = EPOCH_US + fastrand::u64(..1_000_000_000);
    runner
        .run(
            &policies().prop_flat_map(|policy| (Just(policy), ops(&policy))),
            |(policy, ops)| {
                rt.block_on(async {
                    let mut pair = Pair::new(&engine, policy);
                    let mut t = start;
                    for (dt, op) in &ops {
                        t += dt;
                        pair.step(t, op).await?;
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}

/// Runs `ops` (time, op) on one fresh key of `policy`, comparing every step.
fn compare(
    engine: &PostgresEngine,
    rt: &tokio::runtime::Runtime,
    policy: Policy,
    ops: &[(u64, Op)],
) {
    rt.block_on(async {
        let mut pair = Pair::new(engine, policy);
        for (t, op) in ops {
            pair.step(EPOCH_US + t, op).await.unwrap();
        }
    });
}

#[test]
fn hand_written_histories_match() {
    let Some(server) = server() else {
        return;
    };
    let rt = runtime();
    let engine = engine(server);
    let acquire = |cost| Op::Acquire { cost, lease: true };
    let peek = |cost| Op::Peek { cost };
    // Token bucket, 3/s (interval rounded up to 333_334 µs), burst 3, at the exact
    // edges of refill.
    let tb = Policy {
        rule: token_bucket(333_334, 3),
        concurrency: None,
    };
    compare(
        &engine,
        &rt,
        tb,
        &[
            (0, acquire(1)),
            (0, acquire(2)),
            (0, acquire(1)),
            (0, peek(1)),
            (333_333, acquire(1)),
            (333_334, acquire(1)),
            (333_334, peek(1)),
            (10_000_000, peek(3)),
            (10_000_000, acquire(3)),
        ],
    );
    // Sliding window 4 per 1 s with costs: retry waits for enough units to leave.
    let sw = Policy {
        rule: sliding_window(4, 1_000_000),
        concurrency: None,
    };
    compare(
        &engine,
        &rt,
        sw,
        &[
            (0, acquire(2)),
            (500_000, acquire(2)),
            (600_000, acquire(3)),
            (600_000, peek(3)),
            (999_999, acquire(1)),
            (1_000_000, acquire(1)),
            (1_000_000, acquire(2)),
            (1_500_000, peek(1)),
            (1_500_000, acquire(2)),
            (9_000_000, peek(4)),
        ],
    );
    // Concurrency and rate together: a full cap consumes no rate, a rate refusal
    // takes no slot, leases expire, renew and release.
    let both = Policy {
        rule: token_bucket(1_000_000, 2),
        concurrency: concurrency(1, 3_000_000),
    };
    compare(
        &engine,
        &rt,
        both,
        &[
            (0, acquire(1)),
            (0, acquire(1)),
            (0, peek(1)),
            (1_000_000, Op::Renew(0)),
            (3_999_999, acquire(1)),
            (4_000_000, acquire(1)),
            (4_000_000, Op::Release(1)),
            (4_000_000, Op::Release(1)),
            (4_000_000, acquire(2)),
            (4_000_001, acquire(1)),
            (4_000_001, Op::Renew(0)),
            (9_000_000, Op::Renew(2)),
        ],
    );
    let window_cap = Policy {
        rule: sliding_window(2, 2_000_000),
        concurrency: concurrency(2, 500_000),
    };
    compare(
        &engine,
        &rt,
        window_cap,
        &[
            (0, acquire(1)),
            (0, acquire(1)),
            (0, acquire(1)),
            (499_999, peek(1)),
            (500_000, acquire(1)),
            (2_000_000, acquire(2)),
            (2_100_000, acquire(1)),
        ],
    );
}

#[test]
fn server_clock_cleanup_and_reset() {
    let Some(server) = server() else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let engine = engine(server);
        engine.ping().await.unwrap();
        let policy = Policy {
            rule: sliding_window(2, 60_000_000),
            concurrency: concurrency(5, 10_000_000),
        };
        let lim = limiter(&engine, policy);
        for key in ["a", "b", "weird key:{x}*'\"\0"] {
            let d = lim.acquire(key, 1, Some(LeaseId(7))).await.unwrap();
            assert!(d.allowed, "{key}");
        }
        let d = lim.acquire("a", 1, None).await.unwrap();
        assert!(d.allowed);
        let d = lim.acquire("a", 1, None).await.unwrap();
        assert_eq!(d.denied_by, Some(DeniedBy::Rate));
        assert!(d.retry_after > Duration::from_secs(59));
        assert!(lim.renew("a", LeaseId(7)).await.unwrap());
        lim.release("a", LeaseId(7)).await.unwrap();
        assert!(!lim.renew("a", LeaseId(7)).await.unwrap());
        // Reset of one key, then of the whole limiter.
        lim.reset(Some("a")).await.unwrap();
        assert!(lim.peek("a", 2).await.unwrap().allowed);
        assert!(!lim.peek("b", 2).await.unwrap().allowed);
        lim.reset(None).await.unwrap();
        assert!(lim.peek("b", 2).await.unwrap().allowed);
        assert!(lim.peek("weird key:{x}*'\"\0", 2).await.unwrap().allowed);

        // Cleanup deletes rows whose state is fresh again, and only those.
        let short = limiter(
            &engine,
            Policy {
                rule: token_bucket(1_000, 1),
                concurrency: None,
            },
        );
        for key in 0..50 {
            assert!(short.acquire(&key.to_string(), 1, None).await.unwrap().allowed);
        }
        assert!(lim.acquire("kept", 1, None).await.unwrap().allowed);
        // Expiry is kept to the next whole second.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut deleted = 0;
        loop {
            let n = engine.cleanup(20).await.unwrap();
            deleted += n;
            if n < 20 {
                break;
            }
        }
        assert!(deleted >= 50, "deleted {deleted}");
        let count = server.psql("SELECT count(*) FROM public.rate_limiter_state WHERE expires_at < (extract(epoch FROM clock_timestamp()) * 1000000)::bigint - 1000000");
        assert_eq!(count, "0");
        assert!(!lim.peek("kept", 2).await.unwrap().allowed, "live state survives");
    });
}

#[test]
fn a_release_in_another_process_wakes_waiters() {
    let Some(server) = server() else {
        return;
    };
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
    let Some(server) = server() else {
        return;
    };
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
    let Some(server) = server() else {
        return;
    };
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
            let engine = PostgresEngine::without_cleanup(&config).unwrap();
            let lim = limiter(
                &engine,
                Policy {
                    rule: sliding_window(2, 60_000_000),
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
                assert!(lim.acquire(key, 1, Some(LeaseId(1))).await.unwrap().allowed);
                let d = lim.acquire(key, 1, Some(LeaseId(2))).await.unwrap();
                assert_eq!(d.denied_by, Some(DeniedBy::Concurrency), "{schema}.{table}");
                lim.release(key, LeaseId(1)).await.unwrap();
                assert!(lim.acquire(key, 1, Some(LeaseId(2))).await.unwrap().allowed);
                assert!(!lim.peek(key, 1).await.unwrap().allowed);
            }
            lim.reset(None).await.unwrap();
            assert!(lim.peek(&long_key, 2).await.unwrap().allowed);
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
