//! Distributed correctness on one Redis (`docs/design.md#distributed-tests`,
//! `docs/design.md#time`): several OS processes with many tasks each hammer one
//! limiter. A sliding window admits exactly `limit` in total; a token bucket stays
//! within `burst + rate·t` (and close to it); nothing errors. Then the same with client
//! clocks an hour off (under `faketime`): the store's clock decides, so the totals do
//! not change.
//!
//! The worker processes are this test binary run again in a child role (see
//! `support::child`), so no extra binary is needed.

#![cfg(feature = "redis")]

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ratesync::{AcquireError, Config, Registry, StoreBuilder};
use support::child::{self, ChildProcess, Results, Run, Spawn};
use support::{groups, RedisCluster, RedisServer, Tally};

const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 32;

/// A worker process: builds its own registry from the environment, connects,
/// reports READY, waits for the go, then runs its tasks for the duration and
/// reports what they saw (and its own wall clock, to show a skew is in force).
fn worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = Config::builder()
            .store("s", StoreBuilder::redis(&child::env("REDIS_URL")))
            .limiter("shared", child::rule_limiter(&child::env("RULE")))
            .build()
            .unwrap();
        let registry = Registry::from_config(config).unwrap();
        let limiter = registry.limiter("shared").unwrap();
        // Connected, scripts loaded, nothing consumed.
        limiter.state().await.expect("the store answers");
        let duration = Duration::from_millis(child::env("DURATION_MS").parse().unwrap());

        tokio::task::spawn_blocking(child::ready_then_wait_for_go)
            .await
            .unwrap();
        let wall_ms = wall_ms_now();
        let deadline = tokio::time::Instant::now() + duration;
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut seen = Tally::default();
                    while tokio::time::Instant::now() < deadline {
                        match limiter.try_acquire().await {
                            Ok(_) => seen.admitted += 1,
                            Err(AcquireError::Denied { decision, .. }) => {
                                seen.denied += 1;
                                seen.max_retry = seen.max_retry.max(decision.retry_after());
                            }
                            Err(other) => seen.error(other),
                        }
                        // Keeps 128 callers from starving the rest of a 2-core
                        // machine; each still retries far faster than units return.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    seen
                })
            })
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            total.add(task.await.unwrap());
        }
        child::report(&[
            ("admitted", total.admitted.to_string()),
            ("denied", total.denied.to_string()),
            ("errors", total.errors.to_string()),
            ("max_retry_ms", total.max_retry.as_millis().to_string()),
            ("wall_ms", wall_ms.to_string()),
            ("first_error", total.first_error.unwrap_or_default()),
        ]);
    });
}

/// One worker process to start: its wall-clock offset (`None` = the real clock).
struct Worker {
    clock_offset: Option<&'static str>,
}

/// Starts `workers` running `test` in the worker role against `server`, lets
/// them go at once, and collects their reports.
fn run_workers(
    test: &str,
    server: &RedisServer,
    rule: &str,
    duration: Duration,
    workers: &[Worker],
) -> Run {
    // Under plain `cargo test` the tests of this file share a process and would
    // run at once; their load would then skew each other's numbers. (nextest
    // runs them alone: .config/nextest.toml.)
    static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut children: Vec<ChildProcess> = workers
        .iter()
        .map(|worker| {
            let wrapper = match worker.clock_offset {
                // Only the wall clock is moved: a monotonic clock an hour behind
                // could go below zero on a machine booted minutes ago.
                Some(offset) => ["faketime", "-f", offset].map(String::from).into(),
                None => Vec::new(),
            };
            ChildProcess::spawn(Spawn {
                test,
                role: "worker",
                env: vec![
                    ("REDIS_URL", server.url()),
                    ("RULE", rule.to_owned()),
                    ("DURATION_MS", duration.as_millis().to_string()),
                    ("DONT_FAKE_MONOTONIC", "1".to_owned()),
                ],
                wrapper,
            })
        })
        .collect();
    for child in &mut children {
        child.wait_ready(Duration::from_secs(60));
    }
    let started = Instant::now();
    for child in &mut children {
        child.go();
    }
    let results: Vec<Results> = children
        .iter_mut()
        .map(|child| child.result(duration + Duration::from_secs(60)))
        .collect();
    let span = started.elapsed();
    eprintln!("{rule} over {span:?}:");
    for (worker, result) in workers.iter().zip(&results) {
        eprintln!("  clock {:?}: {:?}", worker.clock_offset, result.0);
    }
    Run { results, span }
}

