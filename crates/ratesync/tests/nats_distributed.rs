//! Distributed correctness on one NATS server (`docs/design.md#distributed-tests`):
//! several OS processes with many tasks each hammer one key. A sliding window admits
//! exactly `limit` in total; a token bucket stays within `burst + rate·t`; nothing
//! errors. Then a server restart in the middle of the load, and a hot key whose
//! compare-and-set conflicts per decision must stay bounded.
//!
//! The worker processes are this test binary run again in a child role (see
//! `support::child`), so no extra binary is needed. Hostile identifiers, token
//! auth, a server list and concurrent bucket creation are in nats_engine.rs.

#![cfg(feature = "nats")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratesync::engine::nats::NatsEngine;
use ratesync::{AcquireError, Config, Registry, StoreBuilder};
use support::child::{self, ChildProcess, Results, Run, Spawn};
use support::{NatsServer, Tally};

const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 32;

/// A worker process: its own engine and registry, READY, the go, then its tasks
/// for the duration; reports what they saw and the engine's CAS counts.
fn worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = StoreBuilder::nats(&child::env("NATS_URL")).option("auto_create", true);
        let engine = NatsEngine::new(&support::nats_config(store.clone())).unwrap();
        let config = Config::builder()
            .store("s", store)
            .limiter("shared", child::rule_limiter(&child::env("RULE")))
            .build()
            .unwrap();
        let registry = Registry::builder(config)
            .engine("s", Arc::new(engine.clone()))
            .build()
            .unwrap();
        let limiter = registry.limiter("shared").unwrap();
        limiter.state().await.expect("the store answers");
        let duration = Duration::from_millis(child::env("DURATION_MS").parse().unwrap());
        let pause = Duration::from_millis(child::env("PAUSE_MS").parse().unwrap());
        // Admissions after this point (ms after the go) are counted apart: the
        // restart test asks whether decisions resumed.
        let late_after = Duration::from_millis(child::env("LATE_MS").parse().unwrap());
        let before = engine.cas_stats();

        tokio::task::spawn_blocking(child::ready_then_wait_for_go)
            .await
            .unwrap();
        let go = tokio::time::Instant::now();
        let deadline = go + duration;
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut seen = Tally::default();
                    while tokio::time::Instant::now() < deadline {
                        match limiter.try_acquire().await {
                            Ok(_) => {
                                seen.admitted += 1;
                                if go.elapsed() >= late_after {
                                    seen.late += 1;
                                }
                            }
                            Err(AcquireError::Denied { .. }) => seen.denied += 1,
                            Err(other) => seen.error(other),
                        }
                        tokio::time::sleep(pause).await;
                    }
                    seen
                })
            })
            .collect();
        let mut total = Tally::default();
        for task in tasks {
            total.add(task.await.unwrap());
        }
        let after = engine.cas_stats();
        child::report(&[
            ("admitted", total.admitted.to_string()),
            ("late", total.late.to_string()),
            ("denied", total.denied.to_string()),
            ("errors", total.errors.to_string()),
            (
                "decisions",
                (after.decisions - before.decisions).to_string(),
            ),
            (
                "conflicts",
                (after.conflicts - before.conflicts).to_string(),
            ),
            ("first_error", total.first_error.unwrap_or_default()),
        ]);
    });
}

struct Load<'a> {
    test: &'a str,
    rule: &'a str,
    duration: Duration,
    /// Pause of each task between attempts.
    pause: Duration,
    late_after: Duration,
}

