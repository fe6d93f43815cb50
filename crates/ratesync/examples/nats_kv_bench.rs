//! The anchors of `benchmarks/nats.sh` (`docs/design.md#benchmarks`), against one NATS server:
//!
//! - `raw`: raw JetStream KV write throughput, async-nats alone: 64 tasks, each
//!   putting to one of 100 keys in turn (one round trip per write, no read, no
//!   CAS): the server's ceiling for plain writes.
//! - `update`: raw KV *update* throughput (the anchor of `docs/design.md#benchmarks`):
//!   64 tasks over 100 keys, each task the only writer of its keys, every write a
//!   compare-and-set on the revision it last wrote (one round trip, never a conflict):
//!   the same request one ratesync decision makes, without the decision.
//! - `hot`: ratesync on one hot key from 4 engine instances (4 clients, as 4
//!   processes would be) × 16 tasks: decisions per second and compare-and-set
//!   conflicts per decision.
//! - `keys`: ratesync, one client, 64 tasks over 100 keys drawn at random (where
//!   `ratesync bench --keys 100` walks the keys round-robin).
//!
//! Usage: `cargo run --release --features nats --example nats_kv_bench -- URL raw|update|hot SECONDS`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ratesync::engine::nats::NatsEngine;
use ratesync::{Config, LimiterBuilder, Registry, StoreBuilder};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .get(1)
        .cloned()
        .unwrap_or("nats://127.0.0.1:4222".into());
    let mode = args.get(2).cloned().unwrap_or("raw".into());
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let duration = Duration::from_secs_f64(seconds);
    match mode.as_str() {
        "raw" => raw(&url, duration, false).await,
        "update" => raw(&url, duration, true).await,
        "hot" => hot(&url, duration, 4, 16, 1).await,
        "keys" => hot(&url, duration, 1, 64, 100).await,
        other => panic!("unknown mode {other}: raw, update or hot"),
    }
}

async fn raw(url: &str, duration: Duration, cas: bool) {
    let client = async_nats::connect(url).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    let kv = jetstream
        .create_key_value(async_nats::jetstream::kv::Config {
            bucket: "ratesync_raw_bench".into(),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("bucket");
    let writes = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let (kv, writes) = (kv.clone(), writes.clone());
            tokio::spawn(async move {
                let value = bytes::Bytes::from_static(&[0u8; 27]);
                // `update`: this task's own keys (task, task + 64, ...) and the
                // revision each is at.
                let mut own: Vec<(String, u64)> = Vec::new();
                if cas {
                    for k in (task..100).step_by(64) {
                        let key = format!("u{k}");
                        let revision = kv.put(&key, value.clone()).await.expect("put");
                        own.push((key, revision));
                    }
                }
                let mut i = task;
                while Instant::now() < deadline {
                    if cas {
                        let n = own.len();
                        let (key, revision) = &mut own[i % n];
                        *revision = kv
                            .update(key.as_str(), value.clone(), *revision)
                            .await
                            .expect("update");
                    } else {
                        kv.put(format!("k{}", i % 100), value.clone())
                            .await
                            .expect("put");
                    }
                    writes.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total = writes.load(Ordering::Relaxed);
    println!(
        "{{\"writes\": {total}, \"elapsed_s\": {elapsed:.3}, \"writes_per_s\": {:.0}}}",
        total as f64 / elapsed
    );
}

async fn hot(url: &str, duration: Duration, clients: usize, tasks_each: usize, keys: usize) {
    let store = StoreBuilder::nats(url).option("auto_create", true);
    let config = Config::builder()
        .store("s", store)
        .limiter(
            "hot",
            // Fail-closed: a store error must show as an error, not an admission.
            LimiterBuilder::token_bucket("s", 1e9)
                .burst(1_000_000)
                .fail_closed(true),
        )
        .build()
        .expect("config");
    let nats = match &config.stores["s"].engine {
        ratesync::config::EngineConfig::Nats(nats) => nats.clone(),
        _ => unreachable!(),
    };
    let engines: Vec<NatsEngine> = (0..clients)
        .map(|_| NatsEngine::new(&nats).unwrap())
        .collect();
    let mut limiters = Vec::new();
    for engine in &engines {
        let registry = Registry::builder(config.clone())
            .engine("s", Arc::new(engine.clone()))
            .build()
            .expect("registry");
        let limiter = registry.limiter("hot").unwrap();
        limiter.state().await.expect("the store answers");
        limiters.push(limiter);
    }
    let before: Vec<_> = engines.iter().map(NatsEngine::cas_stats).collect();
    let (admitted, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for limiter in &limiters {
        for _ in 0..tasks_each {
            let (limiter, admitted, errors) = (limiter.clone(), admitted.clone(), errors.clone());
            let first_error = first_error.clone();
            tasks.push(tokio::spawn(async move {
                let names: Vec<String> = (0..keys).map(|k| format!("k{k}")).collect();
                while Instant::now() < deadline {
                    let key = &names[fastrand::usize(..keys)];
                    match limiter.key(key).try_acquire().await {
                        Ok(_) => admitted.fetch_add(1, Ordering::Relaxed),
                        Err(error) => {
                            first_error.lock().unwrap().get_or_insert(error.to_string());
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (mut decisions, mut conflicts) = (0, 0);
    for (engine, before) in engines.iter().zip(before) {
        let after = engine.cas_stats();
        decisions += after.decisions - before.decisions;
        conflicts += after.conflicts - before.conflicts;
    }
    let admitted = admitted.load(Ordering::Relaxed);
    if let Some(error) = first_error.lock().unwrap().take() {
        eprintln!("first error: {error}");
    }
    println!(
        "{{\"admitted\": {admitted}, \"errors\": {}, \"elapsed_s\": {elapsed:.3}, \
         \"admitted_per_s\": {:.0}, \"decisions\": {decisions}, \"conflicts\": {conflicts}, \
         \"conflicts_per_decision\": {:.4}}}",
        errors.load(Ordering::Relaxed),
        admitted as f64 / elapsed,
        conflicts as f64 / decisions.max(1) as f64
    );
}
