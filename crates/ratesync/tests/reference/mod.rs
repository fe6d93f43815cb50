//! The reference model for every engine: one key (or a group of keys) driven through
//! the same operations at the same times by `ratesync::algorithm` and by the store,
//! every answer compared, over proptest-generated rules and histories.
//!
//! The store's clock is pinned by the test (a `PinnedClock` for Redis and PostgreSQL,
//! the memory engine's own `ManualClock`). The stores that decide in microseconds get
//! rules built from whole microseconds (`interval_us * 1000`) and the reference
//! decides at `t_us * 1000` while the store's clock reads `t_us`.
//!
//! Batched histories (`docs/design.md#batches`) run several limiters on a few keys:
//! at one instant, acquires and groups on any of those keys go to the store as one
//! batch (each engine's test says how: a [`BatchSender`]), and each call's answer
//! must be what the reference gives deciding them one after another; single
//! operations (peeks, refunds, settles, releases, renewals) come in between.

#![allow(dead_code)]

use std::sync::Arc;

use futures::future::LocalBoxFuture;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use ratesync::algorithm::{
    self, Concurrency, GroupDecision, KeyState, LeaseId, Policy, Receipt, Rule,
};
use ratesync::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, ReleaseSignal, StoreError};
use ratesync::{Decision, FixedWindow, Period, SlidingWindow, TokenBucket};

/// A plausible epoch time in µs: the stores must stay exact at real magnitudes.
pub const EPOCH_US: u64 = 1_750_000_000_000_000;

/// A store under test, with a clock the test sets.
pub struct PinnedStore {
    pub engine: Arc<dyn Engine>,
    /// Sets the store's clock to `t_us` microseconds.
    pub set_now: Box<dyn Fn(u64) + Send + Sync>,
    /// Nanoseconds per unit of the store's receipts: 1000 for the stores that decide
    /// in microseconds, 1 for memory.
    pub unit_ns: u64,
}

impl PinnedStore {
    fn limiter(&self, policy: Policy) -> Arc<dyn EngineLimiter> {
        self.engine
            .limiter(LimiterSpec {
                id: format!("eq-{:016x}", fastrand::u64(..)).into(),
                policy,
                releases: ReleaseSignal::detached(),
            })
            .expect("the engine takes the rule")
    }

    /// The store's receipt in the reference's nanoseconds.
    fn in_ns(&self, receipt: Receipt) -> Receipt {
        Receipt {
            now: receipt.now * self.unit_ns,
            recorded: receipt.recorded * self.unit_ns,
        }
    }
}

pub fn token_bucket(interval_us: u64, burst: u32) -> Rule {
    Rule::TokenBucket(TokenBucket::with_interval_nanos(interval_us * 1000, burst).unwrap())
}

pub fn sliding_window(limit: u32, window_us: u64) -> Rule {
    Rule::SlidingWindow(SlidingWindow::with_window_nanos(limit, window_us * 1000).unwrap())
}

/// A sliding window whose log keeps at most `precision` runs, so that short
/// histories already merge (`SlidingWindow::grid_nanos`).
pub fn bounded_window(limit: u32, window_us: u64, precision: u32) -> Rule {
    let sw = SlidingWindow::with_window_nanos(limit, window_us * 1000).unwrap();
    Rule::SlidingWindow(sw.with_precision(precision).unwrap())
}

/// Fixed windows of `window_us`, aligned to the epoch.
pub fn fixed_window(limit: u32, window_us: u64) -> Rule {
    Rule::FixedWindow(FixedWindow::with_window_nanos(limit, window_us * 1000).unwrap())
}

/// Fixed windows of a calendar `period` at `utc_offset` seconds east of UTC.
pub fn calendar(limit: u32, period: Period, utc_offset: i32) -> Rule {
    Rule::FixedWindow(FixedWindow::calendar(limit, period, utc_offset).unwrap())
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
    /// Gives back the n-th admission not refunded yet (modulo their number).
    Refund(usize),
    /// Settles the n-th admission not refunded yet at `kept` of its cost (at most
    /// its cost): gives back the rest, keeps its lease (`Permit::settle`).
    Settle {
        n: usize,
        kept: u32,
    },
}

