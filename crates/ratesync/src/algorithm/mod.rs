//! The math of rate limiting, as pure functions over (state, now, rule, cost).
//!
//! Nothing here reads a clock, takes a lock or talks to a store. Every engine either
//! calls these functions (memory, NATS) or re-implements them in its store's language
//! (Lua for Redis, SQL for PostgreSQL) and is tested against them: this module is
//! the reference that defines what a correct decision is
//! (`docs/design.md#algorithms`).
//!
//! Time is `u64` nanoseconds since an origin chosen by the caller; only differences
//! matter.

mod fixed_window;
mod gcra;
mod group;
mod leases;
mod sliding_window;

pub use fixed_window::{
    FixedWindow, Period, WindowCount, Windows, MAX_FIXED_WINDOW_SECONDS, MAX_UTC_OFFSET_SECONDS,
};
pub use gcra::{TokenBucket, MAX_RATE_PER_SECOND};
pub use group::{decide_all, GroupDecision, Member};
pub use leases::{Concurrency, LeaseId, LeaseSet};
pub use sliding_window::{
    SlidingWindow, WindowLog, DEFAULT_PRECISION, MAX_PRECISION, MAX_WINDOW_SECONDS, MIN_PRECISION,
};

use std::time::Duration;

use crate::decision::{Decision, DeniedBy};

/// A rule that has failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// A number that must be above zero (a rate, a window, a burst or a limit) is
    /// zero, negative or NaN.
    #[error("`{field}` must be a positive number, got {value}")]
    NotPositive {
        /// The configuration key, such as `rate_per_second`.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// A number is above the largest accepted, such as [`MAX_RATE_PER_SECOND`].
    #[error("`{field}` must be at most {max}")]
    TooLarge {
        /// The configuration key.
        field: &'static str,
        /// The largest value accepted.
        max: f64,
    },
    /// A duration rounds to zero nanoseconds (or a rate so high that its interval
    /// does): time is counted in whole nanoseconds.
    #[error("`{field}` is too small to be represented in nanoseconds")]
    TooSmall {
        /// The configuration key.
        field: &'static str,
    },
    /// A number outside its bounds, such as a sliding window's `precision`.
    #[error("`{field}` must be between {min} and {max}, got {value}")]
    OutOfRange {
        /// The configuration key.
        field: &'static str,
        /// The smallest value accepted.
        min: f64,
        /// The largest value accepted.
        max: f64,
        /// The value given.
        value: f64,
    },
    /// A fixed window aligned to a UTC offset whose length does not divide a day
    /// (`docs/design.md#fixed-windows`).
    #[error("`window_seconds` = {window_seconds} does not divide a day: windows aligned to a UTC offset must start at every local midnight")]
    NotADivisorOfADay {
        /// The window length given, in seconds.
        window_seconds: f64,
    },
    /// A token bucket whose refill time (`burst` intervals) overflows the `u64`
    /// nanosecond clock.
    #[error("`burst` / `rate_per_second` is longer than the clock can represent; lower `burst` or raise `rate_per_second`")]
    SpanOverflow,
}

/// The rate part of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// GCRA token bucket (`docs/design.md#token-bucket`), the default algorithm.
    TokenBucket(TokenBucket),
    /// Exact sliding window log (`docs/design.md#sliding-window`).
    SlidingWindow(SlidingWindow),
    /// Fixed windows on the calendar (`docs/design.md#fixed-windows`).
    FixedWindow(FixedWindow),
}

impl Rule {
    /// The capacity a single call's cost may not exceed (burst or limit).
    pub fn capacity(&self) -> u32 {
        match self {
            Rule::TokenBucket(tb) => tb.burst(),
            Rule::SlidingWindow(sw) => sw.limit(),
            Rule::FixedWindow(fw) => fw.limit(),
        }
    }

