//! What the NATS engine adds around the conformance suite: the bucket (created by
//! several processes at once, or reported clearly when missing), token auth, a
//! server list with a dead first server, and hostile identifiers across engines
//! (entries stay apart, and a release wakes a waiter of another client).

#![cfg(feature = "nats")]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratesync::engine::nats::NatsEngine;
use ratesync::{AcquireError, Config, LimiterBuilder, Registry, StoreBuilder};
use support::NatsServer;

fn engine(store: StoreBuilder) -> NatsEngine {
    NatsEngine::new(&support::nats_config(store)).expect("builds without I/O")
}

fn registry(engine: &NatsEngine, limiters: &[(&str, LimiterBuilder)]) -> Registry {
    let mut config = Config::builder().store("s", StoreBuilder::memory());
    for (name, limiter) in limiters {
        config = config.limiter(name, limiter.clone());
    }
    Registry::builder(config.build().expect("valid config"))
        .engine("s", Arc::new(engine.clone()))
        .build()
        .expect("registry builds")
}

fn window(limit: u32) -> LimiterBuilder {
    LimiterBuilder::sliding_window("s", limit, 3600.0).fail_closed(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_create_the_bucket_at_once_and_share_it() {
    let server = NatsServer::start();
    let store = StoreBuilder::nats(&server.url())
        .option("auto_create", true)
        .option("bucket_name", "raced");
    let limiters: Vec<_> = (0..8)
        .map(|_| {
            registry(&engine(store.clone()), &[("shared", window(5))])
                .limiter("shared")
                .unwrap()
        })
        .collect();
    let attempts = limiters.iter().map(|l| {
        let l = l.clone();
        async move { l.try_acquire().await.is_ok() }
    });
    let admitted = futures::future::join_all(attempts)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    assert_eq!(admitted, 5, "one bucket, one limit");
}

#[tokio::test]
async fn a_missing_bucket_without_auto_create_names_the_bucket_and_the_fix() {
    let server = NatsServer::start();
    let store = StoreBuilder::nats(&server.url()).option("bucket_name", "absent_bucket");
    let reg = registry(&engine(store), &[("l", window(5))]);
    let error = reg.limiter("l").unwrap().try_acquire().await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, AcquireError::StoreUnavailable { .. }),
        "{text}"
    );
    assert!(
        text.contains("absent_bucket") && text.contains("auto_create"),
        "{text}"
    );
}

#[tokio::test]
async fn token_auth_is_used_and_never_printed() {
    let _ = NatsServer::start();
    let server = NatsServer::start_with_token("s3cret-token");
    let good = StoreBuilder::nats(&server.url())
        .option("auto_create", true)
        .option("token", "s3cret-token");
    let reg = registry(&engine(good), &[("l", window(1))]);
    reg.limiter("l")
        .unwrap()
        .try_acquire()
        .await
        .expect("authorised");

    let bad = StoreBuilder::nats(&server.url())
        .option("auto_create", true)
        .option("token", "wrong-token");
    let reg = registry(&engine(bad), &[("l", window(1))]);
    let error = reg.limiter("l").unwrap().try_acquire().await.unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, AcquireError::StoreUnavailable { .. }),
        "{text}"
    );
    assert!(!text.contains("wrong-token"), "{text}");
}

#[tokio::test]
async fn a_server_list_skips_a_dead_server() {
    let server = NatsServer::start();
    let dead = format!("nats://127.0.0.1:{}", support::free_port());
    let list = format!("{dead}, {}", server.url());
    let store = StoreBuilder::nats(&list).option("auto_create", true);
    let reg = registry(&engine(store), &[("l", window(2))]);
    let l = reg.limiter("l").unwrap();
    l.try_acquire().await.expect("the second server answers");
    l.try_acquire().await.unwrap();
    assert!(l.try_acquire().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_identifiers_stay_apart_and_releases_reach_other_clients() {
    let server = NatsServer::start();
    let store = StoreBuilder::nats(&server.url()).option("auto_create", true);
    let hostile_limiter = "a.b>*=2E /\u{0}é";
    let slot = LimiterBuilder::token_bucket("s", 1000.0)
        .burst(100)
        .max_concurrent(1);
    let (one, two) = (engine(store.clone()), engine(store));
    let reg_one = registry(&one, &[(hostile_limiter, slot.clone()), ("a", window(1))]);
    let reg_two = registry(&two, &[(hostile_limiter, slot), ("a", window(1))]);
    let long = "k".repeat(5000);
    for key in [
        "",
        ".",
        ">",
        "*",
        "b.c",
        "=2E",
        "\u{0}",
        "é ü\n",
        long.as_str(),
    ] {
        // Limiter `a` and the hostile one never share entries, whatever the key.
        // (The core polls a waiter every 500 ms at worst: a wake-up well before
        // that came through the KV watch.)
        let a = reg_one.limiter("a").unwrap();
        a.key(key).try_acquire().await.expect("first unit of `a`");
        assert!(a.key(key).try_acquire().await.is_err(), "{key:?}");

        let held = reg_one
            .limiter(hostile_limiter)
            .unwrap()
            .key(key)
            .try_acquire()
            .await
            .expect("the slot is free");
        let waiter = {
            let l = reg_two.limiter(hostile_limiter).unwrap();
            let key = key.to_owned();
            tokio::spawn(async move {
                let started = Instant::now();
                let permit = l.key(&key).acquire().await.expect("woken");
                (started.elapsed(), permit)
            })
        };
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(held);
        let (waited, permit) = waiter.await.unwrap();
        assert!(
            waited < Duration::from_millis(150 + 250),
            "a release in another client wakes the waiter of key {key:?} (waited {waited:?})"
        );
        drop(permit);
    }
}

/// `docs/design.md#fixed-windows`: a daily quota resets at UTC midnight on the
/// server's clock. Midnight cannot be waited for, so the engine reads the server's
/// clock shifted to 1.5 s before the next one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_quota_resets_at_utc_midnight() {
    const DAY: u64 = 86_400_000_000_000;
    let server = NatsServer::start();
    let store = StoreBuilder::nats(&server.url()).option("auto_create", true);
    let engine = engine(store);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let before_midnight = (now / DAY + 1) * DAY - 1_500_000_000;
    engine.shift_clock((before_midnight - now) as i64);
    let registry = registry(
        &engine,
        &[(
            "daily",
            LimiterBuilder::calendar("s", 2, ratesync::Period::Day).fail_closed(true),
        )],
    );
    let daily = registry.limiter("daily").unwrap();
    daily.key("api-key").cost(2).try_acquire().await.unwrap();
    let refusal = match daily.key("api-key").try_acquire().await {
        Err(AcquireError::Denied { decision, .. }) => decision,
        other => panic!("expected a refusal, got {other:?}"),
    };
    // Midnight is at most 1.5 s away (less the time the calls took), and the
    // refusal says so in both numbers.
    let wait = refusal.retry_after();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(1500),
        "{wait:?}"
    );
    assert_eq!(refusal.reset_after(), wait);
    tokio::time::sleep(wait).await;
    let permit = daily.key("api-key").try_acquire().await.unwrap();
    assert_eq!(permit.decision().remaining(), 1, "a new day, a new quota");
}
