//! The reference model for the engines that port the algorithm to their store's
//! language (Redis Lua, PostgreSQL plpgsql): one key driven through the same
//! operations at the same pinned times by `ratesync::algorithm` and by the store,
//! every answer compared, over proptest-generated rules and histories.
//!
//! The stores decide in microseconds and the reference in nanoseconds, so each rule
//! is built from whole microseconds (`interval_us * 1000`) and the reference decides
//! at `t_us * 1000` while the store's clock is pinned to `t_us`.

#![allow(dead_code)]

use std::sync::Arc;

use futures::future::BoxFuture;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use ratesync::algorithm::{self, Concurrency, KeyState, LeaseId, Policy, Rule};
use ratesync::engine::StoreError;
use ratesync::{Decision, SlidingWindow, TokenBucket};

/// A plausible epoch time in µs: the stores must stay exact at real magnitudes.
pub const EPOCH_US: u64 = 1_750_000_000_000_000;

/// A store limiter whose clock a test can pin (`Some(t_us)`), as the Redis and
/// PostgreSQL limiters allow.
pub trait PinnedLimiter: Send + Sync {
    fn acquire_at<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
        t_us: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;
    fn peek_at<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        t_us: u64,
    ) -> BoxFuture<'a, Result<Decision, StoreError>>;
    fn release_lease<'a>(
        &'a self,
        key: &'a str,
        lease: LeaseId,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    fn renew_at<'a>(
        &'a self,
        key: &'a str,
        lease: LeaseId,
        t_us: u64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

pub fn token_bucket(interval_us: u64, burst: u32) -> Rule {
    Rule::TokenBucket(TokenBucket::with_interval_nanos(interval_us * 1000, burst).unwrap())
}

pub fn sliding_window(limit: u32, window_us: u64) -> Rule {
    Rule::SlidingWindow(SlidingWindow::with_window_nanos(limit, window_us * 1000).unwrap())
}

pub fn concurrency(max: u32, ttl_us: u64) -> Option<Concurrency> {
    Some(Concurrency {
        max,
        lease_ttl: ttl_us * 1000,
    })
}

#[derive(Debug, Clone)]
pub enum Op {
    Acquire {
        cost: u32,
        lease: bool,
    },
    Peek {
        cost: u32,
    },
    /// Releases / renews the n-th lease taken so far (modulo their number).
    Release(usize),
    Renew(usize),
}

/// The reference and the store side by side, on one key.
pub struct Pair<L> {
    policy: Policy,
    state: KeyState,
    store: Arc<L>,
    key: String,
    leases: Vec<LeaseId>,
}

impl<L: PinnedLimiter> Pair<L> {
    pub fn new(store: Arc<L>, policy: Policy) -> Self {
        Pair {
            policy,
            state: KeyState::fresh(&policy.rule),
            store,
            key: format!("user:{{{}}}", fastrand::u32(..)),
            leases: Vec::new(),
        }
    }

    /// Applies `op` at `t_us` to both; fails with the step on any difference.
    pub async fn step(&mut self, t_us: u64, op: &Op) -> Result<(), TestCaseError> {
        let now = t_us * 1000;
        match *op {
            Op::Acquire { cost, lease } => {
                let cost = cost.min(self.policy.rule.capacity());
                let id = (lease && self.policy.concurrency.is_some()).then(LeaseId::random);
                let expected = algorithm::decide(&self.policy, &mut self.state, now, cost, id);
                let actual = self
                    .store
                    .acquire_at(&self.key, cost, id, t_us)
                    .await
                    .unwrap();
                prop_assert_eq!(actual, expected, "acquire cost {} at {}", cost, t_us);
                if let (Some(id), true) = (id, expected.allowed) {
                    self.leases.push(id);
                }
            }
            Op::Peek { cost } => {
                let cost = cost.min(self.policy.rule.capacity());
                let expected = algorithm::peek(&self.policy, &self.state, now, cost);
                let actual = self.store.peek_at(&self.key, cost, t_us).await.unwrap();
                prop_assert_eq!(actual, expected, "peek cost {} at {}", cost, t_us);
            }
            Op::Release(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                self.state.leases.release(id);
                self.store.release_lease(&self.key, id).await.unwrap();
            }
            Op::Renew(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                let ttl = self.policy.concurrency.map_or(0, |c| c.lease_ttl);
                let expected = self.state.leases.renew(id, now, ttl);
                let actual = self.store.renew_at(&self.key, id, t_us).await.unwrap();
                prop_assert_eq!(actual, expected, "renew at {}", t_us);
            }
            Op::Release(_) | Op::Renew(_) => {}
        }
        Ok(())
    }
}

pub fn policies() -> impl Strategy<Value = Policy> {
    let rule = prop_oneof![
        (1u64..=2_000_000, 1u32..=8).prop_map(|(i, b)| token_bucket(i, b)),
        (1u32..=8, 1u64..=3_000_000).prop_map(|(l, w)| sliding_window(l, w)),
    ];
    let cap = prop_oneof![
        Just(None),
        (1u32..=3, 1u64..=4_000_000).prop_map(|(m, t)| concurrency(m, t)),
    ];
    (rule, cap).prop_map(|(rule, concurrency)| Policy { rule, concurrency })
}