    /// The configuration name of the algorithm.
    pub fn algorithm_name(&self) -> &'static str {
        match self {
            Rule::TokenBucket(_) => "token_bucket",
            Rule::SlidingWindow(_) => "sliding_window",
            Rule::FixedWindow(_) => "fixed_window",
        }
    }

    /// The rule as a quota (see [`RateQuota`]).
    pub fn quota(&self) -> RateQuota {
        match self {
            Rule::TokenBucket(tb) => {
                let (units, seconds) = tb.quota();
                RateQuota {
                    units,
                    window: Duration::from_secs(seconds),
                }
            }
            Rule::SlidingWindow(sw) => RateQuota {
                units: u64::from(sw.limit()),
                window: Duration::from_nanos(sw.window_nanos()),
            },
            Rule::FixedWindow(fw) => RateQuota {
                units: u64::from(fw.limit()),
                window: Duration::from_nanos(fw.window_nanos()),
            },
        }
    }

    /// How long the rule's state can matter after the last admission (ns): the time
    /// to refill an empty bucket, or the (longest) window.
    pub fn span_nanos(&self) -> u64 {
        match self {
            Rule::TokenBucket(tb) => tb.interval_nanos().saturating_mul(u64::from(tb.burst())),
            Rule::SlidingWindow(sw) => sw.window_nanos(),
            Rule::FixedWindow(fw) => fw.window_nanos(),
        }
    }
}

/// A rule as the quota users configured: `units` per `window`. It is what the IETF
/// `RateLimit-Policy` header and Python's results show (`docs/design.md#quotas`): a
/// window's limit over its window (a calendar month over its longest length, 31
/// days), a token bucket's rate over a round window ([`TokenBucket::quota`]), not the
/// burst its decisions count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Units admitted per window.
    pub units: u64,
    /// The window the units are counted over.
    pub window: Duration,
}

/// Everything that decides one limiter: a rate rule, a concurrency cap, or both.
/// Configuration guarantees at least one of the two
/// (`docs/design.md#a-limiter-without-a-rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    /// `None`: the limiter has no rate limit, only its concurrency cap.
    pub rule: Option<Rule>,
    /// `None`: no cap on permits held at once (`docs/design.md#concurrency-leases`).
    pub concurrency: Option<Concurrency>,
}

impl Policy {
    /// What [`Decision::limit`] reports: the rule's capacity, or for a limiter without
    /// a rate, its concurrency cap.
    pub fn limit(&self) -> u64 {
        match (&self.rule, &self.concurrency) {
            (Some(rule), _) => u64::from(rule.capacity()),
            (None, Some(cc)) => u64::from(cc.max),
            (None, None) => 0,
        }
    }

    /// How long any state of this policy can matter after its last write (ns).
    pub fn span_nanos(&self) -> u64 {
        let rate = self.rule.as_ref().map_or(0, Rule::span_nanos);
        rate.max(self.concurrency.map_or(0, |cc| cc.lease_ttl))
    }
}

/// The rate state of one key; which variant is fixed by the limiter's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateState {
    /// GCRA theoretical arrival time (0 = never seen).
    Tat(u64),
    /// Sliding-window admission log.
    Log(WindowLog),
    /// Fixed window: the window counted in and its units.
    Window(WindowCount),
    /// No rate rule: nothing to remember.
    Unlimited,
}

impl RateState {
    fn fresh(rule: Option<&Rule>) -> Self {
        match rule {
            Some(Rule::TokenBucket(_)) => RateState::Tat(0),
            Some(Rule::SlidingWindow(_)) => RateState::Log(WindowLog::default()),
            Some(Rule::FixedWindow(_)) => RateState::Window(WindowCount::default()),
            None => RateState::Unlimited,
        }
    }

    fn fits(&self, rule: Option<&Rule>) -> bool {
        matches!(
            (rule, self),
            (Some(Rule::TokenBucket(_)), RateState::Tat(_))
                | (Some(Rule::SlidingWindow(_)), RateState::Log(_))
                | (Some(Rule::FixedWindow(_)), RateState::Window(_))
                | (None, RateState::Unlimited)
        )
    }
}

/// The whole state of one (limiter, key): what a store keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    /// What the rate rule remembers.
    pub rate: RateState,
    /// The concurrency leases held (empty without a cap).
    pub leases: LeaseSet,
}

