//! Faults of a real Redis (`docs/design.md#fault-tests`,
//! `docs/design.md#failure-policy`): a server absent at start, killed under load,
//! restarted or flushed (script cache gone), made slow, failed over by Sentinel, and a
//! lease holder that dies. Each limiter follows its failure policy within its deadline
//! (`socket_timeout`), the same registry recovers by itself, and no concurrency slot
//! leaks.
//!
//! Every test starts its own servers on free ports (they are killed and
//! restarted); without `redis-server` the tests skip loudly (fail under `CI=true`).

#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ratesync::engine::redis::RedisEngine;
use ratesync::store::StoreError;
use ratesync::{AcquireError, Config, DeniedBy, Limiter, LimiterBuilder, Registry, StoreBuilder};
use support::child::{self, ChildProcess, Spawn};
use support::{Failover, RedisSentinel, RedisServer};
use tokio::time::Instant;

/// `socket_timeout` of the stores under test, in seconds.
const SOCKET_TIMEOUT: f64 = 0.5;

/// The longest a call may take while the store fails: its deadline plus half a
/// second for a busy 2-core machine to schedule the caller again. A call that
/// waited for the default 5 s connect timeout, or retried, would exceed it.
const DEADLINE: Duration = Duration::from_millis(500 + 500);

/// How long a limiter may take to decide again once its store is back: the
/// circuit breaker's background probe backs off from 0.5 s; reconnecting takes a
/// round trip. Ten seconds is far above both, and still fails a client that
/// never reconnects.
const RECOVERY: Duration = Duration::from_secs(10);

/// A registry of `limiters` on one Redis store `s` at `store`, each call bounded
/// by [`SOCKET_TIMEOUT`].
fn registry_on(store: StoreBuilder, limiters: Vec<(&str, LimiterBuilder)>) -> Registry {
    let store = store
        .option("socket_timeout", SOCKET_TIMEOUT)
        .option("socket_connect_timeout", SOCKET_TIMEOUT);
    let mut config = Config::builder().store("s", store);
    for (name, limiter) in limiters {
        config = config.limiter(name, limiter);
    }
    Registry::from_config(config.build().expect("valid configuration"))
        .expect("a registry builds without connecting")
}

fn registry(url: &str, limiters: Vec<(&str, LimiterBuilder)>) -> Registry {
    registry_on(StoreBuilder::redis(url), limiters)
}

/// One unit per ~17 minutes: after its first admission, a limiter of this rate
/// refuses, so a refusal proves the store decided (fail-open never refuses).
fn strict() -> LimiterBuilder {
    LimiterBuilder::token_bucket("s", 0.001)
}

/// Far above anything the tests reach: every decision admits.
fn generous() -> LimiterBuilder {
    LimiterBuilder::token_bucket("s", 1e6).burst(1_000_000)
}

fn is_unavailable(result: &Result<ratesync::Permit, AcquireError>) -> bool {
    matches!(result, Err(AcquireError::StoreUnavailable { .. }))
}