fn normal_workers(n: usize) -> Vec<Worker> {
    (0..n).map(|_| Worker { clock_offset: None }).collect()
}

/// The sliding window's rule: a window far longer than the run, so every
/// admission stays in it and the total must be exactly `LIMIT`, while the
/// callers attempt many times more.
const LIMIT: u32 = 500;
const WINDOW_RULE: &str = "window:500:3600";

/// The token bucket's rule: 200 units/s after a burst of 100.
const RATE: f64 = 200.0;
const BURST: f64 = 100.0;
const BUCKET_RULE: &str = "bucket:200:100";

/// The GCRA bound over a run: no more than `burst + rate·span`, where `span` (go
/// to last report, measured here) contains the server-time span between first
/// and last admission. And near it: the callers retry every few milliseconds,
/// so a unit is taken soon after it returns; a unit is only lost when nobody
/// asks for a whole `burst / rate` = 0.5 s (the bucket refills to the brim). The
/// lower bound gives up 0.5 s of the run to the workers' staggered start.
fn assert_within_gcra_bound(run: &Run, duration: Duration) {
    let admitted = run.total("admitted") as f64;
    let upper = BURST + (RATE * run.span.as_secs_f64()).floor();
    let lower = BURST + RATE * (duration.as_secs_f64() - 0.5);
    assert!(
        admitted <= upper,
        "{admitted} admitted in {:?}: above burst + rate·t = {upper}",
        run.span
    );
    assert!(
        admitted >= lower,
        "{admitted} admitted in {:?}: far below burst + rate·t (expected ≥ {lower})",
        run.span
    );
}

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one sliding window:
/// exactly `limit` in total.
#[test]
fn a_sliding_window_admits_exactly_its_limit_across_processes() {
    if child::role().is_some() {
        return worker();
    }
    let server = RedisServer::start();
    let run = run_workers(
        "a_sliding_window_admits_exactly_its_limit_across_processes",
        &server,
        WINDOW_RULE,
        Duration::from_secs(2),
        &normal_workers(PROCESSES),
    );
    run.assert_no_errors();
    assert_eq!(run.total("admitted"), i128::from(LIMIT));
    assert!(
        run.total("denied") > i128::from(LIMIT),
        "the callers asked far more often than the limit allows"
    );
}

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one token bucket:
/// within `burst + rate·t`.
#[test]
fn a_token_bucket_stays_within_its_bound_across_processes() {
    if child::role().is_some() {
        return worker();
    }
    let server = RedisServer::start();
    let duration = Duration::from_secs(3);
    let run = run_workers(
        "a_token_bucket_stays_within_its_bound_across_processes",
        &server,
        BUCKET_RULE,
        duration,
        &normal_workers(PROCESSES),
    );
    run.assert_no_errors();
    assert_within_gcra_bound(&run, duration);
}

/// Whether `faketime` can run the skewed workers; skips loudly when it is not
/// installed (a failure under `CI=true`).
/// The skewed workers run under `faketime`.
fn require_faketime() {
    support::require_binaries(&["redis-server", "redis-cli", "faketime"]);
}

/// A process on the real clock, one an hour ahead and one an hour behind.
fn skewed_workers() -> Vec<Worker> {
    vec![
        Worker { clock_offset: None },
        Worker {
            clock_offset: Some("+1h"),
        },
        Worker {
            clock_offset: Some("-1h"),
        },
    ]
}

/// This process's wall clock (skewed in a worker under faketime), ms since the epoch.
fn wall_ms_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i128
}

