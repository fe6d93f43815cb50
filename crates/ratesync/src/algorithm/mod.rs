//! The math of rate limiting, as pure functions over (state, now, rule, cost).
//!
//! Nothing here reads a clock, takes a lock or talks to a store. Every engine either
//! calls these functions (memory) or re-implements them in its store's language
//! (Lua for Redis, SQL for PostgreSQL) and is tested against them: this module is
//! the reference that defines what a correct decision is.
//!
//! Time is `u64` nanoseconds since an origin chosen by the caller; only differences
//! matter.

mod gcra;
mod leases;
mod sliding_window;

use std::time::Duration;

pub use gcra::{TokenBucket, MAX_RATE_PER_SECOND};
pub use leases::{Concurrency, LeaseId, LeaseSet};
pub use sliding_window::{SlidingWindow, WindowLog, MAX_WINDOW_SECONDS};

use crate::decision::{Decision, DeniedBy};

/// A rule that has failed validation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("`{field}` must be a positive number, got {value}")]
    NotPositive { field: &'static str, value: f64 },
    #[error("`{field}` must be at most {max}")]
    TooLarge { field: &'static str, max: f64 },
    #[error("`{field}` is too small to be represented in nanoseconds")]
    TooSmall { field: &'static str },
    #[error("`burst` / `rate_per_second` is longer than the clock can represent; lower `burst` or raise `rate_per_second`")]
    SpanOverflow,
}

/// The rate part of a limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    TokenBucket(TokenBucket),
    SlidingWindow(SlidingWindow),
}

impl Rule {
    /// The capacity a single call's cost may not exceed (burst or limit).
    pub fn capacity(&self) -> u32 {
        match self {
            Rule::TokenBucket(tb) => tb.burst(),
            Rule::SlidingWindow(sw) => sw.limit(),
        }
    }

    /// The configuration name of the algorithm.
    pub fn algorithm_name(&self) -> &'static str {
        match self {
            Rule::TokenBucket(_) => "token_bucket",
            Rule::SlidingWindow(_) => "sliding_window",
        }
    }
}

/// Everything that decides one limiter: its rule and optional concurrency cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Policy {
    pub rule: Rule,
    pub concurrency: Option<Concurrency>,
}

/// The rate state of one key; which variant is fixed by the limiter's rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateState {
    /// GCRA theoretical arrival time (0 = never seen).
    Tat(u64),
    /// Sliding-window admission log.
    Log(WindowLog),
}

/// The whole state of one (limiter, key): what a store keeps for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    pub rate: RateState,
    pub leases: LeaseSet,
}

impl KeyState {
    /// The state of a key never seen, for `rule`.
    pub fn fresh(rule: &Rule) -> Self {
        let rate = match rule {
            Rule::TokenBucket(_) => RateState::Tat(0),
            Rule::SlidingWindow(_) => RateState::Log(WindowLog::default()),
        };
        KeyState {
            rate,
            leases: LeaseSet::default(),
        }
    }

    /// From when this state is indistinguishable from a fresh one, so that the key
    /// can be forgotten without changing any future decision.
    pub fn idle_at(&self, policy: &Policy) -> u64 {
        let rate = match (&policy.rule, &self.rate) {
            (Rule::TokenBucket(tb), RateState::Tat(tat)) => tb.idle_at(*tat),
            (Rule::SlidingWindow(sw), RateState::Log(log)) => sw.idle_at(log),
            _ => 0,
        };
        rate.max(self.leases.idle_at())
    }

    /// Whether this state is indistinguishable from a fresh one at `now`.
    pub fn is_idle(&self, policy: &Policy, now: u64) -> bool {
        self.idle_at(policy) <= now
    }
}

/// A call that can never be admitted, whatever the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    #[error("cost must be at least 1")]
    Zero,
    #[error("cost {cost} exceeds the limiter's capacity of {capacity} (burst or limit); it could never be admitted")]
    ExceedsCapacity { cost: u32, capacity: u32 },
}

/// Checks that `cost` can ever be admitted under `rule`.
pub fn check_cost(rule: &Rule, cost: u32) -> Result<(), CostError> {
    if cost == 0 {
        return Err(CostError::Zero);
    }
    let capacity = rule.capacity();
    if cost > capacity {
        return Err(CostError::ExceedsCapacity { cost, capacity });
    }
    Ok(())
}

