//! Property tests of the pure decision functions in `ratesync::algorithm`, written
//! after `docs/design.md#algorithms`.
//!
//! Each property drives the real functions with arbitrary rules and arbitrary sorted
//! attempt times (equal instants, gaps of a fraction of a unit, exact multiples of it,
//! big gaps, and attempts placed exactly at a previous retry-after) and checks them
//! against a naive reference model written here:
//!
//! * token bucket: a bucket whose level (in nanoseconds of refill) grows by one per
//!   nanosecond up to `burst · interval` and loses `cost · interval` per admission;
//! * sliding window: the plain list of admissions, counted over `(now − window, now]`
//!   (and, for a log bounded below the admissions it sees, the same list checked
//!   against the promise and the stated bound);
//! * fixed window: the admissions counted per window of the calendar;
//! * leases: a plain list of (id, expiry).
//!
//! The number of cases is proptest's default (256 per property, `PROPTEST_CASES`
//! overrides it).

use std::time::Duration;

use proptest::prelude::*;
use ratesync::algorithm::{
    self, Concurrency, FixedWindow, KeyState, LeaseId, Period, Policy, RateState, Rule,
    SlidingWindow, TokenBucket, WindowCount, WindowLog, MAX_PRECISION,
};
use ratesync::{Decision, DeniedBy};

const SEC: u64 = 1_000_000_000;

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).expect("duration fits in u64 nanoseconds")
}

// ---------------------------------------------------------------------------------
// Attempt schedules
// ---------------------------------------------------------------------------------

/// One attempt, before it is scaled to a rule: how far after the previous attempt it
/// comes, and how much it costs.
#[derive(Debug, Clone, Copy)]
struct RawStep {
    gap_kind: u8,
    gap_seed: u64,
    cost_seed: u32,
    small_cost: bool,
}

fn raw_step() -> impl Strategy<Value = RawStep> {
    (
        0u8..8,
        any::<u64>(),
        any::<u32>(),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(gap_kind, gap_seed, cost_seed, small_cost)| RawStep {
            gap_kind,
            gap_seed,
            cost_seed,
            small_cost,
        })
}

fn raw_steps(max: usize) -> impl Strategy<Value = Vec<RawStep>> {
    prop::collection::vec(raw_step(), 1..max)
}

/// The gap before an attempt, in nanoseconds. `unit` is the rule's natural time unit
/// (the emission interval or the window), `big` a long gap that refills everything,
/// and `last_retry` the retry-after of the previous attempt when it was refused.
fn gap(step: &RawStep, unit: u64, big: u64, last_retry: Option<u64>) -> u64 {
    let seed = step.gap_seed;
    match step.gap_kind {
        // Same instant as the previous attempt.
        0 | 1 => 0,
        // Well inside one unit.
        2 => seed % (unit / 4 + 1),
        // Around one unit, the exact unit included.
        3 => seed % (2 * unit + 1),
        // Exact multiples of the unit (0, 1 or 2 units).
        4 => unit * (seed % 3),
        // Up to a long gap.
        5 => seed % (big + 1),
        // Exactly at, or one nanosecond before, the previous retry-after.
        _ => match last_retry {
            Some(r) if r > 0 && seed & 1 == 0 => r - 1,
            Some(r) => r,
            None => seed % (unit + 1),
        },
    }
}

fn cost(step: &RawStep, capacity: u32) -> u32 {
    let max = if step.small_cost {
        capacity.min(3)
    } else {
        capacity
    };
    1 + step.cost_seed % max
}

/// A start time away from zero (zero is also "never seen" for GCRA), sometimes large.
fn start_time() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 1u64..10 * SEC, 0u64..(1u64 << 50)]
}

/// `docs/design.md#decisions`, peek: the decision the attempt would get (allowed,
/// limit, retry-after, denied-by), consuming nothing. So `remaining` is what is
/// available now: when the attempt would be admitted, it is the decision's `remaining`
/// plus the cost. A refused attempt consumes nothing, so then peek and decide agree in
/// every field.
fn assert_peek_like_decide(peeked: &Decision, decided: &Decision, cost: u32) {
    assert_eq!(
        peeked.allowed(),
        decided.allowed(),
        "{peeked:?} vs {decided:?}"
    );
    assert_eq!(peeked.limit(), decided.limit(), "{peeked:?} vs {decided:?}");
    assert_eq!(
        peeked.retry_after(),
        decided.retry_after(),
        "{peeked:?} vs {decided:?}"
    );
    assert_eq!(
        peeked.denied_by(),
        decided.denied_by(),
        "{peeked:?} vs {decided:?}"
    );
    if decided.allowed() {
        assert_eq!(
            peeked.remaining(),
            decided.remaining() + u64::from(cost),
            "{peeked:?} vs {decided:?}"
        );
        // The token bucket reports the reset after the admission, the sliding window
        // the reset of the key as it is: either way no later than the admission's.
        assert!(
            peeked.reset_after() <= decided.reset_after(),
            "{peeked:?} vs {decided:?}"
        );
    } else {
        assert_eq!(peeked, decided);
    }
}

// ---------------------------------------------------------------------------------
// Reference models
// ---------------------------------------------------------------------------------

/// What a model says about one attempt; the same numbers as [`Decision`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    allowed: bool,
    remaining: u64,
    retry_after: u64,
    reset_after: u64,
}

