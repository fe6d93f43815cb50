//! The Redis engine's Lua scripts against the reference math of `ratesync::algorithm`:
//! for the same rule, history and times, both give the same decisions (allowed,
//! remaining, retry-after, reset-after, denied-by), receipts, lease answers, refunds
//! and group outcomes, also for calls decided together in one batch.
//!
//! The scripts decide in microseconds and the reference in nanoseconds, so each rule
//! is built from whole microseconds (`interval_us * 1000`) and the reference decides
//! at `t_us * 1000` while the engine's clock is pinned to `t_us` (a test hook, feature
//! `testing`). Runs against a `redis-server` this file starts on a free port.

#![cfg(feature = "redis")]

mod reference;
mod support;

use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use ratesync::algorithm::{
    self, GroupDecision, KeyState, LeaseId, Policy, Receipt, Rule, MAX_PRECISION,
};
use ratesync::engine::redis::RedisEngine;
use ratesync::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, ReleaseSignal, StoreError};
use ratesync::testing::PinnedClock;
use ratesync::{
    Config, DeniedBy, FixedWindow, LimiterBuilder, Period, Registry, SlidingWindow, StoreBuilder,
};
use reference::{
    bounded_window, concurrency, sliding_window, BatchSender, Op, Pair, PinnedStore, EPOCH_US,
};
use support::{runtime, RedisCluster, RedisServer};

fn engine(server: &RedisServer) -> RedisEngine {
    RedisEngine::new(&support::redis_config(StoreBuilder::redis(&server.url()))).unwrap()
}

/// An engine on `server` whose scripts read the time the test pins.
fn pinned(server: &RedisServer) -> PinnedStore {
    pinned_engine(server).0
}

/// [`pinned`], and the engine itself.
fn pinned_engine(server: &RedisServer) -> (PinnedStore, RedisEngine) {
    let clock = PinnedClock::new();
    let config = support::redis_config(StoreBuilder::redis(&server.url()));
    let engine = RedisEngine::with_pinned_clock(&config, clock.clone()).unwrap();
    let store = PinnedStore {
        engine: Arc::new(engine.clone()),
        set_now: Box::new(move |t_us| clock.set_micros(t_us)),
        unit_ns: 1000,
    };
    (store, engine)
}