/// Decides an attempt and, when `lease` is given and the policy caps concurrency,
/// takes a slot under that id: both or neither (SPEC §4.4). A refusal leaves `state`
/// as it was, up to dropping expired entries. The caller has checked the cost.
pub fn decide(
    policy: &Policy,
    state: &mut KeyState,
    now: u64,
    cost: u32,
    lease: Option<LeaseId>,
) -> Decision {
    if let (Some(cc), Some(_)) = (policy.concurrency, lease) {
        if state.leases.live(now) >= cc.max as usize {
            let mut decision = peek(policy, state, now, cost);
            decision.allowed = false;
            decision.denied_by = Some(DeniedBy::Concurrency);
            decision.retry_after = decision.retry_after.max(state.leases.earliest_expiry(now));
            return decision;
        }
    }
    let decision = match (&policy.rule, &mut state.rate) {
        (Rule::TokenBucket(tb), RateState::Tat(tat)) => {
            let (decision, new_tat) = tb.decide(*tat, now, cost);
            if let Some(new_tat) = new_tat {
                *tat = new_tat;
            }
            decision
        }
        (Rule::SlidingWindow(sw), RateState::Log(log)) => sw.decide(log, now, cost),
        (rule, _) => {
            // The state belongs to another rule (the limiter was reconfigured): start over.
            *state = KeyState::fresh(rule);
            return decide(policy, state, now, cost, lease);
        }
    };
    if decision.allowed {
        if let (Some(cc), Some(id)) = (policy.concurrency, lease) {
            state.leases.insert(id, now, cc.lease_ttl);
        }
    }
    decision
}

/// The decision an attempt of `cost` would get at `now`, consuming nothing.
/// `remaining` is what is available now (an admission's decision says what is left
/// after it).
pub fn peek(policy: &Policy, state: &KeyState, now: u64, cost: u32) -> Decision {
    let decision = match (&policy.rule, &state.rate) {
        (Rule::TokenBucket(tb), RateState::Tat(tat)) => tb.peek(*tat, now, cost),
        (Rule::SlidingWindow(sw), RateState::Log(log)) => sw.peek(log, now, cost),
        (rule, _) => return peek(policy, &KeyState::fresh(rule), now, cost),
    };
    match policy.concurrency {
        // As in `decide`: a full cap refuses whatever the rate says, and the wait
        // covers both.
        Some(cc) if state.leases.count_live(now) >= cc.max as usize => Decision {
            allowed: false,
            denied_by: Some(DeniedBy::Concurrency),
            retry_after: decision.retry_after.max(state.leases.earliest_expiry(now)),
            ..decision
        },
        _ => decision,
    }
}

pub(crate) fn nanos_to_duration(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn policy(max: u32) -> Policy {
        Policy {
            rule: Rule::TokenBucket(TokenBucket::new(1.0, 2).unwrap()),
            concurrency: Some(Concurrency {
                max,
                lease_ttl: 10 * SEC,
            }),
        }
    }

    #[test]
    fn concurrency_refusal_consumes_no_rate() {
        let p = policy(1);
        let mut s = KeyState::fresh(&p.rule);
        assert!(decide(&p, &mut s, SEC, 1, Some(LeaseId(1))).allowed);
        let before = s.clone();
        let d = decide(&p, &mut s, SEC, 1, Some(LeaseId(2)));
        assert_eq!(d.denied_by, Some(DeniedBy::Concurrency));
        assert_eq!(s, before);
    }

    #[test]
    fn rate_refusal_takes_no_slot() {
        let p = policy(5);
        let mut s = KeyState::fresh(&p.rule);
        assert!(decide(&p, &mut s, SEC, 2, Some(LeaseId(1))).allowed);
        let d = decide(&p, &mut s, SEC, 1, Some(LeaseId(2)));
        assert_eq!(d.denied_by, Some(DeniedBy::Rate));
        assert_eq!(s.leases.count_live(SEC), 1);
    }

    #[test]
    fn expired_leases_free_their_slot() {
        let p = policy(1);
        let mut s = KeyState::fresh(&p.rule);
        assert!(decide(&p, &mut s, SEC, 1, Some(LeaseId(1))).allowed);
        assert!(!decide(&p, &mut s, 2 * SEC, 1, Some(LeaseId(2))).allowed);
        assert!(decide(&p, &mut s, 11 * SEC, 1, Some(LeaseId(2))).allowed);
    }

    #[test]
    fn cost_is_checked_against_capacity() {
        let rule = Rule::SlidingWindow(SlidingWindow::new(3, 1.0).unwrap());
        assert_eq!(check_cost(&rule, 0), Err(CostError::Zero));
        assert!(check_cost(&rule, 3).is_ok());
        assert_eq!(
            check_cost(&rule, 4),
            Err(CostError::ExceedsCapacity {
                cost: 4,
                capacity: 3
            })
        );
    }
}