/// An admission that may be refunded: what the reference and the store each said.
struct Taken {
    cost: u32,
    lease: Option<LeaseId>,
    expected: Receipt,
    actual: Receipt,
}

/// The reference and the store side by side, on one key.
pub struct Pair<'s> {
    store: &'s PinnedStore,
    policy: Policy,
    state: KeyState,
    limiter: Arc<dyn EngineLimiter>,
    key: String,
    leases: Vec<LeaseId>,
    taken: Vec<Taken>,
}

impl<'s> Pair<'s> {
    pub fn new(store: &'s PinnedStore, policy: Policy) -> Self {
        let key = format!("user:{{{}}}", fastrand::u32(..));
        Pair::on(store, policy, store.limiter(policy), key)
    }

    /// The pair of `key` on `limiter`, made for `policy` (limiters with several keys).
    fn on(
        store: &'s PinnedStore,
        policy: Policy,
        limiter: Arc<dyn EngineLimiter>,
        key: String,
    ) -> Self {
        Pair {
            store,
            policy,
            state: KeyState::fresh(&policy),
            limiter,
            key,
            leases: Vec::new(),
            taken: Vec::new(),
        }
    }

    fn cost(&self, cost: u32) -> u32 {
        self.policy
            .rule
            .map_or(cost, |rule| cost.min(rule.capacity()))
    }

    /// Applies `op` at `t_us` to both; fails with the step on any difference.
    pub async fn step(&mut self, t_us: u64, op: &Op) -> Result<(), TestCaseError> {
        let now = t_us * 1000;
        (self.store.set_now)(t_us);
        let (key, limiter) = (&self.key, &self.limiter);
        match *op {
            Op::Acquire { cost, lease } => {
                let cost = self.cost(cost);
                let id = (lease && self.policy.concurrency.is_some()).then(LeaseId::random);
                let (expected, receipt) =
                    algorithm::decide(&self.policy, &mut self.state, now, cost, id);
                let (actual, actual_receipt) = limiter.acquire(key, cost, id).await.unwrap();
                prop_assert_eq!(actual, expected, "acquire cost {} at {}", cost, t_us);
                if expected.allowed() {
                    prop_assert_eq!(
                        self.store.in_ns(actual_receipt),
                        receipt,
                        "receipt at {}",
                        t_us
                    );
                    self.leases.extend(id);
                    self.taken.push(Taken {
                        cost,
                        lease: id,
                        expected: receipt,
                        actual: actual_receipt,
                    });
                }
            }
            Op::Peek { cost } => {
                let cost = self.cost(cost);
                let expected = algorithm::peek(&self.policy, &self.state, now, cost);
                let actual = limiter.peek(key, cost).await.unwrap();
                prop_assert_eq!(actual, expected, "peek cost {} at {}", cost, t_us);
            }
            Op::Release(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                self.state.leases.release(id);
                limiter.release(key, id).await.unwrap();
            }
            Op::Renew(n) if !self.leases.is_empty() => {
                let id = self.leases[n % self.leases.len()];
                let ttl = self.policy.concurrency.map_or(0, |c| c.lease_ttl);
                let expected = self.state.leases.renew(id, now, ttl);
                let actual = limiter.renew(key, id).await.unwrap();
                prop_assert_eq!(actual, expected, "renew at {}", t_us);
            }
            Op::Refund(n) if !self.taken.is_empty() => {
                let taken = self.taken.remove(n % self.taken.len());
                algorithm::refund(
                    &self.policy,
                    &mut self.state,
                    now,
                    taken.cost,
                    taken.expected,
                    taken.lease,
                );
                limiter
                    .refund(key, taken.cost, taken.actual, taken.lease)
                    .await
                    .unwrap();
            }
            Op::Settle { n, kept } if !self.taken.is_empty() => {
                let taken = self.taken.remove(n % self.taken.len());
                let unused = taken.cost - kept.min(taken.cost);
                if unused > 0 {
                    algorithm::refund(
                        &self.policy,
                        &mut self.state,
                        now,
                        unused,
                        taken.expected,
                        None,
                    );
                    limiter
                        .refund(key, unused, taken.actual, None)
                        .await
                        .unwrap();
                }
            }
            Op::Release(_) | Op::Renew(_) | Op::Refund(_) | Op::Settle { .. } => {}
        }
        Ok(())
    }
}

