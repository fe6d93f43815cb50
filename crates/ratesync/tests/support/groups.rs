//! All-or-nothing groups under contention, the same check for every engine
//! (`docs/design.md#groups`): callers take two limiters of one store together, as
//! one group, on one key:
//!
//! - `a`: a sliding window of 300 per 600 s, the loose limit;
//! - `b`: a sliding window of 100 per 600 s, the tight one.
//!
//! Every group `b` refuses must leave `a` untouched, whoever raced it. So after any
//! amount of hammering, exactly 100 groups were admitted, and `a` and `b` each hold
//! exactly those 100 units: a refused group that leaked into `a` shows as `a`
//! holding more than 100.
//!
//! For the network engines the callers are 4 OS processes × 32 tasks (this test
//! binary run again in the `group` role); for memory, 4 threads × 32 tasks.

use std::time::Duration;

use ratesync::{try_acquire_all, AcquireError, Config, Registry};

use super::child::{self, ChildProcess, Run, Spawn};
use super::Tally;

/// The role of a worker process.
pub const ROLE: &str = "group";

const PROCESSES: usize = 4;
const TASKS: usize = 32;
/// How long the callers hammer: long enough for every process to hit the limit
/// and keep retrying against it.
const DURATION: Duration = Duration::from_secs(2);

/// The limiters of the group, on store `s` (described by `store`, a `[stores.s]`
/// body).
pub fn config(store: &str) -> String {
    format!(
        "[stores.s]\n{store}\n\n\
         [limiters.a]\nstore = \"s\"\nalgorithm = \"sliding_window\"\nlimit = 300\n\
         window_seconds = 600\nfail_closed = true\n\n\
         [limiters.b]\nstore = \"s\"\nalgorithm = \"sliding_window\"\nlimit = 100\n\
         window_seconds = 600\nfail_closed = true\n"
    )
}

/// Hammers the group of `registry` with [`TASKS`] tasks for [`DURATION`].
pub async fn hammer(registry: &Registry) -> Tally {
    let deadline = tokio::time::Instant::now() + DURATION;
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (a, b) = (
                registry.limiter("a").unwrap(),
                registry.limiter("b").unwrap(),
            );
            tokio::spawn(async move {
                let mut seen = Tally::default();
                while tokio::time::Instant::now() < deadline {
                    match try_acquire_all(&[a.key("k"), b.key("k")]).await {
                        Ok(_) => seen.admitted += 1,
                        Err(failure) => match failure.error {
                            AcquireError::Denied { .. } => seen.denied += 1,
                            other => seen.error(other),
                        },
                    }
                    // Keeps 128 callers from starving the rest of a 2-core machine.
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
    total
}

/// In a child playing [`ROLE`]: builds the registry of `CONFIG_PATH`, connects,
/// reports ready, hammers on the go, reports its tally.
pub fn worker() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let registry = Registry::load(child::env("CONFIG_PATH")).unwrap();
        for limiter in registry.limiters() {
            limiter.key("k").state().await.expect("the store answers");
        }
        tokio::task::spawn_blocking(child::ready_then_wait_for_go)
            .await
            .unwrap();
        let tally = hammer(&registry).await;
        child::report(&[
            ("admitted", tally.admitted.to_string()),
            ("denied", tally.denied.to_string()),
            ("errors", tally.errors.to_string()),
            ("first_error", tally.first_error.unwrap_or_default()),
        ]);
    });
}

/// In the parent: runs the worker processes of `test` against the store described
/// by `store`, then checks the totals and what each limiter holds.
pub fn check_across_processes(test: &str, store: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rate-sync.toml");
    std::fs::write(&path, config(store)).unwrap();
    let mut children: Vec<ChildProcess> = (0..PROCESSES)
        .map(|_| {
            ChildProcess::spawn(Spawn {
                test,
                role: ROLE,
                env: vec![("CONFIG_PATH", path.display().to_string())],
                wrapper: Vec::new(),
            })
        })
        .collect();
    for child in &mut children {
        child.wait_ready(Duration::from_secs(60));
    }
    let started = std::time::Instant::now();
    for child in &mut children {
        child.go();
    }
    let results = children
        .iter_mut()
        .map(|child| child.result(DURATION + Duration::from_secs(60)))
        .collect();
    let run = Run {
        results,
        span: started.elapsed(),
    };
    eprintln!("groups: {:?}", run.results);
    run.assert_no_errors();
    let registry = Registry::from_config(Config::load(&path).unwrap()).unwrap();
    let (admitted, denied) = (run.total("admitted"), run.total("denied"));
    block_on(assert_held(&registry, admitted as u64, denied as u64));
}

/// In one process: 4 threads, each with its own runtime and [`TASKS`] tasks, on
/// `registry` (a memory store), then the same checks.
pub fn check_across_threads(registry: &Registry) {
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..PROCESSES)
            .map(|_| {
                scope.spawn(|| {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(hammer(registry))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for tally in &tallies {
        assert_eq!(tally.errors, 0, "first error: {:?}", tally.first_error);
    }
    let admitted = tallies.iter().map(|t| t.admitted).sum();
    let denied = tallies.iter().map(|t| t.denied).sum();
    block_on(assert_held(registry, admitted, denied));
}

/// Exactly 100 groups admitted, and each limiter holds exactly their units.
async fn assert_held(registry: &Registry, admitted: u64, denied: u64) {
    assert_eq!(admitted, 100, "groups admitted");
    assert!(denied > 100, "the callers kept trying against the limit");
    let held = |name: &'static str| async move {
        let state = registry
            .limiter(name)
            .unwrap()
            .key("k")
            .state()
            .await
            .unwrap();
        state.limit() - state.remaining()
    };
    assert_eq!(held("b").await, 100, "units of `b` taken");
    assert_eq!(
        held("a").await,
        100,
        "units of `a` taken: a refused group must consume nothing"
    );
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}
