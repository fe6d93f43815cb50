//! The Redis engine's Lua scripts against the reference math of `ratesync::algorithm`:
//! for the same rule, history and times, both give the same decisions (allowed,
//! remaining, retry-after, reset-after, denied-by), receipts, lease answers, refunds
//! and group outcomes.
//!
//! The scripts decide in microseconds and the reference in nanoseconds, so each rule
//! is built from whole microseconds (`interval_us * 1000`) and the reference decides
//! at `t_us * 1000` while the engine's clock is pinned to `t_us` (a test hook, feature
//! `testing`). Runs against a `redis-server` this file starts on a free port.

#![cfg(feature = "redis")]

mod reference;
mod support;

use std::sync::Arc;
use std::time::Duration;

use ratesync::algorithm::{LeaseId, Policy};
use ratesync::engine::redis::RedisEngine;
use ratesync::store::{Engine, EngineLimiter, LimiterSpec, ReleaseSignal};
use ratesync::testing::PinnedClock;
use ratesync::{Config, DeniedBy, LimiterBuilder, Registry, StoreBuilder};
use reference::{concurrency, sliding_window, PinnedStore};
use support::{RedisCluster, RedisServer};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn engine(server: &RedisServer) -> RedisEngine {
    RedisEngine::new(&support::redis_config(StoreBuilder::redis(&server.url()))).unwrap()
}

/// An engine on `server` whose scripts read the time the test pins.
fn pinned(server: &RedisServer) -> PinnedStore {
    let clock = PinnedClock::new();
    let config = support::redis_config(StoreBuilder::redis(&server.url()));
    let engine = RedisEngine::with_pinned_clock(&config, clock.clone()).unwrap();
    PinnedStore {
        engine: Arc::new(engine),
        set_now: Box::new(move |t_us| clock.set_micros(t_us)),
        unit_ns: 1000,
    }
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
        // Every key written has a TTL.
        let keys = server.cli(&["--scan", "--pattern", "*"]);
        assert!(!keys.is_empty());
        for key in keys.lines() {
            let ttl: i64 = server.cli(&["PTTL", key]).parse().unwrap();
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
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