fn assert_matches(d: &Decision, e: &Expected, limit: u64) {
    assert_eq!(d.allowed(), e.allowed, "allowed: {d:?} vs model {e:?}");
    assert_eq!(d.limit(), limit, "limit: {d:?}");
    assert_eq!(
        d.remaining(),
        e.remaining,
        "remaining: {d:?} vs model {e:?}"
    );
    assert_eq!(
        nanos(d.retry_after()),
        e.retry_after,
        "retry_after: {d:?} vs model {e:?}"
    );
    assert_eq!(
        nanos(d.reset_after()),
        e.reset_after,
        "reset_after: {d:?} vs model {e:?}"
    );
    let expected_denial = if e.allowed {
        None
    } else {
        Some(DeniedBy::Rate)
    };
    assert_eq!(d.denied_by(), expected_denial, "denied_by: {d:?}");
}

/// Fixed windows as a list of admissions, counted in the window holding `now`.
#[derive(Debug, Clone)]
struct NaiveFixed {
    rule: FixedWindow,
    admitted: Vec<(u64, u32)>,
}

impl NaiveFixed {
    fn new(fw: &FixedWindow) -> Self {
        NaiveFixed {
            rule: *fw,
            admitted: Vec::new(),
        }
    }

    /// Units admitted in the window holding `at`.
    fn used_at(&self, at: u64) -> u64 {
        let (start, end) = self.rule.bounds(at);
        self.admitted
            .iter()
            .filter(|(t, _)| *t >= start && *t < end)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    fn attempt(&mut self, now: u64, cost: u32) -> Expected {
        let limit = u64::from(self.rule.limit());
        let used = self.used_at(now);
        let end = self.rule.bounds(now).1;
        if used + u64::from(cost) <= limit {
            self.admitted.push((now, cost));
            Expected {
                allowed: true,
                remaining: limit - used - u64::from(cost),
                retry_after: 0,
                reset_after: end - now,
            }
        } else {
            Expected {
                allowed: false,
                remaining: limit - used,
                retry_after: end - now,
                reset_after: end - now,
            }
        }
    }
}

/// A token bucket as everyone draws it: a level that refills continuously, one unit
/// per `interval`, capped at `burst` units. The level is kept in nanoseconds of
/// refill (`units · interval`) so everything is exact integers. A key never seen
/// starts full.
#[derive(Debug, Clone)]
struct RefillBucket {
    interval: u64,
    capacity: u128,
    level: u128,
    last: Option<u64>,
}

impl RefillBucket {
    fn new(tb: &TokenBucket) -> Self {
        let capacity = u128::from(tb.interval_nanos()) * u128::from(tb.burst());
        RefillBucket {
            interval: tb.interval_nanos(),
            capacity,
            level: capacity,
            last: None,
        }
    }

    fn attempt(&mut self, now: u64, cost: u32) -> Expected {
        if let Some(last) = self.last {
            assert!(now >= last, "schedules are sorted");
            self.level = self.capacity.min(self.level + u128::from(now - last));
        }
        self.last = Some(now);
        let need = u128::from(cost) * u128::from(self.interval);
        let interval = u128::from(self.interval);
        if self.level >= need {
            self.level -= need;
            Expected {
                allowed: true,
                remaining: (self.level / interval) as u64,
                retry_after: 0,
                reset_after: (self.capacity - self.level) as u64,
            }
        } else {
            Expected {
                allowed: false,
                remaining: (self.level / interval) as u64,
                retry_after: (need - self.level) as u64,
                reset_after: (self.capacity - self.level) as u64,
            }
        }
    }
}

/// A sliding window as `docs/design.md#sliding-window` states it: the list of
/// admissions, and an attempt of `cost` at `now` is admitted iff the units admitted in
/// `(now − window, now]` plus `cost` stay within `limit`.
#[derive(Debug, Clone)]
struct NaiveWindow {
    limit: u64,
    window: u64,
    admitted: Vec<(u64, u32)>,
}

impl NaiveWindow {
    fn new(sw: &SlidingWindow) -> Self {
        NaiveWindow {
            limit: u64::from(sw.limit()),
            window: sw.window_nanos(),
            admitted: Vec::new(),
        }
    }

    /// Units admitted at or before `at` that still count in the window ending at `at`.
    fn used_at(&self, at: u64) -> u64 {
        self.admitted
            .iter()
            .filter(|(t, _)| *t <= at && t + self.window > at)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }

    fn attempt(&mut self, now: u64, cost: u32) -> Expected {
        let used = self.used_at(now);
        let newest = self.admitted.last().map(|(t, _)| *t);
        if used + u64::from(cost) <= self.limit {
            self.admitted.push((now, cost));
            Expected {
                allowed: true,
                remaining: self.limit - used - u64::from(cost),
                retry_after: 0,
                // The newest admission is now this one; it leaves after a whole window.
                reset_after: self.window,
            }
        } else {
            // The first instant after `now` at which, with no further admission, the
            // attempt fits: some admission's exit time, searched naively.
            let retry_at = self
                .admitted
                .iter()
                .map(|(t, _)| t + self.window)
                .filter(|exit| *exit > now)
                .filter(|exit| self.used_at_later(*exit) + u64::from(cost) <= self.limit)
                .min()
                .expect("an attempt within the limit fits once the window has passed");
            Expected {
                allowed: false,
                remaining: self.limit.saturating_sub(used),
                retry_after: retry_at - now,
                reset_after: newest.map_or(0, |t| t + self.window - now),
            }
        }
    }