fn limiter(engine: &RedisEngine, policy: Policy) -> Arc<dyn EngineLimiter> {
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
fn lua_decisions_equal_the_reference() {
    let server = RedisServer::start();
    reference::check_random_histories(&runtime(), &pinned(&server));
}

#[test]
fn hand_written_histories_match() {
    let server = RedisServer::start();
    reference::check_hand_written_histories(&runtime(), &pinned(&server));
}

#[test]
fn lua_groups_equal_the_reference() {
    let server = RedisServer::start();
    reference::check_random_groups(&runtime(), &pinned(&server));
}

#[test]
fn hand_written_batches_match() {
    with_batches(reference::check_hand_written_batches);
}

#[test]
fn lua_batches_equal_the_reference() {
    with_batches(reference::check_random_batches);
}

/// Calls the engine sends at once, alone, before others wait on their queue
/// (`docs/design.md#redis`: two calls in flight).
const SENT_AT_ONCE: usize = 2;

/// Runs `check` with batches sent through the engine's own queue ([`Queued`]), on
/// a current-thread runtime: nothing runs while the test's task polls, and the task
/// that sent a batch has left the queue (it does so as soon as it has handed out the
/// answers, without yielding) before the test sees them and queues the next one.
fn with_batches(check: fn(&tokio::runtime::Runtime, &PinnedStore, &dyn BatchSender)) {
    let server = RedisServer::start();
    let (store, engine) = pinned_engine(&server);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let filler = limiter(
        &engine,
        Policy {
            rule: Some(reference::token_bucket(1, 1)),
            concurrency: None,
        },
    );
    // Connected and the function library loaded: what the batches count is only
    // their calls.
    rt.block_on(filler.acquire("filler", 1, None).into_future())
        .unwrap();
    let stats = redis::Client::open(server.url()).unwrap();
    let queued = Queued {
        stats: Mutex::new(stats.get_connection().unwrap()),
        engine,
        filler,
    };
    check(&rt, &store, &queued);
}

/// Batches through the engine's own queue (`docs/design.md#batches`):
/// [`SENT_AT_ONCE`] acquires on `filler` take every sender of the queue, then the
/// calls join it behind them, in order, all in the first poll of one task, before
/// any answer can be read; the first sender answered sends every call waiting as
/// one call of `acquire.lua`. Each batch checks that the server ran exactly that
/// many function calls.
struct Queued {
    /// A connection of the test's own, for `INFO`.
    stats: Mutex<redis::Connection>,
    engine: RedisEngine,
    filler: Arc<dyn EngineLimiter>,
}

impl Queued {
    /// Calls of functions the server has run.
    fn function_calls(&self) -> u64 {
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut *self.stats.lock().unwrap())
            .unwrap();
        stats
            .lines()
            .find_map(|line| line.strip_prefix("cmdstat_fcall:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().expect("a call count"))
    }
}

impl BatchSender for Queued {
    fn send_batch<'a>(
        &'a self,
        calls: &'a [Vec<GroupMember<'a>>],
    ) -> LocalBoxFuture<'a, Result<Vec<GroupDecision>, StoreError>> {
        Box::pin(async move {
            let before = self.function_calls();
            let filler = self.filler.as_ref();
            let fillers = (0..SENT_AT_ONCE).map(|_| alone(filler, "filler", 1, None));
            let batch = calls.iter().map(|members| match &members[..] {
                [m] => alone(m.limiter, m.key, m.cost, m.lease),
                members => Box::pin(self.engine.acquire_all(members).into_future()),
            });
            let mut answers = in_order(fillers.chain(batch).collect())
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            assert_eq!(
                self.function_calls() - before,
                SENT_AT_ONCE as u64 + 1,
                "{} calls queued behind {SENT_AT_ONCE} were not sent as one batch",
                calls.len()
            );
            Ok(answers.split_off(SENT_AT_ONCE))
        })
    }
}

/// A single acquire, answered as a call of one member.
fn alone<'a>(
    limiter: &'a dyn EngineLimiter,
    key: &'a str,
    cost: u32,
    lease: Option<LeaseId>,
) -> LocalBoxFuture<'a, Result<GroupDecision, StoreError>> {
    Box::pin(async move {
        let answer = limiter.acquire(key, cost, lease).await?;
        Ok(reference::alone_as_group(answer))
    })
}

/// Awaits `futures` together, polling each in turn: the first poll of each, where a
/// call joins its queue, comes in order.
async fn in_order<T>(mut futures: Vec<LocalBoxFuture<'_, T>>) -> Vec<T> {
    let mut answers: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (future, answer) in futures.iter_mut().zip(&mut answers) {
            if answer.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *answer = Some(value),
                    Poll::Pending => done = false,
                }
            }
        }
        match done {
            true => Poll::Ready(()),
            false => Poll::Pending,
        }
    })
    .await;
    answers.into_iter().flatten().collect()
}

