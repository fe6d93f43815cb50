//! Configuration added at run time, one store or limiter at a time
//! (`Registry::with_store`, `Registry::with_limiter`): the same validation as a file,
//! and state kept by stores and limiters that were not changed.

use ratesync::{AcquireError, Error, LimiterBuilder, Registry, StoreBuilder};

fn memory_registry() -> Registry {
    empty().with_store("local", StoreBuilder::memory()).unwrap()
}

fn empty() -> Registry {
    Registry::from_config(ratesync::Config::default()).unwrap()
}

#[tokio::test]
async fn a_limiter_added_later_leaves_the_state_of_others_alone() {
    let registry = memory_registry()
        .with_limiter("api", LimiterBuilder::token_bucket("local", 0.001))
        .unwrap();
    registry
        .limiter("api")
        .unwrap()
        .try_acquire()
        .await
        .unwrap();

    let registry = registry
        .with_limiter("login", LimiterBuilder::sliding_window("local", 5, 300.0))
        .unwrap();
    let refused = registry.limiter("api").unwrap().try_acquire().await;
    assert!(matches!(refused, Err(AcquireError::Denied { .. })));
    registry
        .limiter("login")
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
}

#[tokio::test]
async fn redefining_a_store_or_limiter_identically_keeps_state() {
    let registry = memory_registry()
        .with_limiter("api", LimiterBuilder::token_bucket("local", 0.001))
        .unwrap();
    registry
        .limiter("api")
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
    let registry = registry
        .with_store("local", StoreBuilder::memory())
        .unwrap()
        .with_limiter("api", LimiterBuilder::token_bucket("local", 0.001))
        .unwrap();
    assert!(registry
        .limiter("api")
        .unwrap()
        .try_acquire()
        .await
        .is_err());

    // Other settings: a fresh limiter.
    let registry = registry
        .with_limiter("api", LimiterBuilder::token_bucket("local", 0.002))
        .unwrap();
    registry
        .limiter("api")
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replaced_store_carries_its_limiters_over() {
    let registry = memory_registry()
        .with_limiter("api", LimiterBuilder::token_bucket("local", 0.001))
        .unwrap();
    let registry = registry
        .with_store("local", StoreBuilder::memory().option("max_keys", 10))
        .unwrap();
    registry
        .limiter("api")
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(registry.config().limiters.len(), 1);
}

#[test]
fn runtime_configuration_is_validated_like_a_file() {
    let registry = memory_registry();
    let Err(Error::Config(error)) =
        registry.with_limiter("api", LimiterBuilder::token_bucket("cache", 1.0))
    else {
        panic!("an unknown store must be refused");
    };
    assert!(error.to_string().contains("limiters.api.store"), "{error}");

    let Err(Error::Config(error)) =
        registry.with_limiter("api", LimiterBuilder::token_bucket("local", -1.0))
    else {
        panic!("a negative rate must be refused");
    };
    assert!(error.to_string().contains("rate_per_second"), "{error}");

    let Err(Error::Config(error)) =
        registry.with_store("cache", StoreBuilder::memory().option("maxkeys", 3))
    else {
        panic!("an unknown key must be refused");
    };
    assert!(
        error.to_string().contains("stores.cache.maxkeys"),
        "{error}"
    );
    // Nothing of a refused change is kept.
    assert!(registry.config().stores.get("cache").is_none());
    assert!(registry.limiter("api").is_err());
}