/// The spans of `policy` in µs: the instants where decisions change.
fn spans(policy: &Policy) -> Vec<u64> {
    let mut spans = vec![match policy.rule {
        Rule::TokenBucket(tb) => tb.interval_nanos() / 1000,
        Rule::SlidingWindow(sw) => sw.window_nanos() / 1000,
    }];
    spans.extend(policy.concurrency.map(|c| c.lease_ttl / 1000));
    spans
}

pub fn ops(policy: &Policy) -> impl Strategy<Value = Vec<(u64, Op)>> {
    let op = prop_oneof![
        6 => (1u32..=8, any::<bool>()).prop_map(|(cost, lease)| Op::Acquire { cost, lease }),
        2 => (1u32..=8).prop_map(|cost| Op::Peek { cost }),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Renew),
    ];
    // Steps of zero (same microsecond), small, long enough to refill or expire, and
    // exactly one span of the rule or lease (±1 µs), where off-by-one errors show.
    let spans = spans(policy);
    let edge = (prop::sample::select(spans), -1i64..=1)
        .prop_map(|(span, off)| span.saturating_add_signed(off));
    let dt = prop_oneof![
        Just(0u64).boxed(),
        (0u64..2_000).boxed(),
        (0u64..1_500_000).boxed(),
        (0u64..6_000_000).boxed(),
        edge.boxed(),
    ];
    prop::collection::vec((dt, op), 1..40)
}

/// Runs `ops` (µs after [`EPOCH_US`], op) on one fresh key, comparing every step.
fn compare<L: PinnedLimiter>(
    rt: &tokio::runtime::Runtime,
    limiter: &impl Fn(Policy) -> Arc<L>,
    policy: Policy,
    ops: &[(u64, Op)],
) {
    rt.block_on(async {
        let mut pair = Pair::new(limiter(policy), policy);
        for (t, op) in ops {
            pair.step(EPOCH_US + t, op).await.unwrap();
        }
    });
}

/// Hand-written histories at the exact edges of each rule (refill instants, window
/// ends, lease expiry), each on a fresh key from `limiter`.
pub fn check_hand_written_histories<L: PinnedLimiter>(
    rt: &tokio::runtime::Runtime,
    limiter: impl Fn(Policy) -> Arc<L>,
) {
    let compare = |policy, ops: &[(u64, Op)]| compare(rt, &limiter, policy, ops);
    let acquire = |cost| Op::Acquire { cost, lease: true };
    let peek = |cost| Op::Peek { cost };
    // Token bucket, 3/s (interval rounded up to 333_334 µs), burst 3, at the exact
    // edges of refill.
    let tb = Policy {
        rule: token_bucket(333_334, 3),
        concurrency: None,
    };
    compare(
        tb,
        &[
            (0, acquire(1)),
            (0, acquire(2)),
            (0, acquire(1)),
            (0, peek(1)),
            (333_333, acquire(1)),
            (333_334, acquire(1)),
            (333_334, peek(1)),
            (10_000_000, peek(3)),
            (10_000_000, acquire(3)),
        ],
    );
    // Sliding window 4 per 1 s with costs: retry waits for enough units to leave.
    let sw = Policy {
        rule: sliding_window(4, 1_000_000),
        concurrency: None,
    };
    compare(
        sw,
        &[
            (0, acquire(2)),
            (500_000, acquire(2)),
            (600_000, acquire(3)),
            (600_000, peek(3)),
            (999_999, acquire(1)),
            (1_000_000, acquire(1)),
            (1_000_000, acquire(2)),
            (1_500_000, peek(1)),
            (1_500_000, acquire(2)),
            (9_000_000, peek(4)),
        ],
    );
    // Concurrency and rate together: a full cap consumes no rate, a rate refusal
    // takes no slot, leases expire, renew and release.
    let both = Policy {
        rule: token_bucket(1_000_000, 2),
        concurrency: concurrency(1, 3_000_000),
    };
    compare(
        both,
        &[
            (0, acquire(1)),
            (0, acquire(1)),
            (0, peek(1)),
            (1_000_000, Op::Renew(0)),
            (3_999_999, acquire(1)),
            (4_000_000, acquire(1)),
            (4_000_000, Op::Release(1)),
            (4_000_000, Op::Release(1)),
            (4_000_000, acquire(2)),
            (4_000_001, acquire(1)),
            (4_000_001, Op::Renew(0)),
            (9_000_000, Op::Renew(2)),
        ],
    );
    let window_cap = Policy {
        rule: sliding_window(2, 2_000_000),
        concurrency: concurrency(2, 500_000),
    };
    compare(
        window_cap,
        &[
            (0, acquire(1)),
            (0, acquire(1)),
            (0, acquire(1)),
            (499_999, peek(1)),
            (500_000, acquire(1)),
            (2_000_000, acquire(2)),
            (2_100_000, acquire(1)),
        ],
    );
}

/// Random rules and histories (proptest, 300 cases), each on a fresh key.
pub fn check_random_histories<L: PinnedLimiter>(
    rt: &tokio::runtime::Runtime,
    limiter: impl Fn(Policy) -> Arc<L>,
) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    let start = EPOCH_US + fastrand::u64(..1_000_000_000);
    runner
        .run(
            &policies().prop_flat_map(|policy| (Just(policy), ops(&policy))),
            |(policy, ops)| {
                rt.block_on(async {
                    let mut pair = Pair::new(limiter(policy), policy);
                    let mut t = start;
                    for (dt, op) in &ops {
                        t += dt;
                        pair.step(t, op).await?;
                    }
                    Ok(())
                })
            },
        )
        .unwrap();
}