    /// Units of the past admissions still counting at the later instant `at`.
    fn used_at_later(&self, at: u64) -> u64 {
        self.admitted
            .iter()
            .filter(|(t, _)| t + self.window > at)
            .map(|(_, n)| u64::from(*n))
            .sum()
    }
}

// ---------------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------------

fn token_bucket() -> impl Strategy<Value = (f64, TokenBucket)> {
    (
        prop_oneof![
            0.1f64..10.0,
            0.1f64..10_000.0,
            (1u32..100).prop_map(f64::from)
        ],
        prop_oneof![Just(1u32), 1u32..10, 1u32..=1000],
    )
        .prop_map(|(rate, burst)| (rate, TokenBucket::new(rate, burst).unwrap()))
}

/// A sliding window whose log never fills in these schedules (fewer attempts than
/// its precision): exact, the full log's decisions.
fn sliding_window() -> impl Strategy<Value = SlidingWindow> {
    (
        prop_oneof![Just(1u32), 1u32..10, 1u32..200],
        prop_oneof![1u64..1000, 1u64..=10 * SEC, Just(SEC)],
    )
        .prop_map(|(limit, window)| {
            let sw = SlidingWindow::new(limit, window as f64 / 1e9).unwrap();
            assert_eq!(
                sw.window_nanos(),
                window,
                "a window given in whole ns is exact"
            );
            sw.with_precision(MAX_PRECISION).unwrap()
        })
}

/// A sliding window bounded to a few runs, so that schedules fill its log.
fn bounded_window() -> impl Strategy<Value = SlidingWindow> {
    (
        prop_oneof![1u32..10, 1u32..200, 1_000u32..100_000],
        prop_oneof![1u64..=10 * SEC, Just(SEC), Just(60 * SEC)],
        4u32..=12,
    )
        .prop_map(|(limit, window, precision)| {
            let sw = SlidingWindow::new(limit, window as f64 / 1e9).unwrap();
            sw.with_precision(precision).unwrap()
        })
}

/// Fixed windows: evenly spaced from the epoch, aligned to a UTC offset, or calendar
/// days, weeks and months.
fn fixed_window() -> impl Strategy<Value = FixedWindow> {
    let limit = prop_oneof![Just(1u32), 1u32..10, 1u32..200];
    let offset = -50_400i32..=50_400;
    prop_oneof![
        (limit.clone(), 1u64..=10 * SEC)
            .prop_map(|(l, w)| FixedWindow::with_window_nanos(l, w).unwrap()),
        (
            limit.clone(),
            prop::sample::select(vec![60.0, 900.0, 3600.0]),
            offset.clone()
        )
            .prop_map(|(l, w, o)| FixedWindow::aligned(l, w, o / 60 * 60).unwrap()),
        (
            limit,
            prop::sample::select(vec![Period::Day, Period::Week, Period::Month]),
            offset
        )
            .prop_map(|(l, p, o)| FixedWindow::calendar(l, p, o).unwrap()),
    ]
}

// ---------------------------------------------------------------------------------
// Token bucket (`docs/design.md#token-bucket`)
// ---------------------------------------------------------------------------------

/// One attempt of a run against a rule: when, how much, and what was decided.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    at: u64,
    cost: u32,
    decision: Decision,
}

/// Runs a schedule against a token bucket, checking every decision against the
/// refilling-bucket model and every refusal's retry-after to the nanosecond.
fn run_token_bucket(tb: &TokenBucket, start: u64, steps: &[RawStep]) -> Vec<Attempt> {
    let interval = tb.interval_nanos();
    let big = interval.saturating_mul(2 * u64::from(tb.burst()) + 2);
    let mut model = RefillBucket::new(tb);
    let mut tat = 0u64;
    let mut now = start;
    let mut last_retry = None;
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        now += gap(step, interval, big, last_retry);
        let cost = cost(step, tb.burst());
        let peeked = tb.peek(tat, now, cost);
        let (decision, new_tat) = tb.decide(tat, now, cost);
        assert_peek_like_decide(&peeked, &decision, cost);
        assert_matches(&decision, &model.attempt(now, cost), u64::from(tb.burst()));
        assert_eq!(new_tat.is_some(), decision.allowed());
        if decision.allowed() {
            tat = new_tat.unwrap();
            last_retry = None;
        } else {
            // Property 2: retry-after is exact. The state is one number and deciding
            // is pure, so "no other call in between" is deciding against the same TAT.
            let r = nanos(decision.retry_after());
            assert!(r > 0, "a refusal always has something to wait for");
            let (early, none) = tb.decide(tat, now + r - 1, cost);
            assert!(
                !early.allowed() && none.is_none(),
                "admitted 1ns early: {early:?}"
            );
            let (on_time, _) = tb.decide(tat, now + r, cost);
            assert!(on_time.allowed(), "refused at its retry-after: {on_time:?}");
            last_retry = Some(r);
        }
        out.push(Attempt {
            at: now,
            cost,
            decision,
        });
    }
    out
}

/// The most units admitted in any closed interval `[a, a + t]` is reached with `a` and
/// `a + t` at admission times; checks `check(units, t)` for every such interval.
fn for_every_interval(attempts: &[Attempt], mut check: impl FnMut(u64, u64)) {
    let admitted: Vec<&Attempt> = attempts.iter().filter(|a| a.decision.allowed()).collect();
    for (i, first) in admitted.iter().enumerate() {
        let mut units = 0u64;
        for (j, last) in admitted.iter().enumerate().skip(i) {
            units += u64::from(last.cost);
            // Only close the interval after the last admission at this instant.
            if admitted.get(j + 1).is_none_or(|next| next.at != last.at) {
                check(units, last.at - first.at);
            }
        }
    }
}