pub fn policies() -> impl Strategy<Value = Policy> {
    let rule = prop_oneof![
        3 => (1u64..=2_000_000, 1u32..=8).prop_map(|(i, b)| Some(token_bucket(i, b))),
        3 => (1u32..=8, 1u64..=3_000_000).prop_map(|(l, w)| Some(sliding_window(l, w))),
        2 => (1u32..=12, 1u64..=3_000_000, 4u32..=6)
            .prop_map(|(l, w, p)| Some(bounded_window(l, w, p))),
        2 => (1u32..=8, 1u64..=3_000_000).prop_map(|(l, w)| Some(fixed_window(l, w))),
        1 => (1u32..=8, prop::sample::select(vec![Period::Day, Period::Week, Period::Month]),
              -50_400i32..=50_400)
            .prop_map(|(l, p, o)| Some(calendar(l, p, o))),
        1 => Just(None),
    ];
    let cap = prop_oneof![
        Just(None),
        (1u32..=3, 1u64..=4_000_000).prop_map(|(m, t)| concurrency(m, t)),
    ];
    (rule, cap)
        .prop_map(|(rule, concurrency)| Policy { rule, concurrency })
        // A limiter has a rate, a cap, or both.
        .prop_filter("a rule or a cap", |p| {
            p.rule.is_some() || p.concurrency.is_some()
        })
}

/// The spans of `policy` in µs: the instants where decisions change.
fn spans(policy: &Policy) -> Vec<u64> {
    let mut spans: Vec<u64> = policy
        .rule
        .iter()
        .map(|rule| match rule {
            Rule::TokenBucket(tb) => tb.interval_nanos() / 1000,
            Rule::SlidingWindow(sw) => sw.window_nanos() / 1000,
            Rule::FixedWindow(fw) => fw.window_nanos() / 1000,
        })
        .collect();
    spans.extend(policy.concurrency.map(|c| c.lease_ttl / 1000));
    spans
}

fn steps() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        Just(0u64).boxed(),
        (0u64..2_000).boxed(),
        (0u64..1_500_000).boxed(),
        (0u64..6_000_000).boxed(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..=8, any::<bool>()).prop_map(|(cost, lease)| Op::Acquire { cost, lease }),
        2 => (1u32..=8).prop_map(|cost| Op::Peek { cost }),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Renew),
        1 => any::<usize>().prop_map(Op::Refund),
        1 => (any::<usize>(), 0u32..=8).prop_map(|(n, kept)| Op::Settle { n, kept }),
    ]
}

/// Steps of zero (same microsecond), small, long enough to refill or expire, and
/// exactly one span of a rule or lease in `spans` (±1 µs), where off-by-one errors
/// show.
fn time_steps(spans: Vec<u64>) -> impl Strategy<Value = u64> + Clone {
    let edge = (prop::sample::select(spans), -1i64..=1)
        .prop_map(|(span, off)| span.saturating_add_signed(off));
    prop_oneof![4 => steps(), 1 => edge]
}

pub fn ops(policy: &Policy) -> impl Strategy<Value = Vec<(u64, Op)>> {
    prop::collection::vec((time_steps(spans(policy)), op()), 1..40)
}

/// Runs `ops` (µs after [`EPOCH_US`], op) on one fresh key, comparing every step.
fn compare(rt: &tokio::runtime::Runtime, store: &PinnedStore, policy: Policy, ops: &[(u64, Op)]) {
    rt.block_on(async {
        let mut pair = Pair::new(store, policy);
        for (t, op) in ops {
            pair.step(EPOCH_US + t, op).await.unwrap();
        }
    });
}