#[test]
fn server_clock_leases_ttls_scans_and_code_reloads() {
    let server = RedisServer::start();
    let rt = runtime();
    rt.block_on(async {
        let engine = engine(&server);
        engine.ping().await.unwrap();
        let policy = Policy {
            rule: Some(sliding_window(2, 60_000_000)),
            concurrency: concurrency(5, 10_000_000),
        };
        let lim = limiter(&engine, policy);
        for key in ["a", "b", "weird key:{x}*"] {
            let (d, _) = lim.acquire(key, 1, Some(LeaseId(7))).await.unwrap();
            assert!(d.allowed(), "{key}");
        }
        // Every key written has a TTL; a log is one string (no ZSET of units, no
        // id sequence).
        let keys = server.cli(&["--scan", "--pattern", "*"]);
        assert!(!keys.is_empty());
        for key in keys.lines() {
            let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
            assert!(key.ends_with(":runs") || key.ends_with(":lease"), "{key}");
        }
        for key in server.cli(&["--scan", "--pattern", "*:runs"]).lines() {
            assert_eq!(server.cli(&["TYPE", key]), "string", "{key}");
        }
        // A lost function library (or script cache) costs a retry, not an error.
        assert_eq!(server.cli(&["FUNCTION", "FLUSH"]), "OK");
        assert_eq!(server.cli(&["SCRIPT", "FLUSH"]), "OK");
        let (d, _) = lim.acquire("a", 1, None).await.unwrap();
        assert!(d.allowed());
        let (d, _) = lim.acquire("a", 1, None).await.unwrap();
        assert_eq!(d.denied_by(), Some(DeniedBy::Rate));
        assert!(d.retry_after() > Duration::from_secs(59));
        assert!(lim.renew("a", LeaseId(7)).await.unwrap());
        lim.release("a", LeaseId(7)).await.unwrap();
        assert!(!lim.renew("a", LeaseId(7)).await.unwrap());
        // Reset of one key, then of the whole limiter (SCAN), leaves no key behind.
        lim.reset(Some("a")).await.unwrap();
        assert!(lim.peek("a", 2).await.unwrap().allowed());
        assert!(!lim.peek("b", 2).await.unwrap().allowed());
        lim.reset(None).await.unwrap();
        assert!(lim.peek("b", 2).await.unwrap().allowed());
        assert!(lim.peek("weird key:{x}*", 2).await.unwrap().allowed());
        assert_eq!(server.cli(&["DBSIZE"]), "0");
    });
}

/// `docs/design.md#sliding-window`: a key's log stays within 16 KB whatever was
/// admitted. A long burst of large costs at distinct instants, over three windows,
/// fills a log to the largest precision (1000 runs) and merges it on its grid again
/// and again; every decision and receipt still equals the reference's.
#[test]
fn a_log_stays_within_its_bound() {
    let server = RedisServer::start();
    let store = pinned(&server);
    let window = SlidingWindow::with_window_nanos(u32::MAX, 60_000_000_000)
        .unwrap()
        .with_precision(MAX_PRECISION)
        .unwrap();
    let policy = Policy {
        rule: Some(Rule::SlidingWindow(window)),
        concurrency: None,
    };
    runtime().block_on(async {
        let mut pair = Pair::new(&store, policy);
        // About 2000 admissions per window: twice the runs a log may keep.
        for i in 0..6_000u32 {
            let op = Op::Acquire {
                cost: 1_000_000 + i % 7,
                lease: false,
            };
            pair.step(EPOCH_US + u64::from(i) * 30_011, &op)
                .await
                .unwrap();
        }
    });
    let key = server.cli(&["--scan", "--pattern", "*:runs"]);
    assert_eq!(key.lines().count(), 1, "one key: {key}");
    let length: u64 = server.cli(&["STRLEN", &key]).parse().unwrap();
    let memory: u64 = server.cli(&["MEMORY", "USAGE", &key]).parse().unwrap();
    assert!(length > 10_000, "the log filled up: {length} bytes");
    assert!(memory <= 16 * 1024, "{memory} bytes for {length} of log");
}

/// Bounded logs over long histories (proptest, 60 cases of 50 to 200 steps): merge
/// after merge, refunds and settles take units out of merged runs, older runs and
/// the newest one, while the scripts carry from call to call which runs already lie
/// on the grid (`log_merge` in lib.lua).
#[test]
fn long_bounded_histories_equal_the_reference() {
    let server = RedisServer::start();
    let store = pinned(&server);
    let rt = runtime();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 60,
        ..ProptestConfig::default()
    });
    let strategy = (1u32..=40, 1u64..=3_000_000, 4u32..=8).prop_flat_map(|rule| {
        let window = rule.1;
        let op = prop_oneof![
            6 => (1u32..=8).prop_map(|cost| Op::Acquire { cost, lease: false }),
            1 => (1u32..=8).prop_map(|cost| Op::Peek { cost }),
            2 => any::<usize>().prop_map(Op::Refund),
            2 => (any::<usize>(), 0u32..=8).prop_map(|(n, kept)| Op::Settle { n, kept }),
        ];
        let dt = prop_oneof![
            Just(0u64),
            0u64..2_000,
            0..window / 4 + 1,
            (window - 1)..=(window + 1),
        ];
        (Just(rule), prop::collection::vec((dt, op), 50..200))
    });
    runner
        .run(&strategy, |((limit, window, precision), ops)| {
            let policy = Policy {
                rule: Some(bounded_window(limit, window, precision)),
                concurrency: None,
            };
            rt.block_on(async {
                let mut pair = Pair::new(&store, policy);
                let mut t = EPOCH_US + fastrand::u64(..1_000_000_000);
                for (dt, op) in &ops {
                    t += dt;
                    pair.step(t, op).await?;
                }
                Ok(())
            })
        })
        .unwrap();
}

