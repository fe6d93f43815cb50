//! Metrics reach the application's recorder through the `metrics` facade
//! (`docs/design.md#metrics`), labelled by limiter and store, never by key.

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::MetricKind;
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};

#[tokio::test]
async fn decisions_are_counted_per_limiter_without_key_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let config = Config::builder()
        .store("mem", StoreBuilder::memory())
        .limiter(
            "api",
            LimiterBuilder::token_bucket("mem", 1.0)
                .burst(2)
                .max_concurrent(5),
        )
        .build()
        .unwrap();
    // Handles are resolved when the registry is built: that is when the recorder counts.
    let registry =
        metrics::with_local_recorder(&recorder, || Registry::from_config(config)).unwrap();
    let api = registry.limiter("api").unwrap();
    let held = api.key("user-1").try_acquire().await.unwrap();
    api.key("user-2")
        .try_acquire()
        .await
        .unwrap()
        .release()
        .await;
    api.key("user-1").try_acquire().await.unwrap();
    assert!(api.key("user-1").try_acquire().await.is_err());
    drop(held);

    let mut seen = std::collections::HashMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let labels: Vec<_> = key
            .key()
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        assert!(
            labels
                .iter()
                .all(|(k, _)| ["limiter", "store", "engine"].contains(&k.as_str())),
            "{labels:?}"
        );
        assert!(
            labels.iter().all(|(_, v)| !v.starts_with("user-")),
            "keys are never labels"
        );
        if key.kind() == MetricKind::Counter {
            if let DebugValue::Counter(n) = value {
                seen.insert(key.key().name().to_owned(), n);
            }
        }
        if key.key().name() == "ratesync_permits_in_use" {
            assert_eq!(
                value,
                DebugValue::Gauge(0.0.into()),
                "every slot was given back"
            );
        }
    }
    assert_eq!(seen.get("ratesync_admitted_total"), Some(&3));
    assert_eq!(seen.get("ratesync_denied_total"), Some(&1));
}

/// `docs/design.md#shadow-mode`: what a shadow limiter would refuse is admitted and
/// counted twice: as admitted, and in `ratesync_shadow_denied_total`; never as denied.
#[tokio::test]
async fn shadow_refusals_are_counted_apart() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let config = Config::builder()
        .store("mem", StoreBuilder::memory())
        .limiter(
            "trial",
            LimiterBuilder::sliding_window("mem", 3, 60.0).shadow(true),
        )
        .build()
        .unwrap();
    let registry =
        metrics::with_local_recorder(&recorder, || Registry::from_config(config)).unwrap();
    let trial = registry.limiter("trial").unwrap();
    for _ in 0..6 {
        trial.try_acquire().await.expect("shadow mode admits");
    }
    let counters: std::collections::HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => Some((key.key().name().to_owned(), n)),
            _ => None,
        })
        .collect();
    assert_eq!(counters.get("ratesync_admitted_total"), Some(&6));
    assert_eq!(counters.get("ratesync_shadow_denied_total"), Some(&3));
    assert_eq!(counters.get("ratesync_denied_total"), Some(&0));
}
