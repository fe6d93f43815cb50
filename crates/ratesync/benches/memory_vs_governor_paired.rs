//! Ratios of the memory engine to governor 0.10, measured as interleaved pairs.
//!
//! Criterion (`memory_vs_governor`) measures each function for seconds, one after the
//! other; on a shared 2-core VM the machine's speed drifts between the two, and the
//! ratio drifts with it. Here each round times ratesync and governor back to back
//! (A B B A, 50 000 calls each), and the median of the per-round ratios is reported:
//! drift slower than a round cancels out.
//!
//! Same workloads as the criterion groups: one key (limiter-wide key vs governor
//! direct), 10 000 `String` keys on 1 and 2 threads (vs governor keyed), ratesync
//! through `try_acquire_now()`, the synchronous attempt like governor's `check()`.
//! One more row, for information, times the async `try_acquire().await` on one key
//! (in a `block_on` loop) against the same governor `check()`.
//!
//! Run: `cargo bench -p ratesync --bench memory_vs_governor_paired`

use std::hint::black_box;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};
use ratesync::Limiter;

#[path = "common.rs"]
mod common;

use common::KEYS;

const CALLS_PER_TURN: usize = 50_000;
const ROUNDS: usize = 60;

struct Contenders {
    ours: Limiter,
    direct: DefaultDirectRateLimiter,
    keyed: DefaultKeyedRateLimiter<String>,
    keys: Vec<String>,
}

#[derive(Clone, Copy)]
enum Workload {
    OneKey,
    OneKeyAwaited,
    Keys { threads: usize },
}

impl Contenders {
    fn new() -> Self {
        let ours = common::ratesync_limiter();
        let quota = common::governor_quota();
        let keys = common::keys();
        let keyed = RateLimiter::keyed(quota);
        for key in &keys {
            let _ = ours.key(key).try_acquire_now();
            let _ = keyed.check_key(key);
        }
        Contenders {
            ours,
            direct: RateLimiter::direct(quota),
            keyed,
            keys,
        }
    }

    fn key(&self, thread: usize, i: usize) -> &String {
        &self.keys[(i * 7 + thread * 5003) % KEYS]
    }

    /// Wall time of one turn of `CALLS_PER_TURN` calls per thread.
    fn turn(&self, workload: Workload, ratesync: bool) -> f64 {
        let started = Instant::now();
        match workload {
            Workload::OneKey if ratesync => ours_one_key(&self.ours),
            Workload::OneKeyAwaited if ratesync => ours_one_key_awaited(&self.ours),
            Workload::OneKey | Workload::OneKeyAwaited => governor_one_key(&self.direct),
            Workload::Keys { threads } => std::thread::scope(|scope| {
                for t in 0..threads {
                    scope.spawn(move || {
                        let keys = (0..CALLS_PER_TURN).map(|i| self.key(t, i));
                        match ratesync {
                            true => ours_keys(&self.ours, keys),
                            false => governor_keys(&self.keyed, keys),
                        }
                    });
                }
            }),
        }
        started.elapsed().as_secs_f64()
    }

    /// Median over rounds of (ratesync time / governor time), with quartiles, and
    /// the median nanoseconds per call of each.
    fn ratio(&self, workload: Workload) -> (f64, f64, f64, f64, f64) {
        let mut ratios = Vec::with_capacity(ROUNDS);
        let (mut ours_ns, mut gov_ns) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let a = self.turn(workload, true);
            let b = self.turn(workload, false);
            let b2 = self.turn(workload, false);
            let a2 = self.turn(workload, true);
            ratios.push((a + a2) / (b + b2));
            ours_ns.push((a + a2) / 2.0 / CALLS_PER_TURN as f64 * 1e9);
            gov_ns.push((b + b2) / 2.0 / CALLS_PER_TURN as f64 * 1e9);
        }
        let median = |v: &mut Vec<f64>, q: usize| {
            v.sort_by(|x, y| x.total_cmp(y));
            v[v.len() * q / 4]
        };
        (
            median(&mut ratios, 2),
            median(&mut ratios, 1),
            median(&mut ratios, 3),
            median(&mut ours_ns, 2),
            median(&mut gov_ns, 2),
        )
    }
}

// Each contender's loop is a function of its own, kept out of line, so that the
// compiler treats both sides alike (inlined into one shared function, one side's call
// can be inlined and the other's not, which skews the ratio either way).

#[inline(never)]
fn ours_one_key(ours: &Limiter) {
    for _ in 0..CALLS_PER_TURN {
        black_box(ours.key("").try_acquire_now());
    }
}

#[inline(never)]
fn ours_one_key_awaited(ours: &Limiter) {
    futures::executor::block_on(async {
        for _ in 0..CALLS_PER_TURN {
            let _ = black_box(ours.key("").try_acquire().await);
        }
    })
}

#[inline(never)]
fn governor_one_key(direct: &DefaultDirectRateLimiter) {
    for _ in 0..CALLS_PER_TURN {
        let _ = black_box(direct.check());
    }
}

#[inline(never)]
fn ours_keys<'a>(ours: &Limiter, keys: impl Iterator<Item = &'a String>) {
    for key in keys {
        black_box(ours.key(key).try_acquire_now());
    }
}

#[inline(never)]
fn governor_keys<'a>(
    keyed: &DefaultKeyedRateLimiter<String>,
    keys: impl Iterator<Item = &'a String>,
) {
    for key in keys {
        let _ = black_box(keyed.check_key(key));
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let contenders = Contenders::new();
    println!("workload                      ratesync/governor (p25-p75)   ratesync ns   governor ns   target");
    for (name, workload, target) in [
        ("one key, 1 thread (direct)", Workload::OneKey, "<= 1.0"),
        (
            "10k keys, 1 thread (keyed)",
            Workload::Keys { threads: 1 },
            "<= 0.8",
        ),
        (
            "10k keys, 2 threads (keyed)",
            Workload::Keys { threads: 2 },
            "<= 0.8",
        ),
        ("one key, awaited (direct)", Workload::OneKeyAwaited, "-"),
    ] {
        let (ratio, p25, p75, ours, gov) = contenders.ratio(workload);
        println!(
            "{name:<29} {ratio:>6.3}x ({p25:.3}-{p75:.3})        {ours:>8.1}      {gov:>8.1}     {target}"
        );
    }
}