/// Hand-written histories at the exact edges of each rule (refill instants, window
/// ends, lease expiry, refunds), each on a fresh key.
pub fn check_hand_written_histories(rt: &tokio::runtime::Runtime, store: &PinnedStore) {
    let compare = |policy, ops: &[(u64, Op)]| compare(rt, store, policy, ops);
    let acquire = |cost| Op::Acquire { cost, lease: true };
    let peek = |cost| Op::Peek { cost };
    // Token bucket, 3/s (interval rounded up to 333_334 µs), burst 3, at the exact
    // edges of refill; a refund of the last admission is exact, one of an earlier
    // admission gives back only what has not refilled.
    let tb = Policy {
        rule: Some(token_bucket(333_334, 3)),
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
            (333_334, Op::Refund(3)),
            (333_334, peek(3)),
            (400_000, Op::Refund(0)),
            (400_000, peek(3)),
            (10_000_000, peek(3)),
            (10_000_000, acquire(3)),
        ],
    );
    // Sliding window 4 per 1 s with costs: retry waits for enough units to leave; a
    // refund takes back its own units, not others'.
    let sw = Policy {
        rule: Some(sliding_window(4, 1_000_000)),
        concurrency: None,
    };
    compare(
        sw,
        &[
            (0, acquire(2)),
            (500_000, acquire(2)),
            (600_000, acquire(3)),
            (600_000, peek(3)),
            (600_000, Op::Refund(1)),
            (600_000, peek(3)),
            (999_999, acquire(1)),
            (1_000_000, acquire(1)),
            (1_000_000, acquire(2)),
            (1_000_000, Op::Refund(0)),
            (1_500_000, peek(1)),
            (1_500_000, acquire(2)),
            (9_000_000, peek(4)),
        ],
    );
    // A sliding window bounded to 4 runs (grid 500 ms): exact while the runs fit,
    // then merged forward; a refund finds units in the run they were merged into.
    let bounded = Policy {
        rule: Some(bounded_window(10, 1_000_000, 4)),
        concurrency: None,
    };
    compare(
        bounded,
        &[
            (0, acquire(1)),
            (100_000, acquire(1)),
            (200_000, acquire(1)),
            (300_000, acquire(1)),
            (400_000, acquire(2)),
            (400_000, peek(1)),
            (1_000_000, acquire(5)),
            (1_000_000, acquire(4)),
            (1_000_000, Op::Refund(3)),
            (1_000_000, Op::Settle { n: 4, kept: 1 }),
            (1_499_999, peek(6)),
            (1_500_000, peek(6)),
        ],
    );
    // Fixed windows of 1 s on the epoch: the count starts over at each boundary;
    // a settle gives back in its own window only.
    let fixed = Policy {
        rule: Some(fixed_window(3, 1_000_000)),
        concurrency: None,
    };
    compare(
        fixed,
        &[
            (0, acquire(2)),
            (0, Op::Settle { n: 0, kept: 1 }),
            (0, acquire(2)),
            (0, peek(1)),
            (999_999, acquire(1)),
            (1_000_000, acquire(3)),
            (1_000_000, Op::Refund(0)),
            (1_000_000, peek(1)),
        ],
    );
    // A daily quota resets at UTC midnight (2025-06-16, 32 000 s after EPOCH_US), and
    // a monthly one at midnight of the 1st (2025-07-01) in UTC+02:00: 22:00 UTC.
    let daily = Policy {
        rule: Some(calendar(2, Period::Day, 0)),
        concurrency: None,
    };
    let midnight = 32_000_000_000;
    compare(
        daily,
        &[
            (midnight - 10, acquire(2)),
            (midnight - 1, acquire(1)),
            (midnight - 1, peek(1)),
            (midnight, acquire(2)),
            (midnight, peek(1)),
        ],
    );
    let monthly = Policy {
        rule: Some(calendar(3, Period::Month, 7200)),
        concurrency: None,
    };
    let first_of_july = 1_328_000_000_000 - 7_200_000_000;
    compare(
        monthly,
        &[
            (0, acquire(3)),
            (first_of_july - 1, acquire(1)),
            (first_of_july, acquire(3)),
            (first_of_july, peek(1)),
        ],
    );
    // Concurrency and rate together: a full cap consumes no rate, a rate refusal
    // takes no slot, leases expire, renew and release, a refund frees its slot.
    let both = Policy {
        rule: Some(token_bucket(1_000_000, 2)),
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
            (4_000_001, Op::Refund(0)),
            (4_000_001, peek(1)),
            (9_000_000, Op::Renew(2)),
        ],
    );
    let window_cap = Policy {
        rule: Some(sliding_window(2, 2_000_000)),
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
    // No rate, only a cap: any cost, slots counted, the cap is the limit.
    let slots = Policy {
        rule: None,
        concurrency: concurrency(2, 1_000_000),
    };
    compare(
        slots,
        &[
            (0, peek(1)),
            (0, acquire(5)),
            (0, acquire(1)),
            (0, acquire(1)),
            (0, peek(1)),
            (10, Op::Release(0)),
            (10, peek(1)),
            (1_000_000, acquire(1)),
            (1_000_001, acquire(1)),
        ],
    );
}

