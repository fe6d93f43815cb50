//! Dropping idle keys, and making room under `max_keys`.
//!
//! A key is idle when its state equals a fresh key's (bucket full, window empty, no
//! live lease): forgetting it changes no decision. Routine sweeps walk one limiter's
//! map and run when the keys added since the last sweep reach half the map's size (at
//! least `MIN_SWEEP_INTERVAL`): a sweep of n keys is paid for by n/2 additions, so
//! the cost is amortised O(1) per added key.
//!
//! `max_keys` bounds the whole store: when an addition finds the store full, idle
//! keys are dropped from every limiter of the store, and if none is idle, the keys of
//! any limiter closest to becoming idle (a fraction of the store) are evicted. So one
//! limiter adding keys can never take the whole budget from the others' idle keys
//! while keeping its own, and a limiter whose own keys are all busy still makes room.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use super::{KeyMap, MemoryLimiter, Shared};
use crate::algorithm::Policy;

const MIN_SWEEP_INTERVAL: usize = 1024;

/// How long a key must have been idle before a routine sweep drops it. Hot keys that
/// refill between calls (a bucket far above its rate) would otherwise be dropped and
/// re-created over and over; a store at its `max_keys` bound drops any idle key.
const IDLE_GRACE_NANOS: u64 = 1_000_000_000;

/// Fraction of a full store evicted at once when no key is idle, so that a store at
/// its bound does not scan on every new key.
const EVICT_DIVISOR: usize = 16;

#[derive(Default)]
pub(super) struct Sweeper {
    added_since_sweep: AtomicUsize,
}

impl Sweeper {
    /// Counts one added key; true when a sweep is due.
    fn due(&self, len: usize) -> bool {
        let added = self.added_since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        added >= (len / 2).max(MIN_SWEEP_INTERVAL)
    }

    /// Removes every key idle since `grace` nanoseconds or longer; returns how many.
    fn drop_idle(&self, keys: &KeyMap, policy: &Policy, now: u64, grace: u64) -> usize {
        self.added_since_sweep.store(0, Ordering::Relaxed);
        let before = keys.len();
        let idle_before = now.saturating_sub(grace);
        keys.retain(|_, slot| slot.idle_at(policy) > idle_before);
        before.saturating_sub(keys.len())
    }
}

/// Before `limiter` adds a key: drop idle keys now and then, and keep the store under
/// `max_keys`.
pub(super) fn make_room(limiter: &MemoryLimiter, now: u64) {
    let shared = &limiter.shared;
    if shared.is_full() {
        return make_room_in_store(shared, now);
    }
    if limiter.state.sweeper.due(limiter.state.keys.len()) {
        // Skipped while a group or another sweep holds the keys in place: the next
        // addition tries again.
        if let Some(_keys_in_place) = shared.limiters.try_lock() {
            let removed = limiter.state.sweeper.drop_idle(
                &limiter.state.keys,
                &limiter.policy,
                now,
                IDLE_GRACE_NANOS,
            );
            shared.keys.fetch_sub(removed, Ordering::Relaxed);
        }
    }
}

impl Shared {
    fn is_full(&self) -> bool {
        self.max_keys
            .is_some_and(|max| self.keys.load(Ordering::Relaxed) >= max)
    }
}

/// The store is at `max_keys`: drop idle keys of every limiter, else evict the keys
/// closest to becoming idle.
fn make_room_in_store(shared: &Shared, now: u64) {
    let limiters = shared.limiters.lock();
    // Another addition may have made room while this one waited.
    if !shared.is_full() {
        return;
    }
    let live: Vec<Arc<MemoryLimiter>> = limiters.iter().filter_map(Weak::upgrade).collect();
    for limiter in &live {
        let removed = limiter
            .state
            .sweeper
            .drop_idle(&limiter.state.keys, &limiter.policy, now, 0);
        shared.keys.fetch_sub(removed, Ordering::Relaxed);
    }
    if shared.is_full() {
        let removed = evict_nearest_idle(&live);
        shared.keys.fetch_sub(removed, Ordering::Relaxed);
    }
}

/// With no idle key to drop, evicts the keys of the store closest to becoming idle (a
/// fraction of them), whichever limiter they belong to. This loosens those keys'
/// limits, which is what a bound on memory means; the bound is the operator's choice.
fn evict_nearest_idle(limiters: &[Arc<MemoryLimiter>]) -> usize {
    let mut candidates: Vec<(u64, usize, compact_str::CompactString)> = Vec::new();
    for (index, limiter) in limiters.iter().enumerate() {
        candidates.extend(limiter.state.keys.iter().map(|entry| {
            (
                entry.value().idle_at(&limiter.policy),
                index,
                entry.key().clone(),
            )
        }));
    }
    if candidates.is_empty() {
        return 0;
    }
    let count = (candidates.len() / EVICT_DIVISOR).max(1);
    candidates.select_nth_unstable_by_key(count - 1, |(idle_at, _, _)| *idle_at);
    candidates[..count]
        .iter()
        .filter(|(_, index, key)| limiters[*index].state.keys.remove(key.as_str()).is_some())
        .count()
}