/// Retries `limiter` until the store decides again (admits or refuses), within
/// [`RECOVERY`]; returns what it decided.
async fn until_the_store_decides(limiter: &Limiter) -> Result<ratesync::Permit, AcquireError> {
    let started = Instant::now();
    loop {
        let result = limiter.try_acquire().await;
        if !is_unavailable(&result) {
            return result;
        }
        assert!(
            started.elapsed() < RECOVERY,
            "`{}` still fails {RECOVERY:?} after the store came back: {}",
            limiter.name(),
            result.unwrap_err()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A call and how long it took.
async fn timed<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = call.await;
    (out, started.elapsed())
}

/// `docs/design.md#failure-policy`: no server at start: fail-open admits and
/// fail-closed errors, each within the deadline; once the server starts, the same
/// registry decides again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_absent_at_start_is_survived_and_used_once_it_starts() {
    support::require_binaries(support::REDIS_BINARIES);
    let server = RedisServer::not_started();
    let reg = registry(
        &server.url(),
        vec![("open", strict()), ("closed", strict().fail_closed(true))],
    );
    let (open, closed) = (reg.limiter("open").unwrap(), reg.limiter("closed").unwrap());

    for _ in 0..3 {
        let (result, took) = timed(open.try_acquire()).await;
        result.expect("fail-open admits while the store is absent");
        assert!(took <= DEADLINE, "fail-open took {took:?}");
        let (result, took) = timed(closed.try_acquire()).await;
        assert!(is_unavailable(&result), "{result:?}");
        assert!(took <= DEADLINE, "fail-closed took {took:?}");
    }
    // `acquire` without a timeout must not wait for the store forever either.
    let (result, took) = timed(closed.acquire()).await;
    assert!(is_unavailable(&result), "{result:?}");
    assert!(took <= DEADLINE, "fail-closed acquire took {took:?}");

    server.restart();
    until_the_store_decides(&closed)
        .await
        .expect("a fresh key is admitted");
    let refusal = closed.try_acquire().await.unwrap_err();
    assert!(refusal.is_rate_limited(), "the store decides: {refusal}");
    // The fail-open limiter decides again too: its first real decision admits,
    // and a refusal follows (fail-open would have admitted).
    let started = Instant::now();
    while open.try_acquire().await.is_ok() {
        assert!(
            started.elapsed() < RECOVERY,
            "fail-open never decided again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `docs/design.md#failure-policy`: a "server" that accepts connections and never
/// answers (a hung host, a listener whose process is stopped): the connection handshake
/// itself must be bounded by the deadline, not only calls on a live connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_bounded_by_the_deadline() {
    // The kernel completes TCP handshakes for a listener nobody accepts from.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let reg = registry(
        &url,
        vec![("open", strict()), ("closed", strict().fail_closed(true))],
    );
    let (open, closed) = (reg.limiter("open").unwrap(), reg.limiter("closed").unwrap());
    for _ in 0..2 {
        let (result, took) = timed(closed.try_acquire()).await;
        assert!(is_unavailable(&result), "{result:?}");
        assert!(took <= DEADLINE, "fail-closed took {took:?}");
        let (result, took) = timed(open.try_acquire()).await;
        result.expect("fail-open admits while the store does not answer");
        assert!(took <= DEADLINE, "fail-open took {took:?}");
    }
}

/// What one caller saw during [`a_server_killed_under_load_is_survived`].
#[derive(Default)]
struct Outcomes {
    admitted: u64,
    unavailable: u64,
    /// Anything else: a refusal of a limiter that cannot refuse, another error.
    unexpected: Vec<String>,
    slowest: Duration,
    /// When the last call that failed returned.
    last_failure: Option<Instant>,
}

/// `docs/design.md#fault-tests`: a server killed while 16 tasks hammer it: fail-open
/// callers keep being admitted, fail-closed ones get "store unavailable", no call
/// outlasts the deadline, and both decide again soon after the server is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_is_survived() {
    let server = RedisServer::start();
    let reg = registry(
        &server.url(),
        vec![
            ("open", generous()),
            ("closed", generous().fail_closed(true)),
        ],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Vec<Arc<Mutex<Outcomes>>> = (0..2).map(|_| Default::default()).collect();
    let mut tasks = Vec::new();
    for task in 0..16 {
        let limiter = reg
            .limiter(if task % 2 == 0 { "open" } else { "closed" })
            .unwrap();
        let (stop, seen) = (stop.clone(), outcomes[task % 2].clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let (result, took) = timed(limiter.try_acquire()).await;
                {
                    let mut seen = seen.lock().unwrap();
                    seen.slowest = seen.slowest.max(took);
                    match result {
                        Ok(_) => seen.admitted += 1,
                        Err(AcquireError::StoreUnavailable { .. }) => {
                            seen.unavailable += 1;
                            seen.last_failure = Some(Instant::now());
                        }
                        Err(other) => seen.unexpected.push(other.to_string()),
                    }
                }
                // Paces the loop: with the circuit open, failures are instant.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }));
    }

    let fail_open_admitted = || outcomes[0].lock().unwrap().admitted;
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.kill();
    let admitted_before = fail_open_admitted();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let admitted_during = fail_open_admitted() - admitted_before;
    server.restart();
    let restarted = Instant::now();
    // Runs on until the fail-closed callers have decided for a full second.
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let last_failure = outcomes[1].lock().unwrap().last_failure;
        if last_failure.is_some_and(|at| at.elapsed() >= Duration::from_secs(1)) {
            break;
        }
        assert!(
            restarted.elapsed() < RECOVERY,
            "fail-closed callers still fail {RECOVERY:?} after the restart"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    let (open, closed) = (outcomes[0].lock().unwrap(), outcomes[1].lock().unwrap());
    assert!(
        open.unexpected.is_empty(),
        "fail-open: {:?}",
        open.unexpected
    );
    assert_eq!(open.unavailable, 0, "fail-open never reports an outage");
    assert!(
        admitted_before > 0 && admitted_during > 0 && open.admitted > admitted_before + admitted_during,
        "fail-open admitted before ({admitted_before}), during ({admitted_during}) and after the outage"
    );
    assert!(
        closed.unexpected.is_empty(),
        "fail-closed: {:?}",
        closed.unexpected
    );
    assert!(closed.unavailable > 0, "the outage was seen");
    assert!(closed.admitted > 0);
    for (policy, seen) in [("fail-open", &open), ("fail-closed", &closed)] {
        assert!(
            seen.slowest <= DEADLINE,
            "{policy}: a call took {:?}",
            seen.slowest
        );
    }
}

/// `docs/design.md#redis`: the function library is loaded again when the server has
/// lost it: after `FUNCTION FLUSH` every operation works at once, without an error
/// and with its state intact; after a restart (state and library gone) decisions
/// start afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_function_library_is_loaded_again_transparently() {
    lost_code_is_restored(Form::Functions).await;
}

/// `docs/design.md#redis`: on a server without functions, scripts run by EVALSHA are
/// sent again on NOSCRIPT: the same history after `SCRIPT FLUSH`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_script_cache_is_refilled_transparently() {
    lost_code_is_restored(Form::Scripts).await;
}

/// How the engine runs its Lua, and how the server loses it.
#[derive(Clone, Copy)]
enum Form {
    Functions,
    Scripts,
}

async fn lost_code_is_restored(form: Form) {
    let server = RedisServer::start();
    let store = StoreBuilder::redis(&server.url())
        .option("socket_timeout", SOCKET_TIMEOUT)
        .option("socket_connect_timeout", SOCKET_TIMEOUT);
    let engine = RedisEngine::new(&support::redis_config(store.clone())).unwrap();
    let (engine, flush) = match form {
        Form::Functions => (engine, ["FUNCTION", "FLUSH"]),
        Form::Scripts => (engine.without_functions(), ["SCRIPT", "FLUSH"]),
    };
    let config = Config::builder()
        .store("s", store)
        .limiter("bucket", strict().burst(3).fail_closed(true))
        .limiter(
            "window",
            LimiterBuilder::sliding_window("s", 3, 3600.0).fail_closed(true),
        )
        .limiter("slots", generous().max_concurrent(1).fail_closed(true))
        .build()
        .expect("valid configuration");
    let reg = Registry::builder(config)
        .engine("s", Arc::new(engine))
        .build()
        .expect("a registry builds without connecting");
    let (bucket, window, slots) = (
        reg.limiter("bucket").unwrap(),
        reg.limiter("window").unwrap(),
        reg.limiter("slots").unwrap(),
    );
    let flush = || assert_eq!(server.cli(&flush), "OK");
    let remaining = |p: ratesync::Permit| p.decision().remaining();

    assert_eq!(remaining(bucket.try_acquire().await.unwrap()), 2);
    assert_eq!(remaining(window.try_acquire().await.unwrap()), 2);
    flush();
    assert_eq!(remaining(bucket.try_acquire().await.unwrap()), 1);
    flush();
    assert_eq!(remaining(window.try_acquire().await.unwrap()), 1);
    flush();
    assert_eq!(bucket.state().await.unwrap().remaining(), 1, "peek");
    flush();
    let permit = slots.try_acquire().await.unwrap();
    flush();
    permit.release().await;
    let permit = slots
        .try_acquire()
        .await
        .expect("the release after a flush gave the slot back");
    flush();
    bucket.reset().await.unwrap();
    assert_eq!(remaining(bucket.try_acquire().await.unwrap()), 2, "reset");
    drop(permit);

    server.restart();
    let first = until_the_store_decides(&window).await;
    assert_eq!(
        remaining(first.expect("an empty server admits")),
        2,
        "state is gone with the restart: the window starts afresh"
    );
    assert_eq!(remaining(bucket.try_acquire().await.unwrap()), 2);
    let loaded = server.cli(&["FUNCTION", "LIST"]);
    match form {
        Form::Functions => assert!(loaded.contains("ratesync_"), "loaded: {loaded}"),
        Form::Scripts => assert!(!loaded.contains("ratesync_"), "loaded: {loaded}"),
    }
}

/// `docs/design.md#failure-policy`: a server stalled by `DEBUG SLEEP 2` while
/// `socket_timeout` is 0.5 s: fail-closed calls fail with a timeout and fail-open calls
/// admit, both within the deadline; once the server answers again, replies are not
/// mixed up (a late reply to a timed-out call is never taken for the answer to a new
/// one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_server_is_bounded_by_the_socket_timeout() {
    let server = RedisServer::start();
    let reg = registry(
        &server.url(),
        vec![
            ("open", strict()),
            ("closed", strict().fail_closed(true)),
            ("after", strict().burst(5).fail_closed(true)),
            (
                "after_window",
                LimiterBuilder::sliding_window("s", 5, 3600.0).fail_closed(true),
            ),
        ],
    );
    let (open, closed) = (reg.limiter("open").unwrap(), reg.limiter("closed").unwrap());
    // Connected, scripts loaded: the stall below is the only thing in the way.
    closed.try_acquire().await.unwrap();

    let mut sleeper = server.cli_spawn(&["DEBUG", "SLEEP", "2"]);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (result, took) = timed(closed.try_acquire()).await;
    assert!(
        matches!(
            &result,
            Err(AcquireError::StoreUnavailable {
                source: StoreError::Timeout(_),
                ..
            })
        ),
        "{result:?}"
    );
    assert!(
        took >= Duration::from_secs_f64(SOCKET_TIMEOUT) - Duration::from_millis(50)
            && took <= DEADLINE,
        "fail-closed gave up after {took:?}"
    );
    let (result, took) = timed(open.try_acquire()).await;
    result.expect("fail-open admits while the store is slow");
    assert!(took <= DEADLINE, "fail-open took {took:?}");
    let sleep_ended = tokio::task::spawn_blocking(move || sleeper.wait())
        .await
        .unwrap();
    assert!(sleep_ended.unwrap().success(), "DEBUG SLEEP ran");

    let (after, window) = (
        reg.limiter("after").unwrap(),
        reg.limiter("after_window").unwrap(),
    );
    let first = until_the_store_decides(&after).await.unwrap();
    let mut expected = vec![first.decision().remaining()];
    let mut got = vec![first.decision().remaining()];
    for n in 1..5u64 {
        got.push(after.try_acquire().await.unwrap().decision().remaining());
        got.push(window.try_acquire().await.unwrap().decision().remaining());
        expected.push(4 - n);
        expected.push(5 - n);
    }
    assert_eq!(got, expected, "each reply answers its own call");
    assert!(after.try_acquire().await.unwrap_err().is_rate_limited());
}

/// The lease holder of [`a_killed_holders_slot_returns_within_lease_ttl`], in a
/// child process: takes the slot, says so, and holds it (renewed) until killed.
async fn hold_a_slot() {
    let reg = registry(&child::env("REDIS_URL"), vec![("slots", holder_limiter())]);
    let _permit = reg
        .limiter("slots")
        .unwrap()
        .try_acquire()
        .await
        .expect("the slot is free");
    child::announce_ready();
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Lease TTL of the limiter of [`a_killed_holders_slot_returns_within_lease_ttl`].
const LEASE_TTL: Duration = Duration::from_secs(1);

fn holder_limiter() -> LimiterBuilder {
    generous()
        .max_concurrent(1)
        .lease_ttl(LEASE_TTL.as_secs_f64())
        .fail_closed(true)
}

/// `docs/design.md#concurrency`, `docs/design.md#fault-tests`: a holder killed with
/// SIGKILL (no release, no more renewals) loses its slot at most `lease_ttl` later;
/// while it lived, renewals kept it held across several TTLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holders_slot_returns_within_lease_ttl() {
    if child::role().is_some() {
        return hold_a_slot().await;
    }
    let server = RedisServer::start();
    let mut holder = ChildProcess::spawn(Spawn {
        test: "a_killed_holders_slot_returns_within_lease_ttl",
        role: "holder",
        env: vec![("REDIS_URL", server.url())],
        wrapper: vec![],
    });
    holder.wait_ready(Duration::from_secs(30));
    let reg = registry(&server.url(), vec![("slots", holder_limiter())]);
    let slots = reg.limiter("slots").unwrap();

    // 2.5 TTLs: only renewals by the living holder keep the slot taken.
    let held_until = Instant::now() + LEASE_TTL * 5 / 2;
    while Instant::now() < held_until {
        let refusal = slots.try_acquire().await.unwrap_err();
        assert_eq!(
            refusal.decision().and_then(|d| d.denied_by()),
            Some(DeniedBy::Concurrency),
            "the living holder keeps its slot: {refusal}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    holder.kill();
    let (permit, waited) = timed(slots.key("").timeout(Some(LEASE_TTL * 5)).acquire()).await;
    permit.expect("the dead holder's slot comes back");
    // Its last renewal was before the kill, so its lease ends within one TTL of
    // it; the slack covers the waiter's wake-up on a busy machine.
    assert!(
        waited <= LEASE_TTL + Duration::from_millis(500),
        "the slot came back after {waited:?}"
    );
}

/// `docs/design.md#redis`: through Sentinel, the engine follows the master: after an orderly
/// `SENTINEL FAILOVER` (the old master turns replica and refuses writes) and after
/// the master is killed, decisions go to the new master within [`RECOVERY`]. The
/// sentinels are given once as a `sentinels` list and once in a
/// `redis+sentinel://` URL naming all three and the master.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_failover_is_followed() {
    for (how, sentinels) in [(Failover::Command, 1), (Failover::KillMaster, 3)] {
        let ha = RedisSentinel::start(true, sentinels);
        let store = match how {
            Failover::Command => StoreBuilder::redis(&ha.url())
                .option("sentinels", ha.sentinel_addresses())
                .option("sentinel_master", ha.master_name()),
            Failover::KillMaster => StoreBuilder::redis(&format!(
                "redis+sentinel://{}/{}",
                ha.sentinel_addresses().join(","),
                ha.master_name()
            )),
        };
        let reg = registry_on(
            store,
            vec![(
                "window",
                LimiterBuilder::sliding_window("s", 1000, 3600.0).fail_closed(true),
            )],
        );
        let window = reg.limiter("window").unwrap();
        window
            .try_acquire()
            .await
            .expect("decides through the first master");
        let old = ha.master_port();
        let new = tokio::task::spawn_blocking(move || (ha.failover(how), ha))
            .await
            .unwrap();
        let (new_port, ha) = new;
        assert_ne!(new_port, old);
        // Writes to the old master fail (it is gone, or a read-only replica), so
        // a decision proves the engine asked the Sentinels again.
        until_the_store_decides(&window)
            .await
            .unwrap_or_else(|e| panic!("{how:?}: decides after the failover: {e}"));
        drop(ha);
    }
}