/// Random rules and histories (proptest, 300 cases), each on a fresh key.
pub fn check_random_histories(rt: &tokio::runtime::Runtime, store: &PinnedStore) {
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
                    let mut pair = Pair::new(store, policy);
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

/// One group call: a cost per member (and whether it takes a lease).
#[derive(Debug, Clone)]
struct GroupCall {
    members: Vec<(u32, bool)>,
}

/// Random groups of 2 or 3 members (each its own limiter and policy; the same key
/// name on each), decided all or nothing by the engine and by
/// `algorithm::decide_all`, every outcome compared (proptest, 100 cases).
pub fn check_random_groups(rt: &tokio::runtime::Runtime, store: &PinnedStore) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 100,
        ..ProptestConfig::default()
    });
    let start = EPOCH_US + fastrand::u64(..1_000_000_000);
    let strategy = prop::collection::vec(policies(), 2..=3).prop_flat_map(|policies| {
        let n = policies.len();
        let call = prop::collection::vec((1u32..=4, any::<bool>()), n..=n)
            .prop_map(|members| GroupCall { members });
        let calls = prop::collection::vec((steps(), call), 1..30);
        (Just(policies), calls)
    });
    runner
        .run(&strategy, |(policies, calls)| {
            rt.block_on(async {
                let limiters: Vec<_> = policies.iter().map(|p| store.limiter(*p)).collect();
                let mut states: Vec<KeyState> = policies.iter().map(KeyState::fresh).collect();
                let key = format!("user:{{{}}}", fastrand::u32(..));
                let mut t = start;
                for (dt, call) in &calls {
                    t += dt;
                    (store.set_now)(t);
                    let members: Vec<(u32, Option<LeaseId>)> = call
                        .members
                        .iter()
                        .zip(&policies)
                        .map(|(&(cost, lease), policy)| {
                            let cost = policy.rule.map_or(cost, |r| cost.min(r.capacity()));
                            let lease =
                                (lease && policy.concurrency.is_some()).then(LeaseId::random);
                            (cost, lease)
                        })
                        .collect();
                    let mut reference: Vec<algorithm::Member<'_>> = states
                        .iter_mut()
                        .zip(&policies)
                        .zip(&members)
                        .map(|((state, policy), &(cost, lease))| algorithm::Member {
                            policy,
                            state,
                            cost,
                            lease,
                        })
                        .collect();
                    let expected = algorithm::decide_all(&mut reference, t * 1000);
                    let group: Vec<GroupMember<'_>> = limiters
                        .iter()
                        .zip(&members)
                        .map(|(limiter, &(cost, lease))| GroupMember {
                            limiter: &**limiter,
                            key: &key,
                            cost,
                            lease,
                        })
                        .collect();
                    let actual = store.engine.acquire_all(&group).await.unwrap();
                    let actual = match actual {
                        GroupDecision::Admitted(decided) => GroupDecision::Admitted(
                            decided
                                .into_iter()
                                .map(|(d, receipt)| (d, store.in_ns(receipt)))
                                .collect(),
                        ),
                        refused => refused,
                    };
                    prop_assert_eq!(actual, expected, "group at {}", t);
                }
                Ok(())
            })
        })
        .unwrap();
}

/// How a test gets calls to its store as one batch (`docs/design.md#batches`).
pub trait BatchSender {
    /// Sends `calls` to the store as one batch, decided in order: each call is its
    /// members, a single acquire being a call of one member. The store's answer to
    /// each call, as a group's.
    fn send_batch<'a>(
        &'a self,
        calls: &'a [Vec<GroupMember<'a>>],
    ) -> LocalBoxFuture<'a, Result<Vec<GroupDecision>, StoreError>>;
}

/// A single acquire's answer as the answer to a call of one member.
pub fn alone_as_group((decision, receipt): (Decision, Receipt)) -> GroupDecision {
    match decision.allowed() {
        true => GroupDecision::Admitted(vec![(decision, receipt)]),
        false => GroupDecision::Refused {
            index: 0,
            refusal: decision,
            peeks: vec![None],
        },
    }
}

