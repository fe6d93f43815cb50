//! Distributed correctness on one PostgreSQL (`docs/design.md#distributed-tests`,
//! `docs/design.md#fault-tests`): several OS processes with many tasks each hammer one
//! limiter. A sliding window admits exactly `limit` in total; a token bucket stays
//! within `burst + rate·t`; nothing errors (no lock errors under contention). Also:
//! many processes creating the schema at once (`auto_create`), a database restart in
//! the middle of the load (every process recovers without a restart), and a long-held
//! lease that is renewed while its holder lives and returns within `lease_ttl` once the
//! holder is killed.
//!
//! The worker processes are this test binary run again in a child role (see
//! `support::child`), so no extra binary is needed.

#![cfg(feature = "postgres")]

mod support;

use std::time::{Duration, Instant};

use ratesync::{AcquireError, Config, DeniedBy, Registry, StoreBuilder};
use support::child::{self, ChildProcess, Results, Run, Spawn};
use support::{runtime, PostgresServer, Tally};

const PROCESSES: usize = 4;
const TASKS_PER_PROCESS: usize = 32;

fn registry_from_env() -> Registry {
    let table = std::env::var("TABLE").unwrap_or_else(|_| "rate_limiter_state".to_owned());
    let config = Config::builder()
        .store(
            "s",
            StoreBuilder::postgres(&child::env("PG_URL"))
                .option("auto_create", true)
                .option("table_name", table.as_str()),
        )
        .limiter("shared", child::rule_limiter(&child::env("RULE")))
        .build()
        .unwrap();
    Registry::from_config(config).unwrap()
}

/// A worker process: builds its own registry from the environment, connects,
/// reports READY, waits for the go, then runs its tasks for the duration and
/// reports what they saw. `late_admitted` counts admissions in the last
/// `LATE_MS` (after a restart of the database, they show recovery).
fn worker() {
    runtime().block_on(async {
        let registry = registry_from_env();
        let limiter = registry.limiter("shared").unwrap();
        let create_at_go = std::env::var("CREATE_AT_GO").is_ok();
        if !create_at_go {
            // Connected, schema in place, nothing consumed.
            limiter.state().await.expect("the store answers");
        }
        let duration = Duration::from_millis(child::env("DURATION_MS").parse().unwrap());
        let late = Duration::from_millis(
            std::env::var("LATE_MS")
                .ok()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(0),
        );
        tokio::task::spawn_blocking(child::ready_then_wait_for_go)
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + duration;
        let late_from = deadline - late;
        let tasks: Vec<_> = (0..TASKS_PER_PROCESS)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    let mut seen = Tally::default();
                    while tokio::time::Instant::now() < deadline {
                        match limiter.try_acquire().await {
                            Ok(_) => {
                                seen.admitted += 1;
                                if tokio::time::Instant::now() >= late_from {
                                    seen.late += 1;
                                }
                            }
                            Err(AcquireError::Denied { .. }) => seen.denied += 1,
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
            ("late_admitted", total.late.to_string()),
            ("denied", total.denied.to_string()),
            ("errors", total.errors.to_string()),
            ("first_error", total.first_error.unwrap_or_default()),
        ]);
    });
}

/// A lease holder: takes the only slot, says READY, holds it until killed (the
/// limiter renews the lease in the background).
fn holder() {
    runtime().block_on(async {
        let registry = registry_from_env();
        let limiter = registry.limiter("shared").unwrap();
        let _permit = limiter.try_acquire().await.expect("the slot is free");
        child::announce_ready();
        std::future::pending::<()>().await;
    });
}

fn play_role() -> bool {
    match child::role().as_deref() {
        Some("worker") => worker(),
        Some("holder") => holder(),
        Some(other) => panic!("unknown role {other}"),
        None => return false,
    }
    true
}