impl KeyState {
    /// The state of a key never seen, for `policy`.
    pub fn fresh(policy: &Policy) -> Self {
        KeyState {
            rate: RateState::fresh(policy.rule.as_ref()),
            leases: LeaseSet::default(),
        }
    }

    /// From when this state is indistinguishable from a fresh one, so that the key
    /// can be forgotten without changing any future decision.
    pub fn idle_at(&self, policy: &Policy) -> u64 {
        let rate = match (&policy.rule, &self.rate) {
            (Some(Rule::TokenBucket(tb)), RateState::Tat(tat)) => tb.idle_at(*tat),
            (Some(Rule::SlidingWindow(sw)), RateState::Log(log)) => sw.idle_at(log),
            (Some(Rule::FixedWindow(fw)), RateState::Window(count)) => fw.idle_at(count),
            _ => 0,
        };
        rate.max(self.leases.idle_at())
    }

    /// Whether this state is indistinguishable from a fresh one at `now`.
    pub fn is_idle(&self, policy: &Policy, now: u64) -> bool {
        self.idle_at(policy) <= now
    }

    /// This state, or a fresh one when it belongs to another rule (the limiter was
    /// reconfigured to another algorithm): a rate state of the wrong kind means nothing.
    fn for_policy(&mut self, policy: &Policy) -> &mut Self {
        if !self.rate.fits(policy.rule.as_ref()) {
            self.rate = RateState::fresh(policy.rule.as_ref());
        }
        self
    }
}

/// Where an admission left its mark in the state, so that it can be given back
/// ([`refund`]): the store time of the decision, and the new TAT of a token bucket or
/// the time of the log run a sliding window recorded it in. Engines that decide in
/// another unit (microseconds) fill it in theirs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The store's time when the admission was decided.
    pub now: u64,
    /// Token bucket: the TAT the admission stored. Sliding window: the time of the
    /// run it was recorded in. Fixed window: the start of its window. 0 without a
    /// rate rule.
    pub recorded: u64,
}

/// A call that can never be admitted, whatever the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// A cost of 0: a call takes at least one unit.
    #[error("cost must be at least 1")]
    Zero,
    /// A cost above the rule's [capacity](Rule::capacity): no state, however fresh,
    /// could admit it, so waiting would be forever.
    #[error("cost {cost} exceeds the limiter's capacity of {capacity} (burst or limit); it could never be admitted")]
    ExceedsCapacity {
        /// The cost asked for.
        cost: u32,
        /// The rule's burst or limit.
        capacity: u32,
    },
}

/// Checks that `cost` can ever be admitted under `policy`. Without a rate rule any
/// positive cost is admitted (cost is a rate notion; a slot is a slot).
pub fn check_cost(policy: &Policy, cost: u32) -> Result<(), CostError> {
    if cost == 0 {
        return Err(CostError::Zero);
    }
    match &policy.rule {
        Some(rule) if cost > rule.capacity() => Err(CostError::ExceedsCapacity {
            cost,
            capacity: rule.capacity(),
        }),
        _ => Ok(()),
    }
}

/// Decides an attempt and, when `lease` is given and the policy caps concurrency,
/// takes a slot under that id: both or neither (`docs/design.md#decisions`). A
/// refusal leaves `state` as it was, up to dropping expired entries. The caller has
/// checked the cost.
pub fn decide(
    policy: &Policy,
    state: &mut KeyState,
    now: u64,
    cost: u32,
    lease: Option<LeaseId>,
) -> (Decision, Receipt) {
    let state = state.for_policy(policy);
    if let (Some(cc), Some(_)) = (policy.concurrency, lease) {
        if state.leases.live(now) >= cc.max as usize {
            return (
                concurrency_refusal(policy, state, now, cost),
                Receipt::default(),
            );
        }
    }
    let (decision, recorded) = match (&policy.rule, &mut state.rate) {
        (Some(Rule::TokenBucket(tb)), RateState::Tat(tat)) => {
            let (decision, new_tat) = tb.decide(*tat, now, cost);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            (decision, new_tat.unwrap_or(0))
        }
        (Some(Rule::SlidingWindow(sw)), RateState::Log(log)) => sw.decide(log, now, cost),
        (Some(Rule::FixedWindow(fw)), RateState::Window(count)) => fw.decide(count, now, cost),
        _ => (slots_decision(policy, state, now, lease.is_some()), 0),
    };
    if decision.allowed() {
        if let (Some(cc), Some(id)) = (policy.concurrency, lease) {
            state.leases.insert(id, now, cc.lease_ttl);
        }
    }
    (decision, Receipt { now, recorded })
}