/// Starts `PROCESSES` workers, lets them go at once, runs `during` (on this
/// thread) while they work, and collects their reports.
fn run_workers(server: &NatsServer, load: Load<'_>, during: impl FnOnce()) -> Run {
    static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut children: Vec<ChildProcess> = (0..PROCESSES)
        .map(|_| {
            ChildProcess::spawn(Spawn {
                test: load.test,
                role: "worker",
                env: vec![
                    ("NATS_URL", server.url()),
                    ("RULE", load.rule.to_owned()),
                    ("DURATION_MS", load.duration.as_millis().to_string()),
                    ("PAUSE_MS", load.pause.as_millis().to_string()),
                    ("LATE_MS", load.late_after.as_millis().to_string()),
                ],
                wrapper: Vec::new(),
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
    during();
    let results: Vec<Results> = children
        .iter_mut()
        .map(|child| child.result(load.duration + Duration::from_secs(60)))
        .collect();
    let span = started.elapsed();
    eprintln!("{} over {span:?}:", load.rule);
    for result in &results {
        eprintln!("  {:?}", result.0);
    }
    Run { results, span }
}

const LIMIT: u32 = 500;
const WINDOW_RULE: &str = "window:500:3600";
const RATE: f64 = 200.0;
const BURST: f64 = 100.0;
const BUCKET_RULE: &str = "bucket:200:100";

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one sliding window:
/// exactly `limit` in total.
#[test]
fn a_sliding_window_admits_exactly_its_limit_across_processes() {
    if child::role().is_some() {
        return worker();
    }
    let server = NatsServer::start();
    let run = run_workers(
        &server,
        Load {
            test: "a_sliding_window_admits_exactly_its_limit_across_processes",
            rule: WINDOW_RULE,
            duration: Duration::from_secs(2),
            pause: Duration::from_millis(2),
            late_after: Duration::from_secs(3600),
        },
        || {},
    );
    run.assert_no_errors();
    assert_eq!(run.total("admitted"), i128::from(LIMIT));
    assert!(run.total("denied") > i128::from(LIMIT));
}

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one token bucket:
/// within `burst + rate·t`, and near it (a unit is lost only when nobody asks for
/// `burst / rate` = 0.5 s).
#[test]
fn a_token_bucket_stays_within_its_bound_across_processes() {
    if child::role().is_some() {
        return worker();
    }
    let server = NatsServer::start();
    let duration = Duration::from_secs(3);
    let run = run_workers(
        &server,
        Load {
            test: "a_token_bucket_stays_within_its_bound_across_processes",
            rule: BUCKET_RULE,
            duration,
            pause: Duration::from_millis(2),
            late_after: Duration::from_secs(3600),
        },
        || {},
    );
    run.assert_no_errors();
    let admitted = run.total("admitted") as f64;
    // The clock estimate of each process may be off by its uncertainty (µs on
    // loopback); one extra unit covers it.
    let upper = BURST + (RATE * run.span.as_secs_f64()).floor() + 1.0;
    let lower = BURST + RATE * (duration.as_secs_f64() - 0.5);
    assert!(admitted <= upper, "{admitted} admitted: above {upper}");
    assert!(admitted >= lower, "{admitted} admitted: below {lower}");
}

/// `docs/design.md#fault-tests`: the server is killed mid-load and restarted (same
/// port, same store): the workers decide again once it is back (no restart of the
/// workers), and the window never admits more than its limit.
#[test]
fn decisions_resume_after_a_server_restart_mid_load() {
    if child::role().is_some() {
        return worker();
    }
    let server = NatsServer::start();
    let run = run_workers(
        &server,
        Load {
            test: "decisions_resume_after_a_server_restart_mid_load",
            rule: "window:100000:3600",
            duration: Duration::from_secs(8),
            pause: Duration::from_millis(20),
            late_after: Duration::from_millis(6500),
        },
        || {
            std::thread::sleep(Duration::from_millis(1500));
            server.kill();
            std::thread::sleep(Duration::from_millis(1500));
            server.restart();
        },
    );
    // Calls in flight while the server is down either fail within their deadline
    // or, when the client reconnects in time, are answered after the restart.
    eprintln!("errors during the outage: {}", run.total("errors"));
    for result in &run.results {
        assert!(
            result.number("late") > 0,
            "every worker decides again after the restart: {result:?}"
        );
    }
    assert!(run.total("admitted") <= 100_000);
}

/// Hot key: 4 processes × 32 tasks on one key that admits nearly everything, so
/// every decision writes. Compare-and-set conflicts per decision stay bounded (the
/// callers of one process take turns, so only the 4 processes contend) and no call
/// gives up.
#[test]
fn a_hot_key_keeps_conflicts_per_decision_bounded() {
    if child::role().is_some() {
        return worker();
    }
    let server = NatsServer::start();
    let run = run_workers(
        &server,
        Load {
            test: "a_hot_key_keeps_conflicts_per_decision_bounded",
            rule: "bucket:1000000:1000000",
            duration: Duration::from_secs(3),
            pause: Duration::from_millis(0),
            late_after: Duration::from_secs(3600),
        },
        || {},
    );
    run.assert_no_errors();
    let (decisions, conflicts) = (run.total("decisions"), run.total("conflicts"));
    let per_decision = conflicts as f64 / decisions as f64;
    eprintln!(
        "hot key: {decisions} decisions in {:?}, {conflicts} conflicts, {per_decision:.3} per decision",
        run.span
    );
    assert!(
        decisions > 1000,
        "throughput collapsed: {decisions} decisions"
    );
    assert!(
        per_decision < 3.0,
        "{per_decision:.3} conflicts per decision"
    );
}

/// 4 processes × 32 tasks take two limiters as one group: exactly the tight
/// limiter's 100 groups are admitted, and the loose limiter holds exactly those 100
/// units. NATS has no multi-key transaction: the group is reserved member by member
/// and refunded when the tight limiter refuses (`docs/design.md#groups`).
#[test]
fn a_group_is_all_or_nothing_across_processes() {
    if child::role().is_some() {
        return support::groups::worker();
    }
    let server = NatsServer::start();
    support::groups::check_across_processes(
        "a_group_is_all_or_nothing_across_processes",
        &format!(
            "engine = \"nats\"\nurl = \"{}\"\nauto_create = true",
            server.url()
        ),
    );
}