/// Refunds that reshape a merged log: a run on the grid taken out from between
/// others (the runs after it move back), the newest run emptied (the one before
/// becomes the newest), then new runs and another merge, which must move every run
/// not on the grid. Precision 6 over 1 s: a grid of 250 ms.
#[test]
fn refunds_that_reshape_a_merged_log_match() {
    let server = RedisServer::start();
    let store = pinned(&server);
    let policy = Policy {
        rule: Some(bounded_window(100, 1_000_000, 6)),
        concurrency: None,
    };
    let acquire = |cost| Op::Acquire { cost, lease: false };
    let peek = |cost| Op::Peek { cost };
    let ops = [
        (0, acquire(1)),
        (260_000, acquire(1)),
        (510_000, acquire(1)),
        (600_000, acquire(1)),
        (610_000, acquire(1)),
        (620_000, acquire(1)),
        // Full: runs at 0, 500, 750 ms.
        (630_000, acquire(1)),
        (800_000, acquire(1)),
        // The 260 ms admission, alone in the 500 ms run, between two others.
        (800_000, Op::Refund(1)),
        (900_000, acquire(1)),
        (910_000, acquire(1)),
        (920_000, acquire(1)),
        // Full again: 800 ms and later move to 1 s.
        (930_000, acquire(1)),
        (1_000_000, peek(1)),
        (1_750_000, peek(1)),
        (1_800_000, peek(1)),
        (1_800_001, peek(1)),
        // The newest run emptied: the run before it becomes the newest.
        (1_800_001, acquire(3)),
        (1_800_001, Op::Refund(11)),
        (1_900_000, acquire(1)),
        (1_950_000, acquire(1)),
        (1_990_000, acquire(1)),
        (1_999_999, peek(90)),
        (2_000_000, acquire(1)),
        (2_000_001, peek(97)),
        (2_750_000, peek(97)),
        (3_000_000, peek(100)),
    ];
    runtime().block_on(async {
        let mut pair = Pair::new(&store, policy);
        for (t, op) in &ops {
            pair.step(EPOCH_US + t, op).await.unwrap();
        }
    });
}

/// A limiter reconfigured to another precision (another merge grid) keeps its
/// key's log, as the reference does; the runs the log says lie on the old grid are
/// not taken for runs on the new one. Two limiters of one id, precisions 4 and 7,
/// take turns on one key.
#[test]
fn a_log_written_under_another_grid_is_merged_on_the_new_one() {
    let server = RedisServer::start();
    let store = pinned(&server);
    let rules = [4, 7].map(|precision| Policy {
        rule: Some(bounded_window(30, 1_000_000, precision)),
        concurrency: None,
    });
    let limiters = rules.map(|policy| {
        store
            .engine
            .limiter(LimiterSpec {
                id: "regridded".into(),
                policy,
                releases: ReleaseSignal::detached(),
            })
            .unwrap()
    });
    let mut state = KeyState::fresh(&rules[0]);
    let mut taken = Vec::new();
    let mut t = EPOCH_US;
    runtime().block_on(async {
        for step in 0..1_500 {
            t += [0, 1, 20_000, 70_000, 300_000][fastrand::usize(..5)];
            (store.set_now)(t);
            let i = fastrand::usize(..2);
            let (policy, limiter) = (&rules[i], &limiters[i]);
            if fastrand::u8(..5) == 0 && !taken.is_empty() {
                let (cost, expected, actual): (u32, Receipt, Receipt) =
                    taken.swap_remove(fastrand::usize(..taken.len()));
                algorithm::refund(policy, &mut state, t * 1000, cost, expected, None);
                limiter.refund("k", cost, actual, None).await.unwrap();
                continue;
            }
            let cost = fastrand::u32(1..=6);
            let (expected, receipt) = algorithm::decide(policy, &mut state, t * 1000, cost, None);
            let (actual, actual_receipt) = limiter.acquire("k", cost, None).await.unwrap();
            assert_eq!(actual, expected, "step {step}, precision rule {i}");
            if expected.allowed() {
                let in_ns = Receipt {
                    now: actual_receipt.now * 1000,
                    recorded: actual_receipt.recorded * 1000,
                };
                assert_eq!(in_ns, receipt, "step {step}");
                taken.push((cost, receipt, actual_receipt));
            }
        }
    });
}