/// The decision an attempt of `cost` would get at `now`, consuming nothing.
/// `remaining` is what is available now (an admission's decision says what is left
/// after it).
pub fn peek(policy: &Policy, state: &KeyState, now: u64, cost: u32) -> Decision {
    if !state.rate.fits(policy.rule.as_ref()) {
        return peek(policy, &KeyState::fresh(policy), now, cost);
    }
    match policy.concurrency {
        // As in `decide`: a full cap refuses whatever the rate says.
        Some(cc) if state.leases.count_live(now) >= cc.max as usize => {
            concurrency_refusal(policy, state, now, cost)
        }
        _ => rate_peek(policy, state, now, cost),
    }
}

/// The rate part of a peek (for a limiter without a rate: its free slots).
fn rate_peek(policy: &Policy, state: &KeyState, now: u64, cost: u32) -> Decision {
    match (&policy.rule, &state.rate) {
        (Some(Rule::TokenBucket(tb)), RateState::Tat(tat)) => tb.peek(*tat, now, cost),
        (Some(Rule::SlidingWindow(sw)), RateState::Log(log)) => sw.peek(log, now, cost),
        (Some(Rule::FixedWindow(fw)), RateState::Window(count)) => fw.peek(count, now, cost),
        _ => slots_decision(policy, state, now, false),
    }
}

/// A refusal because every slot is held. The rate numbers are those of a peek, and
/// `retry_after` is the rate's alone: a slot comes back when its holder releases it,
/// which no clock can tell (`docs/design.md#concurrency`).
fn concurrency_refusal(policy: &Policy, state: &KeyState, now: u64, cost: u32) -> Decision {
    let rate = rate_peek(policy, state, now, cost);
    Decision::denied(
        DeniedBy::Concurrency,
        rate.limit,
        rate.remaining,
        rate.retry_after_nanos,
        rate.reset_after_nanos,
    )
}

/// The admission of a limiter without a rate (the caller has checked the cap): its
/// limit is the cap, and `remaining` the slots left after this one (`taking`) or now.
fn slots_decision(policy: &Policy, state: &KeyState, now: u64, taking: bool) -> Decision {
    let max = policy.concurrency.map_or(0, |cc| u64::from(cc.max));
    let live = state.leases.count_live(now) as u64 + u64::from(taking);
    Decision::admitted(max, max.saturating_sub(live), 0)
}