/// One call of a batch: its members, each `(pair, cost, takes a lease)` on a
/// distinct pair (limiter, key) of the history; one member is a single acquire.
#[derive(Debug, Clone)]
pub struct BatchCall(Vec<(usize, u32, bool)>);

/// What a batched history does at one instant.
#[derive(Debug, Clone)]
pub enum Step {
    /// Acquires and groups sent together, as one batch.
    Batch(Vec<BatchCall>),
    /// One operation on one pair, sent alone.
    Alone(usize, Op),
}

/// A single acquire on pair `at`, with a lease where its limiter has slots.
fn one(at: usize, cost: u32) -> BatchCall {
    BatchCall(vec![(at, cost, true)])
}

/// A group of `(pair, cost)`, with leases where the limiters have slots.
fn group(members: &[(usize, u32)]) -> BatchCall {
    BatchCall(members.iter().map(|&(at, cost)| (at, cost, true)).collect())
}

/// Runs `steps` (time in µs, step) on fresh limiters of `policies` with `keys` keys
/// each (pair `i` is key `i % keys` of limiter `i / keys`), comparing every answer.
async fn run_batched(
    store: &PinnedStore,
    send: &dyn BatchSender,
    policies: &[Policy],
    keys: usize,
    steps: &[(u64, Step)],
) -> Result<(), TestCaseError> {
    let mut pairs = Vec::new();
    for &policy in policies {
        let limiter = store.limiter(policy);
        for key in 0..keys {
            let key = format!("user:{{{key}}}");
            pairs.push(Pair::on(store, policy, limiter.clone(), key));
        }
    }
    for (t_us, step) in steps {
        match step {
            Step::Alone(at, op) => pairs[*at].step(*t_us, op).await?,
            Step::Batch(calls) => decide_batch(store, send, &mut pairs, *t_us, calls).await?,
        }
    }
    Ok(())
}