/// `docs/design.md#fixed-windows`: calendar windows start and end where
/// `FixedWindow::bounds` says, at UTC offsets from -18:00 to +18:00, around the
/// epoch (windows clamped to it), across leap years (2000, 2024, not 2100) and year
/// ends: the receipt of an admission names its window's start, its reset-after the
/// window's end. Probed just before, at and just after each boundary.
#[test]
fn calendar_windows_end_where_the_reference_says() {
    const DAY_US: u64 = 86_400_000_000;
    let server = RedisServer::start();
    let store = pinned(&server);
    // 1970-01-01, 1999-11-22, 2023-12-01 and 2098-11-22 (UTC), each before the next.
    let starts = [
        0,
        946_684_800_000_000 - 40 * DAY_US,
        1_701_388_800_000_000,
        4_070_908_800_000_000 - 40 * DAY_US,
    ];
    runtime().block_on(async {
        for offset in [
            -18 * 3600,
            -5 * 3600,
            0,
            5 * 3600 + 1800,
            14 * 3600,
            18 * 3600,
        ] {
            for (period, windows) in [(Period::Month, 30), (Period::Week, 6), (Period::Day, 6)] {
                let rule = FixedWindow::calendar(1_000_000, period, offset).unwrap();
                let lim = store
                    .engine
                    .limiter(LimiterSpec {
                        id: format!("calendar-{offset}-{period:?}").into(),
                        policy: Policy {
                            rule: Some(Rule::FixedWindow(rule)),
                            concurrency: None,
                        },
                        releases: ReleaseSignal::detached(),
                    })
                    .unwrap();
                for from in starts {
                    let mut t = from;
                    for _ in 0..windows {
                        let end = rule.bounds(t * 1000).1 / 1000;
                        for probe in [t, end - 1, end, end + 1] {
                            (store.set_now)(probe);
                            let (d, receipt) = lim.acquire("k", 1, None).await.unwrap();
                            let (start, end) = rule.bounds(probe * 1000);
                            let at = format!("{period:?} at {offset} s, {probe} us");
                            assert!(d.allowed(), "{at}");
                            assert_eq!(receipt.recorded * 1000, start, "start, {at}");
                            assert_eq!(
                                d.reset_after(),
                                Duration::from_nanos(end - probe * 1000),
                                "end, {at}"
                            );
                        }
                        t = end + 1;
                    }
                }
            }
        }
    });
}