/// Starts `processes` workers running `test` against `server`, lets them go at
/// once, runs `during` (a fault) while they work, and collects their reports.
fn run_workers(
    test: &str,
    server: &PostgresServer,
    processes: usize,
    env: &[(&'static str, String)],
    duration: Duration,
    during: impl FnOnce(),
) -> Run {
    // Under plain `cargo test` the tests of this file share a process and would
    // run at once; their load would then skew each other's numbers. (nextest
    // runs them alone: .config/nextest.toml.)
    static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_RUN_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut children: Vec<ChildProcess> = (0..processes)
        .map(|_| {
            let mut vars = vec![
                ("PG_URL", server.url()),
                ("DURATION_MS", duration.as_millis().to_string()),
            ];
            vars.extend(env.iter().cloned());
            ChildProcess::spawn(Spawn {
                test,
                role: "worker",
                env: vars,
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
        .map(|child| child.result(duration + Duration::from_secs(60)))
        .collect();
    let span = started.elapsed();
    eprintln!("{env:?} over {span:?}:");
    for result in &results {
        eprintln!("  {:?}", result.0);
    }
    Run { results, span }
}

fn rule(rule: &str) -> Vec<(&'static str, String)> {
    vec![("RULE", rule.to_owned())]
}

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one sliding window:
/// exactly `limit` in total.
#[test]
fn a_sliding_window_admits_exactly_its_limit_across_processes() {
    if play_role() {
        return;
    }
    let server = PostgresServer::start();
    let run = run_workers(
        "a_sliding_window_admits_exactly_its_limit_across_processes",
        &server,
        PROCESSES,
        &rule("window:500:3600"),
        Duration::from_secs(2),
        || {},
    );
    run.assert_no_errors();
    assert_eq!(run.total("admitted"), 500);
    assert!(
        run.total("denied") > 500,
        "the callers asked far more often than the limit allows"
    );
}

/// `docs/design.md#distributed-tests`: 4 processes × 32 tasks on one token bucket
/// (200/s after a burst of 100): within `burst + rate·t`, and near it.
#[test]
fn a_token_bucket_stays_within_its_bound_across_processes() {
    if play_role() {
        return;
    }
    let server = PostgresServer::start();
    let duration = Duration::from_secs(3);
    let run = run_workers(
        "a_token_bucket_stays_within_its_bound_across_processes",
        &server,
        PROCESSES,
        &rule("bucket:200:100"),
        duration,
        || {},
    );
    run.assert_no_errors();
    let admitted = run.total("admitted") as f64;
    let upper = 100.0 + (200.0 * run.span.as_secs_f64()).floor();
    let lower = 100.0 + 200.0 * (duration.as_secs_f64() - 0.5);
    assert!(admitted <= upper, "{admitted} admitted: above {upper}");
    assert!(admitted >= lower, "{admitted} admitted: below {lower}");
}

/// `auto_create` from 8 processes at once, on a table nobody has created: every
/// process gets its answer, none sees an error, and the limit holds across them.
#[test]
fn many_processes_create_the_schema_at_once() {
    if play_role() {
        return;
    }
    let server = PostgresServer::start();
    let mut env = rule("window:100:3600");
    env.push(("TABLE", "created_at_once".to_owned()));
    env.push(("CREATE_AT_GO", "1".to_owned()));
    let run = run_workers(
        "many_processes_create_the_schema_at_once",
        &server,
        8,
        &env,
        Duration::from_secs(1),
        || {},
    );
    if run.total("errors") > 0 {
        eprintln!("server log:\n{}", server.log());
    }
    run.assert_no_errors();
    assert_eq!(run.total("admitted"), 100);
    assert_eq!(
        server.psql("SELECT count(*) FROM pg_class WHERE relname = 'created_at_once'"),
        "1"
    );
}

/// `docs/design.md#fault-tests`: the database restarts (crash: immediate shutdown, recovery) in the
/// middle of the load: calls fail during the outage (fail-closed: errors, within
/// their deadline), and every process decides again afterwards, without a
/// restart of its own.
#[test]
fn every_process_recovers_from_a_database_restart() {
    if play_role() {
        return;
    }
    let server = PostgresServer::start();
    let mut env = rule("bucket:1000:100");
    env.push(("LATE_MS", "2500".to_owned()));
    let run = run_workers(
        "every_process_recovers_from_a_database_restart",
        &server,
        PROCESSES,
        &env,
        Duration::from_secs(8),
        || {
            std::thread::sleep(Duration::from_millis(1500));
            server.restart();
        },
    );
    for (i, result) in run.results.iter().enumerate() {
        assert!(
            result.number("late_admitted") > 0,
            "worker {i} did not recover: {result:?}"
        );
    }
    // The outage was seen (the restart really happened) ...
    assert!(run.total("errors") > 0, "no call failed during the restart");
    // ... and the bucket held across it.
    let upper = 100.0 + (1000.0 * run.span.as_secs_f64()).floor();
    assert!(run.total("admitted") as f64 <= upper);
}

/// `docs/design.md#concurrency`: a lease held far longer than `lease_ttl` is renewed
/// while its holder lives (the slot stays taken), and returns within `lease_ttl` once
/// the holder is killed without releasing.
#[test]
fn a_killed_holders_slot_returns_within_the_lease_ttl() {
    if play_role() {
        return;
    }
    let server = PostgresServer::start();
    let lease_rule = "lease:1:1.5";
    let mut holder = ChildProcess::spawn(Spawn {
        test: "a_killed_holders_slot_returns_within_the_lease_ttl",
        role: "holder",
        env: vec![("PG_URL", server.url()), ("RULE", lease_rule.to_owned())],
        wrapper: Vec::new(),
    });
    holder.wait_ready(Duration::from_secs(60));
    runtime().block_on(async {
        let config = Config::builder()
            .store(
                "s",
                StoreBuilder::postgres(&server.url()).option("auto_create", true),
            )
            .limiter("shared", child::rule_limiter(lease_rule))
            .build()
            .unwrap();
        let registry = Registry::from_config(config).unwrap();
        let limiter = registry.limiter("shared").unwrap();
        // Held for 4 s, well past the 1.5 s ttl: renewed, never free.
        let until = tokio::time::Instant::now() + Duration::from_secs(4);
        while tokio::time::Instant::now() < until {
            match limiter.try_acquire().await {
                Err(AcquireError::Denied { decision, .. }) => {
                    assert_eq!(decision.denied_by(), Some(DeniedBy::Concurrency));
                }
                other => panic!("the held slot was taken: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        holder.kill();
        let killed = tokio::time::Instant::now();
        loop {
            match limiter.try_acquire().await {
                Ok(_) => break,
                Err(AcquireError::Denied { .. }) => {
                    assert!(
                        killed.elapsed() < Duration::from_millis(1500 + 500),
                        "the slot did not return within the lease ttl"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(other) => panic!("{other}"),
            }
        }
        eprintln!("slot back {:?} after the kill", killed.elapsed());
    });
}

/// 4 processes × 32 tasks take two limiters as one group: exactly the tight
/// limiter's 100 groups are admitted, and the loose limiter holds exactly those 100
/// units (the group is one function call, one transaction, `docs/design.md#groups`).
#[test]
fn a_group_is_all_or_nothing_across_processes() {
    if child::role().is_some() {
        return support::groups::worker();
    }
    let server = PostgresServer::start();
    support::groups::check_across_processes(
        "a_group_is_all_or_nothing_across_processes",
        &format!(
            "engine = \"postgres\"\nurl = \"{}\"\nauto_create = true",
            server.url()
        ),
    );
}