/// One batch at `t_us`: the reference decides its calls one after the other, the
/// store in one operation; every answer compared, then each admission kept on its
/// pairs for the refunds, settles and releases that follow.
async fn decide_batch(
    store: &PinnedStore,
    send: &dyn BatchSender,
    pairs: &mut [Pair<'_>],
    t_us: u64,
    calls: &[BatchCall],
) -> Result<(), TestCaseError> {
    (store.set_now)(t_us);
    let now = t_us * 1000;
    let mut sent: Vec<Vec<(usize, u32, Option<LeaseId>)>> = Vec::new();
    let mut expected = Vec::new();
    for BatchCall(members) in calls {
        let members: Vec<_> = members
            .iter()
            .map(|&(at, cost, lease)| {
                let pair = &pairs[at];
                let lease = (lease && pair.policy.concurrency.is_some()).then(LeaseId::random);
                (at, pair.cost(cost), lease)
            })
            .collect();
        expected.push(match members[..] {
            [(at, cost, lease)] => {
                let pair = &mut pairs[at];
                alone_as_group(algorithm::decide(
                    &pair.policy,
                    &mut pair.state,
                    now,
                    cost,
                    lease,
                ))
            }
            _ => {
                let policies: Vec<Policy> = members.iter().map(|m| pairs[m.0].policy).collect();
                let mut states: Vec<KeyState> =
                    members.iter().map(|m| pairs[m.0].state.clone()).collect();
                let mut group: Vec<algorithm::Member<'_>> = states
                    .iter_mut()
                    .zip(&policies)
                    .zip(&members)
                    .map(|((state, policy), &(_, cost, lease))| algorithm::Member {
                        policy,
                        state,
                        cost,
                        lease,
                    })
                    .collect();
                let decision = algorithm::decide_all(&mut group, now);
                for (state, &(at, ..)) in states.into_iter().zip(&members) {
                    pairs[at].state = state;
                }
                decision
            }
        });
        sent.push(members);
    }
    let batch: Vec<Vec<GroupMember<'_>>> = sent
        .iter()
        .map(|members| {
            let member = |&(at, cost, lease): &(usize, u32, Option<LeaseId>)| GroupMember {
                limiter: &*pairs[at].limiter,
                key: &pairs[at].key,
                cost,
                lease,
            };
            members.iter().map(member).collect()
        })
        .collect();
    let answers = send
        .send_batch(&batch)
        .await
        .expect("the store decides the batch");
    drop(batch);
    prop_assert_eq!(
        answers.len(),
        calls.len(),
        "answers to the batch at {}",
        t_us
    );
    for (i, (answer, expected)) in answers.into_iter().zip(expected).enumerate() {
        let in_ns = match &answer {
            GroupDecision::Admitted(decided) => {
                GroupDecision::Admitted(decided.iter().map(|&(d, r)| (d, store.in_ns(r))).collect())
            }
            refused => refused.clone(),
        };
        prop_assert_eq!(&in_ns, &expected, "call {} of the batch at {}", i, t_us);
        if let (GroupDecision::Admitted(actual), GroupDecision::Admitted(expected)) =
            (answer, expected)
        {
            let decided = sent[i].iter().zip(actual).zip(expected);
            for ((&(at, cost, lease), (_, actual)), (_, expected)) in decided {
                pairs[at].leases.extend(lease);
                pairs[at].taken.push(Taken {
                    cost,
                    lease,
                    expected,
                    actual,
                });
            }
        }
    }
    Ok(())
}

/// Hand-written batches (`docs/design.md#batches`): calls on one key see the calls
/// before them in their batch, a group refused because of an earlier call takes
/// nothing (so a later call gets what the group would have taken), slots taken
/// earlier in a batch refuse later calls, and single operations in between see
/// what the batches took.
pub fn check_hand_written_batches(
    rt: &tokio::runtime::Runtime,
    store: &PinnedStore,
    send: &dyn BatchSender,
) {
    let run = |policies: &[Policy], keys, steps: &[(u64, Step)]| {
        let steps: Vec<_> = steps
            .iter()
            .map(|(t, s)| (EPOCH_US + t, s.clone()))
            .collect();
        rt.block_on(run_batched(store, send, policies, keys, &steps))
            .unwrap();
    };
    // Pairs 0, 1: a token bucket 3/s, burst 3, keys 0 and 1; pairs 2, 3: fixed
    // windows of 3 per second on the same key names.
    let rates = [
        Policy {
            rule: Some(token_bucket(333_334, 3)),
            concurrency: None,
        },
        Policy {
            rule: Some(fixed_window(3, 1_000_000)),
            concurrency: None,
        },
    ];
    run(
        &rates,
        2,
        &[
            (
                0,
                Step::Batch(vec![
                    one(0, 2),
                    one(0, 2),
                    one(0, 1),
                    one(1, 3),
                    group(&[(0, 1), (2, 1)]),
                    one(2, 3),
                    one(2, 1),
                    group(&[(3, 2), (1, 1)]),
                    one(3, 2),
                ]),
            ),
            (0, Step::Alone(0, Op::Refund(0))),
            (0, Step::Alone(0, Op::Peek { cost: 3 })),
            (
                333_333,
                Step::Batch(vec![one(0, 1), one(0, 2), one(0, 1), one(0, 1)]),
            ),
            (
                333_334,
                Step::Batch(vec![one(0, 1), group(&[(1, 1), (3, 1)]), one(1, 1)]),
            ),
            (999_999, Step::Alone(2, Op::Settle { n: 0, kept: 1 })),
            (
                1_000_000,
                Step::Batch(vec![
                    group(&[(2, 3), (3, 1), (0, 1)]),
                    one(3, 3),
                    one(3, 2),
                    one(2, 1),
                ]),
            ),
            (1_000_000, Step::Alone(3, Op::Peek { cost: 1 })),
        ],
    );
    // A sliding window bounded to 4 runs (grid 250 ms) with 2 slots of 500 ms,
    // keys 0 and 1: batches fill the slots, then the runs, which merge.
    let window_cap = [Policy {
        rule: Some(bounded_window(8, 1_000_000, 4)),
        concurrency: concurrency(2, 500_000),
    }];
    run(
        &window_cap,
        2,
        &[
            (
                0,
                Step::Batch(vec![one(0, 1), one(0, 1), one(0, 1), one(1, 2)]),
            ),
            (100_000, Step::Alone(0, Op::Release(0))),
            (100_000, Step::Batch(vec![one(0, 2), one(0, 1), one(1, 1)])),
            (300_000, Step::Alone(1, Op::Refund(0))),
            (300_000, Step::Batch(vec![one(1, 1), one(1, 1), one(1, 1)])),
            (499_999, Step::Alone(0, Op::Renew(0))),
            (500_000, Step::Batch(vec![one(0, 1), one(0, 1), one(1, 1)])),
            (650_000, Step::Batch(vec![one(0, 1), one(0, 1), one(0, 1)])),
            (900_000, Step::Alone(0, Op::Settle { n: 1, kept: 0 })),
            (
                1_000_001,
                Step::Batch(vec![one(0, 3), one(0, 2), one(1, 1), one(0, 1)]),
            ),
            (1_250_000, Step::Alone(0, Op::Peek { cost: 4 })),
        ],
    );
    // Slots without a rate and a sliding window 2/s in groups: a group refused by
    // the window leaves the slot to the single call after it.
    let slots_and_window = [
        Policy {
            rule: None,
            concurrency: concurrency(1, 1_000_000),
        },
        Policy {
            rule: Some(sliding_window(2, 1_000_000)),
            concurrency: None,
        },
    ];
    run(
        &slots_and_window,
        1,
        &[
            (
                0,
                Step::Batch(vec![one(1, 2), group(&[(0, 1), (1, 1)]), one(0, 1)]),
            ),
            (10, Step::Alone(0, Op::Release(0))),
            (10, Step::Batch(vec![group(&[(1, 1), (0, 5)]), one(0, 1)])),
            (
                1_000_000,
                Step::Batch(vec![group(&[(0, 1), (1, 2)]), one(1, 1)]),
            ),
            (1_000_010, Step::Alone(0, Op::Refund(0))),
            (1_000_010, Step::Batch(vec![group(&[(0, 1), (1, 1)])])),
        ],
    );
}

/// Random histories of batches and single operations (proptest, 200 cases): one to
/// three limiters, each its own policy, on one to three keys each; batches of 2 to
/// 10 acquires and groups of distinct pairs, on any of those keys.
pub fn check_random_batches(
    rt: &tokio::runtime::Runtime,
    store: &PinnedStore,
    send: &dyn BatchSender,
) {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    let start = EPOCH_US + fastrand::u64(..1_000_000_000);
    runner
        .run(&batched_histories(), |(policies, keys, steps)| {
            let mut t = start;
            let steps: Vec<_> = steps
                .into_iter()
                .map(|(dt, step)| {
                    t += dt;
                    (t, step)
                })
                .collect();
            rt.block_on(run_batched(store, send, &policies, keys, &steps))
        })
        .unwrap();
}

/// Policies, keys per limiter, and (time step, step).
fn batched_histories() -> impl Strategy<Value = (Vec<Policy>, usize, Vec<(u64, Step)>)> {
    (prop::collection::vec(policies(), 1..=3), 1usize..=3).prop_flat_map(|(policies, keys)| {
        let pairs = policies.len() * keys;
        let single = (0..pairs, 1u32..=4, any::<bool>()).prop_map(|m| BatchCall(vec![m]));
        let call = match pairs {
            1 => single.boxed(),
            _ => {
                let members =
                    prop::sample::subsequence((0..pairs).collect::<Vec<_>>(), 2..=pairs.min(3))
                        .prop_shuffle()
                        .prop_flat_map(|at| {
                            let costs = prop::collection::vec((1u32..=4, any::<bool>()), at.len());
                            (Just(at), costs)
                        });
                let group = members.prop_map(|(at, costs)| {
                    let members = at.into_iter().zip(costs);
                    BatchCall(
                        members
                            .map(|(at, (cost, lease))| (at, cost, lease))
                            .collect(),
                    )
                });
                prop_oneof![3 => single, 1 => group].boxed()
            }
        };
        let step = prop_oneof![
            2 => prop::collection::vec(call, 2..=10).prop_map(Step::Batch),
            3 => (0..pairs, op()).prop_map(|(at, op)| Step::Alone(at, op)),
        ];
        let spans = policies.iter().flat_map(spans).collect();
        let steps = prop::collection::vec((time_steps(spans), step), 1..25);
        (Just(policies), Just(keys), steps)
    })
}
