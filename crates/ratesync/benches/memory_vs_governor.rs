//! The memory engine's `try_acquire` beside governor 0.10, in one run
//! (`docs/benchmarks.md`).
//!
//! - `one_key`: ratesync on the limiter-wide key vs governor's direct limiter, both
//!   synchronous: `try_acquire_now()` is the attempt of a store that decides in
//!   this process.
//! - `keys_10k/{1,2}_threads`: ratesync on 10 000 `String` keys vs governor's keyed
//!   limiter (DashMap) with the same 10 000 `String` keys.
//!
//! Rates are far above reach so every call is admitted and both sides do the same
//! work: read the clock, compare-and-swap one timestamp. Multi-thread groups report
//! wall time per operation per thread (each thread runs `iters` operations).
//!
//! Run: `cargo bench -p ratesync --bench memory_vs_governor`

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use governor::RateLimiter;

#[path = "common.rs"]
mod common;

use common::{governor_quota as quota, ratesync_limiter, KEYS};

fn keys() -> Arc<Vec<String>> {
    Arc::new(common::keys())
}

fn one_key(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_key");
    let ours = ratesync_limiter();
    group.bench_function("ratesync_memory", |b| {
        b.iter(|| black_box(ours.try_acquire_now()))
    });
    let governor = RateLimiter::direct(quota());
    group.bench_function("governor_direct", |b| {
        b.iter(|| black_box(governor.check()))
    });
    group.finish();
}

/// Runs `op(thread, i)` `iters` times on each of `threads` threads; returns the wall
/// time of the slowest thread.
fn on_threads(
    threads: usize,
    iters: u64,
    op: impl Fn(usize, u64) + Send + Sync + 'static,
) -> Duration {
    let op = Arc::new(op);
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (op, start) = (op.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let began = Instant::now();
                for i in 0..iters {
                    op(t, i);
                }
                began.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap()
}

fn keys_10k(c: &mut Criterion) {
    let keys = keys();
    for threads in [1usize, 2] {
        let mut group = c.benchmark_group(format!("keys_10k/{threads}_threads"));
        let ours = ratesync_limiter();
        for key in keys.iter() {
            let _ = ours.key(key).try_acquire_now();
        }
        let ks = keys.clone();
        group.bench_function(BenchmarkId::new("ratesync_memory", threads), |b| {
            b.iter_custom(|iters| {
                let (ours, ks) = (ours.clone(), ks.clone());
                on_threads(threads, iters, move |t, i| {
                    let key = &ks[(i as usize * 7 + t * 5003) % KEYS];
                    black_box(ours.key(key).try_acquire_now());
                })
            })
        });
        let governor = Arc::new(RateLimiter::keyed(quota()));
        for key in keys.iter() {
            let _ = governor.check_key(key);
        }
        let ks = keys.clone();
        group.bench_function(BenchmarkId::new("governor_keyed", threads), |b| {
            b.iter_custom(|iters| {
                let (governor, ks) = (governor.clone(), ks.clone());
                on_threads(threads, iters, move |t, i| {
                    let key = &ks[(i as usize * 7 + t * 5003) % KEYS];
                    black_box(governor.check_key(key)).ok();
                })
            })
        });
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = one_key, keys_10k
}
criterion_main!(benches);