proptest! {
    /// `docs/design.md#token-bucket`: in ANY closed interval `[a, a + t]`, the units
    /// admitted are at most `burst + floor(t / interval)`, where
    /// `interval = interval_nanos()` is `ceil(1e9 / rate)`; hence also at most
    /// `burst + rate · t`.
    ///
    /// Why it holds (what the test checks): each admission of `c` units moves the TAT
    /// to `max(tat, now) + c · interval` and is allowed only if that is at most
    /// `now + burst · interval`. Over the admissions inside `[a, a + t]`, the TAT grows
    /// by at least `units · interval` from a value ≥ `a`, and ends ≤ `a + t + burst ·
    /// interval`; so `units · interval ≤ t + burst · interval`.
    #[test]
    fn token_bucket_never_exceeds_burst_plus_rate_in_any_interval(
        (rate, tb) in token_bucket(),
        start in start_time(),
        steps in raw_steps(200),
    ) {
        let interval = tb.interval_nanos();
        prop_assert_eq!(interval, ((1e9 / rate).ceil() as u64).max(1));
        let burst = u64::from(tb.burst());
        let attempts = run_token_bucket(&tb, start, &steps);
        for_every_interval(&attempts, |units, t| {
            assert!(
                units <= burst + t / interval,
                "{units} units admitted in {t} ns (burst {burst}, interval {interval})"
            );
            // In terms of the configured rate. `interval` is the f64 quotient rounded
            // up, which can sit a few 1e-12 ns below the exact 1e9 / rate: allow a
            // relative slack far below anything observable.
            let rate_bound = burst as f64 + rate * t as f64 / 1e9;
            assert!(
                units as f64 <= rate_bound * (1.0 + 1e-12),
                "{units} units admitted in {t} ns > burst {burst} + rate {rate} · t"
            );
        });
    }

    /// `docs/design.md#token-bucket`, "retry-after is exact": after a refusal at `now`
    /// with retry-after `r`, the same cost is refused at `now + r − 1ns` and admitted
    /// at `now + r`. Also: every decision (allowed, remaining, retry_after,
    /// reset_after) is the one of a plainly refilling bucket of `burst` units.
    #[test]
    fn token_bucket_retry_after_is_exact_and_matches_a_refilling_bucket(
        (_rate, tb) in token_bucket(),
        start in start_time(),
        steps in raw_steps(200),
    ) {
        // The model and the retry checks run on every attempt.
        run_token_bucket(&tb, start, &steps);
    }

    /// `docs/design.md#token-bucket`, no drift: once the burst is used, calls of cost 1
    /// exactly one interval apart are all admitted, and a second call at the same
    /// instant, or a call one nanosecond before the next slot, is refused: steady state
    /// is exactly one unit per interval, however long it runs.
    #[test]
    fn token_bucket_steady_state_is_exactly_one_per_interval(
        (_rate, tb) in token_bucket(),
        start in start_time(),
        periods in 1u64..2_000,
    ) {
        let interval = tb.interval_nanos();
        let mut tat = 0;
        for _ in 0..tb.burst() {
            let (d, new_tat) = tb.decide(tat, start, 1);
            prop_assert!(d.allowed());
            tat = new_tat.unwrap();
        }
        prop_assert!(!tb.decide(tat, start, 1).0.allowed(), "more than the burst at once");
        for k in 1..=periods {
            let now = start + k * interval;
            prop_assert!(!tb.decide(tat, now - 1, 1).0.allowed(), "slot {k} admitted 1ns early");
            let (d, new_tat) = tb.decide(tat, now, 1);
            prop_assert!(d.allowed(), "slot {} refused: {:?}", k, d);
            prop_assert_eq!(d.remaining(), 0);
            tat = new_tat.unwrap();
            let (again, _) = tb.decide(tat, now, 1);
            prop_assert!(!again.allowed(), "two units in slot {}", k);
            prop_assert_eq!(nanos(again.retry_after()), interval);
        }
    }
}

// ---------------------------------------------------------------------------------
// Sliding window (`docs/design.md#sliding-window`)
// ---------------------------------------------------------------------------------

/// Runs a schedule against a sliding window, checking every decision against the
/// naive list of admissions and every refusal's retry-after to the nanosecond.
fn run_sliding_window(sw: &SlidingWindow, start: u64, steps: &[RawStep]) -> Vec<Attempt> {
    let window = sw.window_nanos();
    let mut model = NaiveWindow::new(sw);
    let mut log = WindowLog::default();
    let mut now = start;
    let mut last_retry = None;
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        now += gap(step, window, 3 * window, last_retry);
        let cost = cost(step, sw.limit());
        // peek answers like decide is about to, and leaves the log alone.
        let before = log.clone();
        let peeked = sw.peek(&log, now, cost);
        assert_eq!(log, before);
        let (decision, _) = sw.decide(&mut log, now, cost);
        assert_peek_like_decide(&peeked, &decision, cost);
        // Exactness both ways: admitted iff it fits in the window ending now.
        assert_matches(&decision, &model.attempt(now, cost), u64::from(sw.limit()));
        if decision.allowed() {
            last_retry = None;
        } else {
            // A refusal records nothing (up to dropping expired entries).
            assert!(log.total() <= before.total());
            // Property 5: retry-after is exact, with no other call in between.
            let r = nanos(decision.retry_after());
            assert!(r > 0, "a refusal always has something to wait for");
            let (early, _) = sw.decide(&mut log.clone(), now + r - 1, cost);
            assert!(!early.allowed(), "admitted 1ns early: {early:?}");
            let (on_time, _) = sw.decide(&mut log.clone(), now + r, cost);
            assert!(on_time.allowed(), "refused at its retry-after: {on_time:?}");
            last_retry = Some(r);
        }
        out.push(Attempt {
            at: now,
            cost,
            decision,
        });
    }
    out
}

