//! Rules a resolver gives keys (`docs/design.md#overrides`): asked once per key while
//! its answer is cached, one limiter per distinct rule, after the file's overrides.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ratesync::{
    Config, KeyRule, LimiterBuilder, OverrideBuilder, Registry, Resolver, Rule, StoreBuilder,
    TokenBucket,
};

fn bucket(burst: u32) -> KeyRule {
    KeyRule {
        rule: Some(Rule::TokenBucket(TokenBucket::new(0.001, burst).unwrap())),
        max_concurrent: None,
    }
}

fn registry() -> Registry {
    let config = Config::builder()
        .store("m", StoreBuilder::memory())
        .limiter(
            "api",
            LimiterBuilder::token_bucket("m", 0.001)
                .burst(2)
                .key_override(OverrideBuilder::keys(["gold:listed"]).burst(3)),
        )
        .build()
        .unwrap();
    Registry::from_config(config).unwrap()
}

async fn admitted(limiter: &ratesync::Limiter, key: &str, attempts: u32) -> u32 {
    let mut admitted = 0;
    for _ in 0..attempts {
        admitted += u32::from(limiter.key(key).try_acquire().await.is_ok());
    }
    admitted
}

#[tokio::test]
async fn a_resolver_gives_keys_their_rule_after_the_files_overrides() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let resolver = Resolver::new(100, move |key| {
        counter.fetch_add(1, Ordering::Relaxed);
        match key {
            k if k.starts_with("gold:") => Some(bucket(10)),
            "capped" => Some(KeyRule {
                rule: None,
                max_concurrent: NonZeroU32::new(1),
            }),
            "broken" => Some(KeyRule {
                rule: None,
                max_concurrent: None,
            }),
            _ => None,
        }
    });
    let before = registry();
    let api = before.limiter("api").unwrap();
    let registry = before.with_resolver("api", resolver).unwrap();
    assert!(api.has_overrides(), "the handle taken before follows");

    assert_eq!(admitted(&api, "gold:acme", 11).await, 10);
    assert_eq!(
        admitted(&api, "gold:globex", 11).await,
        10,
        "same rule, own state"
    );
    assert_eq!(
        admitted(&api, "gold:listed", 4).await,
        3,
        "the file's override first"
    );
    assert_eq!(
        admitted(&api, "someone", 3).await,
        2,
        "no answer: the limiter's rule"
    );
    assert_eq!(
        admitted(&api, "broken", 3).await,
        2,
        "an unusable answer: the limiter's rule"
    );
    let held = api.key("capped").try_acquire().await.unwrap();
    assert!(held.holds_slot());
    assert!(
        api.key("capped").try_acquire().await.is_err(),
        "its own cap of 1"
    );
    assert_eq!(api.quota_for("gold:acme").map(|q| q.units), Some(10));

    // gold:acme, gold:globex, someone, broken, capped: asked once each ("gold:listed"
    // never: the file's override matched it).
    assert_eq!(asked.load(Ordering::Relaxed), 5);

    registry.limiter("api").unwrap().reset().await.unwrap();
    assert_eq!(
        admitted(&api, "gold:acme", 11).await,
        10,
        "reset reached it"
    );
    drop(held);
}

#[tokio::test]
async fn a_resolvers_answers_are_cached_within_a_bound() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let resolver = Resolver::new(2, move |_| {
        counter.fetch_add(1, Ordering::Relaxed);
        Some(bucket(5))
    });
    let registry = registry().with_resolver("api", resolver).unwrap();
    let api = registry.limiter("api").unwrap();
    for round in 0..3 {
        for key in 0..50 {
            api.key(&format!("k{key}")).try_acquire().await.unwrap();
        }
        assert!(
            asked.load(Ordering::Relaxed) > 50 * round,
            "a bounded cache forgets"
        );
    }
    let before = asked.load(Ordering::Relaxed);
    for _ in 0..10 {
        api.key("k49").try_acquire().await.ok();
    }
    assert!(
        asked.load(Ordering::Relaxed) <= before + 1,
        "a hot key stays cached"
    );
}

/// A reload keeps the state of the keys a resolver's rules decide, on a store that
/// keeps it in the process too, across reloads before which the rule was not given
/// again (`docs/design.md#overrides`).
#[tokio::test]
async fn a_reload_keeps_the_state_of_resolved_keys() {
    let config = |burst: u32| {
        Config::builder()
            .store("m", StoreBuilder::memory())
            .limiter("api", LimiterBuilder::token_bucket("m", 0.001).burst(burst))
            .build()
            .unwrap()
    };
    let resolver = Resolver::new(100, |key: &str| key.starts_with("gold:").then(|| bucket(3)));
    let registry = Registry::from_config(config(2))
        .unwrap()
        .with_resolver("api", resolver)
        .unwrap();
    let api = registry.limiter("api").unwrap();
    assert_eq!(admitted(&api, "gold:a", 5).await, 3);
    assert_eq!(admitted(&api, "plain", 5).await, 2);

    let once = registry.reloaded(&config(2), config(4)).unwrap();
    let twice = once.reloaded(&config(4), config(6)).unwrap();
    let api = twice.limiter("api").unwrap();
    assert_eq!(admitted(&api, "gold:a", 5).await, 0, "its 3 were taken");
    assert_eq!(
        admitted(&api, "gold:b", 5).await,
        3,
        "a new key has the rule"
    );
    assert_eq!(api.key("gold:a").state().await.unwrap().limit(), 3);
}
