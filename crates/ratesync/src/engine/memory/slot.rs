//! The state of one key in memory.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::algorithm::{self, KeyState, LeaseId, Policy, RateState, Rule};
use crate::decision::Decision;

pub(super) enum Slot {
    /// A token bucket without concurrency cap: its whole state is the GCRA
    /// theoretical arrival time, updated lock-free.
    Tat(AtomicU64),
    /// Anything with a log or leases: the reference decision under a short lock.
    /// Boxed so that every bucket of the map stays small (cache footprint).
    Locked(Box<Mutex<KeyState>>),
}

impl Slot {
    pub fn fresh(policy: &Policy) -> Self {
        match (policy.rule, policy.concurrency) {
            (Rule::TokenBucket(_), None) => Slot::Tat(AtomicU64::new(0)),
            _ => Slot::Locked(Box::new(Mutex::new(KeyState::fresh(&policy.rule)))),
        }
    }

    #[inline]
    pub fn acquire(
        &self,
        policy: &Policy,
        now: u64,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> Decision {
        match (self, &policy.rule) {
            (Slot::Tat(tat), Rule::TokenBucket(tb)) => {
                let mut current = tat.load(Ordering::Acquire);
                loop {
                    let (decision, new_tat) = tb.decide(current, now, cost);
                    let Some(new_tat) = new_tat else {
                        return decision;
                    };
                    // Lost a race with another admission: decide again on its result.
                    match tat.compare_exchange_weak(
                        current,
                        new_tat,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => return decision,
                        Err(actual) => current = actual,
                    }
                }
            }
            (Slot::Locked(state), _) => {
                algorithm::decide(policy, &mut state.lock(), now, cost, lease)
            }
            (Slot::Tat(_), Rule::SlidingWindow(_)) => {
                unreachable!("slots are created for their limiter's policy")
            }
        }
    }

    pub fn peek(&self, policy: &Policy, now: u64, cost: u32) -> Decision {
        match self {
            Slot::Tat(tat) => {
                let state = KeyState {
                    rate: RateState::Tat(tat.load(Ordering::Acquire)),
                    leases: Default::default(),
                };
                algorithm::peek(policy, &state, now, cost)
            }
            Slot::Locked(state) => algorithm::peek(policy, &state.lock(), now, cost),
        }
    }

    pub fn release(&self, lease: LeaseId) {
        if let Slot::Locked(state) = self {
            state.lock().leases.release(lease);
        }
    }

    pub fn renew(&self, lease: LeaseId, now: u64, ttl: u64) -> bool {
        match self {
            Slot::Locked(state) => state.lock().leases.renew(lease, now, ttl),
            Slot::Tat(_) => false,
        }
    }

    pub fn reset(&self, policy: &Policy) {
        match self {
            Slot::Tat(tat) => tat.store(0, Ordering::Release),
            Slot::Locked(state) => *state.lock() = KeyState::fresh(&policy.rule),
        }
    }

    /// From when this key is indistinguishable from a fresh one.
    pub fn idle_at(&self, policy: &Policy) -> u64 {
        match self {
            Slot::Tat(tat) => tat.load(Ordering::Acquire),
            Slot::Locked(state) => state.lock().idle_at(policy),
        }
    }
}