proptest! {
    /// `docs/design.md#sliding-window`, "exact": at most `limit` units in any window
    /// `(s − window, s]`, and an attempt is refused only if admitting it would exceed
    /// the limit in the window ending at its time (every decision equals the naive
    /// count's).
    #[test]
    fn sliding_window_is_exact(
        sw in sliding_window(),
        start in start_time(),
        steps in raw_steps(200),
    ) {
        let window = sw.window_nanos();
        let limit = u64::from(sw.limit());
        let attempts = run_sliding_window(&sw, start, &steps);
        // The fullest window ends at an admission: check the window ending at each.
        let admitted: Vec<&Attempt> = attempts.iter().filter(|a| a.decision.allowed()).collect();
        for end in &admitted {
            let units: u64 = admitted
                .iter()
                .filter(|a| a.at <= end.at && a.at + window > end.at)
                .map(|a| u64::from(a.cost))
                .sum();
            prop_assert!(units <= limit, "{} units in the window ending at {}", units, end.at);
        }
        // Not stricter than needed: each refusal would really have overflowed.
        for (i, a) in attempts.iter().enumerate().filter(|(_, a)| !a.decision.allowed()) {
            let used: u64 = attempts[..i]
                .iter()
                .filter(|p| p.decision.allowed() && p.at + window > a.at)
                .map(|p| u64::from(p.cost))
                .sum();
            prop_assert!(used + u64::from(a.cost) > limit, "needless refusal at {}", a.at);
        }
    }

    /// `docs/design.md#sliding-window`, "retry-after = when the oldest admission in the
    /// window leaves it": after a refusal with retry-after `r`, the same cost is
    /// refused at `now + r − 1ns` and admitted at `now + r`.
    #[test]
    fn sliding_window_retry_after_is_exact(
        sw in sliding_window(),
        start in start_time(),
        steps in raw_steps(200),
    ) {
        // The model and the retry checks run on every attempt.
        run_sliding_window(&sw, start, &steps);
    }
}

// ---------------------------------------------------------------------------------
// Bounded sliding window (`docs/design.md#sliding-window`)
// ---------------------------------------------------------------------------------

/// An operation on a bounded window: an attempt, or a settle of an earlier admission.
#[derive(Debug, Clone)]
enum WindowOp {
    Attempt(RawStep),
    /// Settles the n-th admission so far (modulo their number) at `kept` of its cost.
    Settle {
        which: usize,
        kept: u32,
    },
}

fn window_ops() -> impl Strategy<Value = Vec<WindowOp>> {
    let op = prop_oneof![
        8 => raw_step().prop_map(WindowOp::Attempt),
        1 => (any::<usize>(), any::<u32>()).prop_map(|(which, kept)| WindowOp::Settle { which, kept }),
    ];
    prop::collection::vec(op, 1..400)
}