/// The skew really was in force: each worker's wall clock read what it was
/// given (else the test would prove nothing).
fn assert_clocks_were_skewed(run: &Run) {
    const HOUR_MS: i128 = 3_600_000;
    // This process's wall clock at the go (within the time the reports took).
    let parent_ms = wall_ms_now() - run.span.as_millis() as i128;
    for (result, offset) in run.results.iter().zip([0, HOUR_MS, -HOUR_MS]) {
        let skew = result.number("wall_ms") - parent_ms;
        assert!(
            (skew - offset).abs() < 60_000,
            "a worker meant to be {offset} ms off was {skew} ms off: faketime did not apply"
        );
    }
}

/// `docs/design.md#time`: with client clocks an hour apart, one sliding window still admits
/// exactly its limit, and no refusal asks for a wait longer than the window and one
/// merge grid (`docs/design.md#sliding-window`: a busy log counts units up to a grid
/// step late); a client-clock engine would make the clock-behind process wait hours.
#[test]
fn a_sliding_window_ignores_a_skewed_clock() {
    if child::role().is_some() {
        return worker();
    }
    require_faketime();
    let server = RedisServer::start();
    let run = run_workers(
        "a_sliding_window_ignores_a_skewed_clock",
        &server,
        WINDOW_RULE,
        Duration::from_secs(2),
        &skewed_workers(),
    );
    assert_clocks_were_skewed(&run);
    run.assert_no_errors();
    assert_eq!(run.total("admitted"), i128::from(LIMIT));
    let grid_ms = ratesync::SlidingWindow::new(LIMIT, 3600.0)
        .unwrap()
        .grid_nanos()
        .div_ceil(1_000_000);
    for result in &run.results {
        let longest = 3_600_000 + i128::from(grid_ms);
        assert!(result.number("max_retry_ms") <= longest, "{result:?}");
    }
}

/// `docs/design.md#time`: with client clocks an hour apart, one token bucket stays within its
/// bound, every process is served (a client-clock engine would lock the process
/// whose clock is behind out for hours), and no refusal asks for more than one
/// emission interval (1/rate = 5 ms; 100 ms allowed).
#[test]
fn a_token_bucket_ignores_a_skewed_clock() {
    if child::role().is_some() {
        return worker();
    }
    require_faketime();
    let server = RedisServer::start();
    let duration = Duration::from_secs(3);
    let run = run_workers(
        "a_token_bucket_ignores_a_skewed_clock",
        &server,
        BUCKET_RULE,
        duration,
        &skewed_workers(),
    );
    assert_clocks_were_skewed(&run);
    run.assert_no_errors();
    assert_within_gcra_bound(&run, duration);
    for result in &run.results {
        assert!(result.number("admitted") > 0, "{result:?}");
        assert!(result.number("max_retry_ms") <= 100, "{result:?}");
    }
}

/// 4 processes × 32 tasks take two limiters as one group: exactly the tight
/// limiter's 100 groups are admitted, and the loose limiter holds exactly those 100
/// units (the group is one script, `docs/design.md#groups`).
#[test]
fn a_group_is_all_or_nothing_across_processes() {
    if child::role().is_some() {
        return groups::worker();
    }
    let server = RedisServer::start();
    groups::check_across_processes(
        "a_group_is_all_or_nothing_across_processes",
        &format!("engine = \"redis\"\nurl = \"{}\"", server.url()),
    );
}

/// The same on a Cluster, where the two limiters' keys live in different slots: the
/// group is reserved member by member and refunded, and still exact.
#[test]
fn a_group_across_cluster_slots_is_all_or_nothing_across_processes() {
    if child::role().is_some() {
        return groups::worker();
    }
    let cluster = RedisCluster::start(3);
    groups::check_across_processes(
        "a_group_across_cluster_slots_is_all_or_nothing_across_processes",
        &format!(
            "engine = \"redis\"\nurl = \"{}\"\ncluster = true",
            cluster.url()
        ),
    );
}