/// Fixed windows keep one small string per key, alive until its window ends.
#[test]
fn a_fixed_window_lives_until_its_window_ends() {
    let server = RedisServer::start();
    runtime().block_on(async {
        let engine = engine(&server);
        let hourly = FixedWindow::new(2, 3600.0).unwrap();
        let monthly = FixedWindow::calendar(2, Period::Month, -5 * 3600).unwrap();
        for (rule, longest) in [(hourly, 3600), (monthly, 31 * 86_400)] {
            let policy = Policy {
                rule: Some(Rule::FixedWindow(rule)),
                concurrency: None,
            };
            let lim = limiter(&engine, policy);
            let (d, _) = lim.acquire("k", 2, None).await.unwrap();
            assert!(d.allowed() && d.remaining() == 0);
            let (d, _) = lim.acquire("k", 1, None).await.unwrap();
            assert_eq!(d.denied_by(), Some(DeniedBy::Rate));
            assert_eq!(d.retry_after(), d.reset_after());
            let keys = server.cli(&["--scan", "--pattern", "*:fw"]);
            assert_eq!(keys.lines().count(), 1, "{keys}");
            let ttl: u64 = server.cli(&["PTTL", &keys]).parse().unwrap();
            // The window's end rounded up to the TTL step (100 ms), plus the margin of
            // every TTL (1 s).
            let end_ms = d.reset_after().as_millis() as u64;
            assert!(ttl <= end_ms + 1_101 && ttl + 1_000 >= end_ms, "{ttl} ms");
            assert!(ttl <= longest * 1000 + 1_001, "{ttl} ms");
            assert_eq!(server.cli(&["STRLEN", &keys]), "16");
            lim.reset(None).await.unwrap();
        }
    });
}

#[test]
fn a_release_in_another_process_wakes_waiters() {
    let server = RedisServer::start();
    release_wakes_another_engine(|| StoreBuilder::redis(&server.url()), Free::Release);
}

/// Resetting the whole limiter frees every slot: the waiters of other processes are
/// told, as for a release.
#[test]
fn a_whole_limiter_reset_wakes_waiters_in_another_process() {
    let server = RedisServer::start();
    release_wakes_another_engine(|| StoreBuilder::redis(&server.url()), Free::ResetAll);
}

/// On a Cluster the subscription may take any node (PUBLISH reaches them all). A
/// configured node that is down must not keep it away: it moves on to the next.
#[test]
fn a_release_wakes_waiters_on_a_cluster_whose_first_node_is_down() {
    support::require_binaries(support::REDIS_BINARIES);
    let cluster = RedisCluster::start(3);
    let dead = format!("redis://127.0.0.1:{}", support::free_port());
    let urls = std::iter::once(dead)
        .chain(cluster.urls())
        .collect::<Vec<_>>()
        .join(",");
    release_wakes_another_engine(
        || StoreBuilder::redis(&urls).option("cluster", true),
        Free::Release,
    );
}

/// How the holder frees its slot.
enum Free {
    /// Drops its permit.
    Release,
    /// Resets the whole limiter (the permit is dropped only afterwards).
    ResetAll,
}

/// Two registries, each with its own engine (two "processes"): a slot freed in one
/// wakes the other's waiter through pub/sub, well before the fallback poll.
fn release_wakes_another_engine(store: impl Fn() -> StoreBuilder, free: Free) {
    let rt = runtime();
    rt.block_on(async {
        let registry = || {
            let config = Config::builder()
                .store("shared", store())
                .limiter(
                    "jobs",
                    LimiterBuilder::token_bucket("shared", 1000.0)
                        .burst(100)
                        .max_concurrent(1)
                        .no_timeout(),
                )
                .build()
                .unwrap();
            let engine = RedisEngine::new(&support::redis_config(store())).unwrap();
            Registry::builder(config)
                .engine("shared", Arc::new(engine))
                .build()
                .unwrap()
        };
        let (first, second) = (registry(), registry());
        let holder = first.limiter("jobs").unwrap();
        let waiter = second.limiter("jobs").unwrap();
        let permit = holder.key("k").acquire().await.unwrap();
        // Let the second process's subscription start before the release (on the
        // cluster: fail on the dead node, pause 100 ms, then take the next one).
        let waiting = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let _permit = waiter.key("k").acquire().await.unwrap();
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        let released = tokio::time::Instant::now();
        let permit = match free {
            Free::Release => {
                drop(permit);
                None
            }
            Free::ResetAll => {
                holder.reset().await.unwrap();
                Some(permit)
            }
        };
        let waited = waiting.await.unwrap();
        drop(permit);
        let after_release = released.elapsed();
        assert!(waited >= Duration::from_millis(600), "admitted while held");
        // The fallback poll is 500 ms: a wake-up well under it came from pub/sub.
        assert!(
            after_release < Duration::from_millis(250),
            "woken {after_release:?} after the release"
        );
    });
}
