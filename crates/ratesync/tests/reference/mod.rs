//! The reference model for every engine: one key (or a group of keys) driven through
//! the same operations at the same times by `ratesync::algorithm` and by the store,
//! every answer compared, over proptest-generated rules and histories.
//!
//! The store's clock is pinned by the test (a `PinnedClock` for Redis and PostgreSQL,
//! the memory engine's own `ManualClock`). The stores that decide in microseconds get
//! rules built from whole microseconds (`interval_us * 1000`) and the reference
//! decides at `t_us * 1000` while the store's clock reads `t_us`.

#![allow(dead_code)]

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use ratesync::algorithm::{
    self, Concurrency, GroupDecision, KeyState, LeaseId, Policy, Receipt, Rule,
};
use ratesync::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, ReleaseSignal};
use ratesync::{FixedWindow, Period, SlidingWindow, TokenBucket};

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
        Pair {
            store,
            policy,
            state: KeyState::fresh(&policy),
            limiter: store.limiter(policy),
            key: format!("user:{{{}}}", fastrand::u32(..)),
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

pub fn ops(policy: &Policy) -> impl Strategy<Value = Vec<(u64, Op)>> {
    let op = prop_oneof![
        6 => (1u32..=8, any::<bool>()).prop_map(|(cost, lease)| Op::Acquire { cost, lease }),
        2 => (1u32..=8).prop_map(|cost| Op::Peek { cost }),
        1 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Renew),
        1 => any::<usize>().prop_map(Op::Refund),
        1 => (any::<usize>(), 0u32..=8).prop_map(|(n, kept)| Op::Settle { n, kept }),
    ];
    // Steps of zero (same microsecond), small, long enough to refill or expire, and
    // exactly one span of the rule or lease (±1 µs), where off-by-one errors show.
    let spans = spans(policy);
    let edge = (prop::sample::select(spans), -1i64..=1)
        .prop_map(|(span, off)| span.saturating_add_signed(off));
    let dt = prop_oneof![4 => steps(), 1 => edge];
    prop::collection::vec((dt, op), 1..40)
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
