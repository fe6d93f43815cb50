//! The state of one key in memory.

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::algorithm::{self, KeyState, LeaseId, Policy, RateState, Receipt, Rule};
use crate::decision::Decision;

pub(super) enum Slot {
    /// A token bucket without concurrency cap: its whole state is the GCRA
    /// theoretical arrival time, updated lock-free.
    Tat(TatCell),
    /// Anything with a log or leases: the reference decision under a short lock.
    /// Boxed so that every bucket of the map stays small (cache footprint).
    Locked(Box<Mutex<KeyState>>),
}

impl Slot {
    pub fn fresh(policy: &Policy) -> Self {
        match (policy.rule, policy.concurrency) {
            (Some(Rule::TokenBucket(_)), None) => Slot::Tat(TatCell(AtomicU64::new(0))),
            _ => Slot::Locked(Box::new(Mutex::new(KeyState::fresh(policy)))),
        }
    }

    /// Decides one attempt on this key and hands the decision to `then`. Inlined
    /// into the attempt down to the compare-and-swap, with `then` called in each
    /// branch: the decision of a lock-free admission is built once, after the swap,
    /// and goes from registers straight into the permit (`docs/design.md#calls`).
    #[inline(always)]
    pub fn acquire<R>(
        &self,
        policy: &Policy,
        now: u64,
        cost: u32,
        lease: Option<LeaseId>,
        then: impl FnOnce(Decision, Receipt) -> R,
    ) -> R {
        match (self, &policy.rule) {
            (Slot::Tat(cell), Some(Rule::TokenBucket(tb))) => {
                let mut tat = cell.load();
                let admitted = loop {
                    let Some(new_tat) = tb.admit(tat, now, cost) else {
                        break None;
                    };
                    // Lost a race with another admission (or a group holds the slot):
                    // decide again on what is there now.
                    match cell.0.compare_exchange_weak(
                        tat,
                        new_tat,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    ) {
                        Ok(_) => break Some(new_tat),
                        Err(_) => tat = cell.load(),
                    }
                };
                let receipt = match admitted {
                    Some(recorded) => Receipt { now, recorded },
                    None => Receipt::default(),
                };
                then(tb.describe(tat, now, cost, admitted), receipt)
            }
            (Slot::Locked(state), _) => {
                let (decision, receipt) =
                    algorithm::decide(policy, &mut state.lock(), now, cost, lease);
                then(decision, receipt)
            }
            (Slot::Tat(_), _) => unreachable!("slots are created for their limiter's policy"),
        }
    }

    pub fn peek(&self, policy: &Policy, now: u64, cost: u32) -> Decision {
        match self {
            Slot::Tat(cell) => {
                let state = KeyState {
                    rate: RateState::Tat(cell.load()),
                    leases: Default::default(),
                };
                algorithm::peek(policy, &state, now, cost)
            }
            Slot::Locked(state) => algorithm::peek(policy, &state.lock(), now, cost),
        }
    }

    pub fn refund(
        &self,
        policy: &Policy,
        now: u64,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) {
        let mut held = self.hold();
        algorithm::refund(policy, held.state(), now, cost, receipt, lease);
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
        *self.hold().state() = KeyState::fresh(policy);
    }

    /// From when this key is indistinguishable from a fresh one. A slot held by a
    /// group is in use: never idle.
    pub fn idle_at(&self, policy: &Policy) -> u64 {
        match self {
            Slot::Tat(cell) => cell.0.load(Ordering::Acquire),
            Slot::Locked(state) => state.lock().idle_at(policy),
        }
    }

    /// Takes the slot for a decision over several keys (a group), a refund or a
    /// reset: no other decision on it until the returned guard is dropped.
    pub fn hold(&self) -> Held<'_> {
        match self {
            Slot::Tat(cell) => Held::Tat {
                state: KeyState {
                    rate: RateState::Tat(cell.lock()),
                    leases: Default::default(),
                },
                cell,
            },
            Slot::Locked(state) => Held::Locked(state.lock()),
        }
    }
}

/// A slot taken by [`Slot::hold`]; what is written to its state is stored when it
/// is dropped.
pub(super) enum Held<'a> {
    Tat { cell: &'a TatCell, state: KeyState },
    Locked(MutexGuard<'a, KeyState>),
}

impl Held<'_> {
    pub fn state(&mut self) -> &mut KeyState {
        match self {
            Held::Tat { state, .. } => state,
            Held::Locked(guard) => guard,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Held::Tat { cell, state } = self {
            // Decisions on this slot keep its kind (the policy is the slot's own);
            // anything else would be a fresh bucket, TAT 0.
            let tat = match state.rate {
                RateState::Tat(tat) => tat,
                _ => 0,
            };
            cell.unlock(tat);
        }
    }
}

/// A token bucket's TAT, updated lock-free by single decisions and taken, briefly,
/// by group decisions (`docs/design.md#groups`): while a group holds it, it reads
/// [`TatCell::HELD`], which no real TAT can be (TATs stay far below `u64::MAX / 2`),
/// so a compare-and-swap by a single decision fails and waits for the group.
pub(super) struct TatCell(AtomicU64);

impl TatCell {
    const HELD: u64 = u64::MAX;

    /// The TAT, waiting while a group holds the cell.
    #[inline]
    fn load(&self) -> u64 {
        let tat = self.0.load(Ordering::Acquire);
        if tat != Self::HELD {
            return tat;
        }
        self.wait_while_held()
    }

    #[cold]
    fn wait_while_held(&self) -> u64 {
        let mut spins = 0u32;
        loop {
            let tat = self.0.load(Ordering::Acquire);
            if tat != Self::HELD {
                return tat;
            }
            // A group holds a slot for well under a microsecond: spin, then yield
            // in case its thread was preempted.
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Takes the cell; returns the TAT it held.
    fn lock(&self) -> u64 {
        loop {
            let tat = self.load();
            if self
                .0
                .compare_exchange_weak(tat, Self::HELD, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return tat;
            }
        }
    }

    fn unlock(&self, tat: u64) {
        self.0.store(tat, Ordering::Release);
    }
}