/// Gives back the `cost` units an admission took (its [`Receipt`]) and its lease,
/// never more than it took (`docs/design.md#refunds`). What has already left the
/// window or refilled is not given back twice. True when a lease was given back.
pub fn refund(
    policy: &Policy,
    state: &mut KeyState,
    now: u64,
    cost: u32,
    receipt: Receipt,
    lease: Option<LeaseId>,
) -> bool {
    let state = state.for_policy(policy);
    match (&policy.rule, &mut state.rate) {
        (Some(Rule::TokenBucket(tb)), RateState::Tat(tat)) => {
            *tat = tb.refund(*tat, now, cost, receipt);
        }
        (Some(Rule::SlidingWindow(sw)), RateState::Log(log)) => {
            sw.refund(log, receipt.recorded, cost)
        }
        (Some(Rule::FixedWindow(fw)), RateState::Window(count)) => {
            fw.refund(count, receipt.recorded, cost)
        }
        _ => {}
    }
    lease.is_some_and(|id| state.leases.release(id))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn policy(max: u32) -> Policy {
        Policy {
            rule: Some(Rule::TokenBucket(TokenBucket::new(1.0, 2).unwrap())),
            concurrency: Some(Concurrency {
                max,
                lease_ttl: 10 * SEC,
            }),
        }
    }

    #[test]
    fn concurrency_refusal_consumes_no_rate() {
        let p = policy(1);
        let mut s = KeyState::fresh(&p);
        assert!(decide(&p, &mut s, SEC, 1, Some(LeaseId(1))).0.allowed());
        let before = s.clone();
        let (d, _) = decide(&p, &mut s, SEC, 1, Some(LeaseId(2)));
        assert_eq!(d.denied_by(), Some(DeniedBy::Concurrency));
        // The rate has room: nothing a clock can promise, so no wait is invented.
        assert_eq!(d.retry_after(), Duration::ZERO);
        assert_eq!(s, before);
    }

    #[test]
    fn rate_refusal_takes_no_slot() {
        let p = policy(5);
        let mut s = KeyState::fresh(&p);
        assert!(decide(&p, &mut s, SEC, 2, Some(LeaseId(1))).0.allowed());
        let (d, _) = decide(&p, &mut s, SEC, 1, Some(LeaseId(2)));
        assert_eq!(d.denied_by(), Some(DeniedBy::Rate));
        assert_eq!(s.leases.count_live(SEC), 1);
    }

    #[test]
    fn expired_leases_free_their_slot() {
        let p = policy(1);
        let mut s = KeyState::fresh(&p);
        assert!(decide(&p, &mut s, SEC, 1, Some(LeaseId(1))).0.allowed());
        assert!(!decide(&p, &mut s, 2 * SEC, 1, Some(LeaseId(2))).0.allowed());
        assert!(decide(&p, &mut s, 11 * SEC, 1, Some(LeaseId(2)))
            .0
            .allowed());
    }

    #[test]
    fn a_limiter_without_a_rate_counts_slots() {
        let p = Policy {
            rule: None,
            concurrency: Some(Concurrency {
                max: 2,
                lease_ttl: 10 * SEC,
            }),
        };
        let mut s = KeyState::fresh(&p);
        assert_eq!(peek(&p, &s, 0, 1).remaining, 2);
        let (d, _) = decide(&p, &mut s, 0, 7, Some(LeaseId(1)));
        assert!(d.allowed() && d.limit == 2 && d.remaining == 1);
        assert!(decide(&p, &mut s, 0, 1, Some(LeaseId(2))).0.allowed());
        let (d, _) = decide(&p, &mut s, 0, 1, Some(LeaseId(3)));
        assert_eq!(d.denied_by(), Some(DeniedBy::Concurrency));
        assert_eq!(
            (d.limit, d.remaining, d.retry_after()),
            (2, 0, Duration::ZERO)
        );
        assert_eq!(check_cost(&p, 1_000_000), Ok(()));
    }

    #[test]
    fn a_refund_gives_back_what_the_admission_took() {
        let p = policy(3);
        let mut s = KeyState::fresh(&p);
        let fresh = s.clone();
        let (d, receipt) = decide(&p, &mut s, SEC, 2, Some(LeaseId(1)));
        assert!(d.allowed());
        refund(&p, &mut s, SEC, 2, receipt, Some(LeaseId(1)));
        assert_eq!(peek(&p, &s, SEC, 1), peek(&p, &fresh, SEC, 1));
        assert_eq!(s.leases.count_live(SEC), 0);
    }

    #[test]
    fn cost_is_checked_against_capacity() {
        let p = Policy {
            rule: Some(Rule::SlidingWindow(SlidingWindow::new(3, 1.0).unwrap())),
            concurrency: None,
        };
        assert_eq!(check_cost(&p, 0), Err(CostError::Zero));
        assert!(check_cost(&p, 3).is_ok());
        assert_eq!(
            check_cost(&p, 4),
            Err(CostError::ExceedsCapacity {
                cost: 4,
                capacity: 3
            })
        );
    }
}