proptest! {
    /// `docs/design.md#sliding-window`, bounded state: whatever the traffic, the log
    /// keeps at most `precision` runs, and
    /// - the promise holds: never more than `limit` units (after settles) in any
    ///   window `(s − window, s]`;
    /// - the bound holds: a refusal at `s` means the units admitted in
    ///   `(s − window − grid, s]` and the cost exceed the limit (a unit is counted
    ///   less than one grid step late);
    /// - it is exact while the admissions fit: from the same log, the bounded log
    ///   records what the full log records as long as the full log has at most
    ///   `precision` runs;
    /// - retry-after is exact for the state kept;
    /// - a settle gives back at most the unused part, once.
    #[test]
    fn a_bounded_window_keeps_its_promise_within_the_stated_bound(
        sw in bounded_window(),
        start in start_time(),
        ops in window_ops(),
    ) {
        let window = sw.window_nanos();
        let grid = sw.grid_nanos();
        let limit = u64::from(sw.limit());
        let full = sw.with_precision(MAX_PRECISION).unwrap();
        let (mut log, mut exact) = (WindowLog::default(), WindowLog::default());
        // What was admitted (time, units kept) and where the log recorded it.
        let mut admitted: Vec<(u64, u32, u64)> = Vec::new();
        let mut now = start;
        let mut last_retry = None;
        // Units admitted in `(to - span, to]`.
        let units_in = |admitted: &[(u64, u32, u64)], span: u64, to: u64| -> u64 {
            admitted
                .iter()
                .filter(|(t, _, _)| t + span > to && *t <= to)
                .map(|(_, n, _)| u64::from(*n))
                .sum()
        };
        for op in &ops {
            match *op {
                WindowOp::Attempt(step) => {
                    now += gap(&step, window, 3 * window, last_retry);
                    let cost = cost(&step, sw.limit());
                    let same = log == exact;
                    let (decision, recorded) = sw.decide(&mut log, now, cost);
                    let (exact_decision, _) = full.decide(&mut exact, now, cost);
                    prop_assert!(log.runs().count() <= sw.precision() as usize);
                    if same && exact.runs().count() <= sw.precision() as usize {
                        prop_assert_eq!(decision, exact_decision, "not exact while it fits");
                        prop_assert_eq!(&log, &exact);
                    }
                    let before = units_in(&admitted, window, now);
                    if decision.allowed() {
                        prop_assert!(before + u64::from(cost) <= limit, "over the limit at {}", now);
                        admitted.push((now, cost, recorded));
                        last_retry = None;
                    } else {
                        let late = units_in(&admitted, window + grid, now);
                        prop_assert!(late + u64::from(cost) > limit, "refused beyond the bound at {}", now);
                        let r = nanos(decision.retry_after());
                        prop_assert!(!sw.decide(&mut log.clone(), now + r - 1, cost).0.allowed());
                        prop_assert!(sw.decide(&mut log.clone(), now + r, cost).0.allowed());
                        last_retry = Some(r);
                    }
                }
                WindowOp::Settle { which, kept } if !admitted.is_empty() => {
                    let index = which % admitted.len();
                    let (at, units, recorded) = admitted[index];
                    let kept = kept % (units + 1);
                    let total = log.total();
                    sw.refund(&mut log, recorded, units - kept);
                    full.refund(&mut exact, at, units - kept);
                    prop_assert!(total - log.total() <= u64::from(units - kept));
                    // Settled once: what it keeps is what counts from now on.
                    admitted[index].1 = kept;
                }
                WindowOp::Settle { .. } => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Fixed window (`docs/design.md#fixed-windows`)
// ---------------------------------------------------------------------------------

proptest! {
    /// `docs/design.md#fixed-windows`: the windows tile time (each starts where the
    /// previous ends, at local midnight for calendar periods, a day, a week or 28–31
    /// days long); never more than `limit` units in one window; a refusal only when
    /// the window's units and the cost exceed it; retry-after is the window's end,
    /// exactly; a settle gives back at most the unused part, in its window only.
    #[test]
    fn a_fixed_window_counts_each_window_exactly(
        fw in fixed_window(),
        start in 0u64..(1u64 << 62),
        ops in window_ops(),
    ) {
        let limit = u64::from(fw.limit());
        let unit = fw.window_nanos();
        let mut state = WindowCount::default();
        let mut model = NaiveFixed::new(&fw);
        let mut now = start;
        let mut last_retry = None;
        for op in &ops {
            match *op {
                WindowOp::Attempt(step) => {
                    now += gap(&step, unit, 3 * unit, last_retry);
                    let (begin, end) = fw.bounds(now);
                    prop_assert!(begin <= now && now < end);
                    prop_assert_eq!(fw.bounds(end).0, end, "windows tile time");
                    let offset = i128::from(fw.utc_offset()) * i128::from(SEC);
                    let day = i128::from(86_400 * SEC);
                    match fw.period() {
                        Some(Period::Day) => prop_assert_eq!(end - begin, 86_400 * SEC),
                        Some(Period::Week) => prop_assert_eq!(end - begin, 7 * 86_400 * SEC),
                        Some(Period::Month) => {
                            prop_assert!((28..=31).contains(&((end - begin) / (86_400 * SEC))))
                        }
                        None => {}
                    }
                    if fw.period().is_some() && begin > 0 {
                        prop_assert_eq!((i128::from(begin) + offset).rem_euclid(day), 0);
                    }
                    let cost = cost(&step, fw.limit());
                    let peeked = fw.peek(&state, now, cost);
                    let (decision, recorded) = fw.decide(&mut state, now, cost);
                    assert_peek_like_decide(&peeked, &decision, cost);
                    assert_matches(&decision, &model.attempt(now, cost), limit);
                    if decision.allowed() {
                        prop_assert_eq!(recorded, begin);
                        last_retry = None;
                    } else {
                        let r = nanos(decision.retry_after());
                        prop_assert_eq!(now + r, end);
                        prop_assert!(fw.decide(&mut state.clone(), end, cost).0.allowed());
                        last_retry = Some(r);
                    }
                }
                WindowOp::Settle { which, kept } if !model.admitted.is_empty() => {
                    let index = which % model.admitted.len();
                    let (at, units) = model.admitted[index];
                    let kept = kept % (units + 1);
                    let before = state.used;
                    fw.refund(&mut state, fw.bounds(at).0, units - kept);
                    prop_assert!(before - state.used <= u64::from(units - kept));
                    if fw.bounds(at) != fw.bounds(now) {
                        prop_assert_eq!(state.used, before, "a settle gives back in its window only");
                    }
                    model.admitted[index].1 = kept;
                }
                WindowOp::Settle { .. } => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// Combined rate and concurrency (`docs/design.md#decisions`), and peek
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// `decide` with (or without) a fresh lease id.
    Acquire { step: RawStep, with_lease: bool },
    /// Release one of the leases taken so far (possibly again).
    Release { which: usize },
    /// Release an id never handed out.
    ReleaseUnknown,
    /// Renew one of the leases taken so far, some time later.
    Renew { which: usize, step: RawStep },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (raw_step(), prop::bool::weighted(0.85))
            .prop_map(|(step, with_lease)| Op::Acquire { step, with_lease }),
        2 => any::<usize>().prop_map(|which| Op::Release { which }),
        1 => Just(Op::ReleaseUnknown),
        1 => (any::<usize>(), raw_step()).prop_map(|(which, step)| Op::Renew { which, step }),
    ]
}

fn combined_policy() -> impl Strategy<Value = Policy> {
    let rule = prop_oneof![
        token_bucket().prop_map(|(_, tb)| Rule::TokenBucket(tb)),
        sliding_window().prop_map(Rule::SlidingWindow),
        fixed_window().prop_map(Rule::FixedWindow),
    ];
    let concurrency = prop_oneof![
        1 => Just(None),
        4 => (1u32..6, prop_oneof![1u64..1000, 1u64..=30 * SEC])
            .prop_map(|(max, lease_ttl)| Some(Concurrency { max, lease_ttl })),
    ];
    (rule, concurrency).prop_map(|(rule, concurrency)| Policy {
        rule: Some(rule),
        concurrency,
    })
}

/// The rule of a policy from [`combined_policy`] (always one).
fn rule_of(policy: &Policy) -> &Rule {
    policy.rule.as_ref().expect("combined policies have a rule")
}

/// The rate model of a policy's rule.
#[derive(Debug, Clone)]
enum RateModel {
    Bucket(RefillBucket),
    Window(NaiveWindow),
    Fixed(NaiveFixed),
}

impl RateModel {
    fn new(rule: &Rule) -> Self {
        match rule {
            Rule::TokenBucket(tb) => RateModel::Bucket(RefillBucket::new(tb)),
            Rule::SlidingWindow(sw) => RateModel::Window(NaiveWindow::new(sw)),
            Rule::FixedWindow(fw) => RateModel::Fixed(NaiveFixed::new(fw)),
        }
    }

    fn attempt(&mut self, now: u64, cost: u32) -> Expected {
        match self {
            RateModel::Bucket(b) => b.attempt(now, cost),
            RateModel::Window(w) => w.attempt(now, cost),
            RateModel::Fixed(f) => f.attempt(now, cost),
        }
    }
}

/// The natural time unit of a policy, to scale gaps.
fn unit_of(policy: &Policy) -> u64 {
    let rate_unit = match rule_of(policy) {
        Rule::TokenBucket(tb) => tb.interval_nanos(),
        Rule::SlidingWindow(sw) => sw.window_nanos(),
        Rule::FixedWindow(fw) => fw.window_nanos(),
    };
    match policy.concurrency {
        // Mix both time scales so leases both expire and stay live.
        Some(cc) => rate_unit.min(cc.lease_ttl).max(1),
        None => rate_unit,
    }
}

fn big_gap_of(policy: &Policy) -> u64 {
    let rate_span = match rule_of(policy) {
        Rule::TokenBucket(tb) => tb
            .interval_nanos()
            .saturating_mul(2 * u64::from(tb.burst()) + 2),
        Rule::SlidingWindow(sw) => 3 * sw.window_nanos(),
        Rule::FixedWindow(fw) => 3 * fw.window_nanos(),
    };
    match policy.concurrency {
        Some(cc) => rate_span.max(2 * cc.lease_ttl),
        None => rate_span,
    }
}

/// Instants at which two states are compared through `peek`: now, around the
/// retry-after, around the lease expiries and the rule's units, and far later.
fn probe_times(policy: &Policy, state: &KeyState, now: u64, retry: u64) -> Vec<u64> {
    let unit = unit_of(policy);
    let mut times = vec![
        now,
        now + 1,
        now + retry.saturating_sub(1),
        now + retry,
        now + retry + 1,
        now + unit - 1,
        now + unit,
        now + 2 * unit,
        now + big_gap_of(policy),
    ];
    let expiry = nanos(state.leases.earliest_expiry(now));
    if expiry > 0 {
        times.extend([now + expiry - 1, now + expiry]);
    }
    times
}

fn assert_same_future(policy: &Policy, a: &KeyState, b: &KeyState, now: u64, retry: u64) {
    let capacity = rule_of(policy).capacity();
    for t in probe_times(policy, a, now, retry) {
        for cost in [1, capacity.min(2), capacity] {
            assert_eq!(
                algorithm::peek(policy, a, t, cost),
                algorithm::peek(policy, b, t, cost),
                "a refused attempt at {now} changed the answer at {t} for cost {cost}"
            );
        }
        assert_eq!(a.leases.count_live(t), b.leases.count_live(t));
    }
}

fn rate_units_recorded(state: &KeyState) -> Option<u64> {
    match &state.rate {
        RateState::Log(log) => Some(log.total()),
        RateState::Window(count) => Some(count.used),
        RateState::Tat(_) | RateState::Unlimited => None,
    }
}

/// Runs a sequence of operations on one key, checking `docs/design.md#decisions` after
/// each one, and `peek` against `decide` before each acquisition.
fn run_combined(policy: &Policy, start: u64, ops: &[Op]) {
    let capacity = rule_of(policy).capacity();
    let mut state = KeyState::fresh(policy);
    let mut rate_model = RateModel::new(rule_of(policy));
    // (id, expiry) of every lease handed out and not released; expired ones stay.
    let mut leases: Vec<(LeaseId, u64)> = Vec::new();
    let mut released: Vec<LeaseId> = Vec::new();
    let mut next_id = 1u64;
    let mut now = start;
    let mut last_retry = None;
    let unit = unit_of(policy);
    let big = big_gap_of(policy);

    for op in ops {
        match *op {
            Op::Acquire { step, with_lease } => {
                now += gap(&step, unit, big, last_retry);
                let cost = cost(&step, capacity);
                let lease = with_lease.then(|| {
                    next_id += 1;
                    LeaseId(next_id)
                });

                // Property 7: peek consumes nothing and answers what decide answers.
                let before = state.clone();
                let peeked = algorithm::peek(policy, &state, now, cost);
                assert_eq!(state, before, "peek changed the state");

                let live_before = leases.iter().filter(|(_, e)| *e > now).count();
                let (decision, _) = algorithm::decide(policy, &mut state, now, cost, lease);

                if lease.is_some() || policy.concurrency.is_none() {
                    assert_peek_like_decide(&peeked, &decision, cost);
                } else {
                    // Without a lease the cap is not consulted; peek still reports it.
                    assert_eq!(
                        peeked.allowed(),
                        decision.allowed() && live_before < max(policy)
                    );
                }

                // The model: concurrency first (when a lease is asked for), then rate.
                let full = match (policy.concurrency, lease) {
                    (Some(cc), Some(_)) => live_before >= cc.max as usize,
                    _ => false,
                };
                let mut trial = rate_model.clone();
                let rate = trial.attempt(now, cost);
                let expect_allowed = !full && rate.allowed;
                assert_eq!(decision.allowed(), expect_allowed, "{decision:?}");
                assert_eq!(decision.limit(), u64::from(capacity));

                if full {
                    assert_eq!(decision.denied_by(), Some(DeniedBy::Concurrency));
                    // Only the rate's wait is promised: a slot comes back when its
                    // holder lets go, which no clock can tell.
                    assert_eq!(nanos(decision.retry_after()), rate.retry_after);
                    // Nothing taken: what the rate has available now.
                    let available = if rate.allowed {
                        rate.remaining + u64::from(cost)
                    } else {
                        rate.remaining
                    };
                    assert_eq!(decision.remaining(), available);
                } else {
                    assert_matches(&decision, &rate, u64::from(capacity));
                }

                if decision.allowed() {
                    // Both taken: the rate units and the slot.
                    rate_model = trial;
                    match (&before.rate, &state.rate) {
                        (RateState::Tat(old), RateState::Tat(new)) => {
                            assert!(new > old && *new > now);
                        }
                        // The log holds exactly the units still in the window; a
                        // fixed window's count, the units of the current window.
                        _ => match &rate_model {
                            RateModel::Window(w) => {
                                assert_eq!(rate_units_recorded(&state), Some(w.used_at(now)))
                            }
                            RateModel::Fixed(f) => {
                                assert_eq!(rate_units_recorded(&state), Some(f.used_at(now)))
                            }
                            RateModel::Bucket(_) => unreachable!("a bucket keeps a TAT"),
                        },
                    }
                    if let (Some(cc), Some(id)) = (policy.concurrency, lease) {
                        leases.push((id, now + cc.lease_ttl));
                        assert_eq!(state.leases.count_live(now), live_before + 1);
                        assert!(state.leases.clone().renew(id, now, cc.lease_ttl));
                    } else {
                        assert_eq!(state.leases.count_live(now), live_before);
                    }
                    last_retry = None;
                } else {
                    // Neither taken, and nothing that changes a future answer.
                    assert_eq!(state.leases.count_live(now), live_before);
                    assert_same_future(policy, &before, &state, now, nanos(decision.retry_after()));
                    if let RateState::Tat(old) = before.rate {
                        assert_eq!(state.rate, RateState::Tat(old));
                    }
                    last_retry = Some(nanos(decision.retry_after()));
                }
            }
            Op::Release { which } => {
                let pool = leases.len() + released.len();
                if pool == 0 {
                    continue;
                }
                let which = which % pool;
                if which < leases.len() {
                    let (id, expiry) = leases.remove(which);
                    // A live lease is there to release; an expired one may already
                    // have been cleaned.
                    let found = state.leases.release(id);
                    assert!(found || expiry <= now, "a live lease was not found");
                    released.push(id);
                } else {
                    // Releasing twice changes nothing.
                    let id = released[which - leases.len()];
                    let before = state.clone();
                    assert!(!state.leases.release(id));
                    assert_eq!(state, before);
                }
            }
            Op::ReleaseUnknown => {
                let before = state.clone();
                assert!(!state.leases.release(LeaseId(0)));
                assert_eq!(state, before);
            }
            Op::Renew { which, step } => {
                let Some(cc) = policy.concurrency else {
                    continue;
                };
                if leases.is_empty() {
                    continue;
                }
                now += gap(&step, unit, big, None);
                let which = which % leases.len();
                let (id, expiry) = leases[which];
                let live = expiry > now;
                assert_eq!(state.leases.renew(id, now, cc.lease_ttl), live);
                if live {
                    leases[which].1 = now + cc.lease_ttl;
                }
            }
        }

        // `docs/design.md#concurrency-leases`: never more live leases than the cap, and
        // exactly the model's.
        let live = leases.iter().filter(|(_, e)| *e > now).count();
        assert_eq!(state.leases.count_live(now), live);
        if let Some(cc) = policy.concurrency {
            assert!(
                live <= cc.max as usize,
                "{live} live leases > max {}",
                cc.max
            );
        }
    }
}

fn max(policy: &Policy) -> usize {
    policy.concurrency.map_or(usize::MAX, |cc| cc.max as usize)
}

proptest! {
    /// `docs/design.md#decisions`: with a concurrency cap, live leases never exceed `max`; rate and
    /// concurrency are taken together or not at all; a refused attempt consumes
    /// nothing (every later `peek` answers as if it never happened); releasing twice
    /// or releasing an unknown lease changes nothing; expired leases free their slot.
    #[test]
    fn combined_takes_both_or_neither(
        policy in combined_policy(),
        start in start_time(),
        ops in prop::collection::vec(op(), 1..150),
    ) {
        run_combined(&policy, start, &ops);
    }

    /// `docs/design.md#decisions`, peek: consumes nothing (the state is equal before
    /// and after, whatever it holds), and answers what `decide` answers for the same
    /// attempt: the same allowed, limit, retry-after and denied-by, all fields equal on
    /// a refusal, and on an admission the units available now (the decision's
    /// remaining + cost). (Also checked before every attempt of the properties above.)
    #[test]
    fn peek_consumes_nothing_and_answers_like_decide(
        policy in combined_policy(),
        start in start_time(),
        ops in prop::collection::vec(op(), 0..60),
        probes in prop::collection::vec(raw_step(), 1..20),
    ) {
        // Build an arbitrary state with the same operations as above.
        let mut state = KeyState::fresh(&policy);
        let mut now = start;
        let mut id = 1_000_000u64;
        for op in &ops {
            if let Op::Acquire { step, with_lease } = op {
                now += gap(step, unit_of(&policy), big_gap_of(&policy), None);
                id += 1;
                let lease = with_lease.then_some(LeaseId(id));
                algorithm::decide(&policy, &mut state, now, cost(step, rule_of(&policy).capacity()), lease);
            }
        }
        for step in &probes {
            let at = now + gap(step, unit_of(&policy), big_gap_of(&policy), None);
            let cost = cost(step, rule_of(&policy).capacity());
            let before = state.clone();
            let peeked = algorithm::peek(&policy, &state, at, cost);
            prop_assert_eq!(&state, &before);
            let (decided, _) =
                algorithm::decide(&policy, &mut state.clone(), at, cost, Some(LeaseId(1)));
            assert_peek_like_decide(&peeked, &decided, cost);
        }
    }
}
