//! Dropping idle keys, and making room under `max_keys`.
//!
//! A key is idle when its state equals a fresh key's (bucket full, window empty, no
//! live lease): forgetting it changes no decision. Sweeps walk one limiter's map and
//! run when the keys added since the last sweep reach half the map's size (at least
//! `MIN_SWEEP_INTERVAL`): a sweep of n keys is paid for by n/2 additions, so the cost
//! is amortised O(1) per added key.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::KeyMap;
use crate::algorithm::Policy;

const MIN_SWEEP_INTERVAL: usize = 1024;

/// How long a key must have been idle before a routine sweep drops it. Hot keys that
/// refill between calls (a bucket far above its rate) would otherwise be dropped and
/// re-created over and over; a store at its `max_keys` bound drops any idle key.
pub(super) const IDLE_GRACE_NANOS: u64 = 1_000_000_000;

/// Fraction of a full map evicted at once when no key is idle, so that a store at
/// its bound does not scan on every new key.
const EVICT_DIVISOR: usize = 16;

#[derive(Default)]
pub(super) struct Sweeper {
    added_since_sweep: AtomicUsize,
}

impl Sweeper {
    /// Counts one added key; true when a sweep is due.
    pub fn due(&self, len: usize) -> bool {
        let added = self.added_since_sweep.fetch_add(1, Ordering::Relaxed) + 1;
        added >= (len / 2).max(MIN_SWEEP_INTERVAL)
    }

    /// Removes every key idle since `grace` nanoseconds or longer; returns how many.
    pub fn drop_idle(&self, keys: &KeyMap, policy: &Policy, now: u64, grace: u64) -> usize {
        self.added_since_sweep.store(0, Ordering::Relaxed);
        let before = keys.len();
        let idle_before = now.saturating_sub(grace);
        keys.retain(|_, slot| slot.idle_at(policy) > idle_before);
        before.saturating_sub(keys.len())
    }

    /// With no idle key to drop, evicts the keys closest to becoming idle (a fraction
    /// of the map). This loosens those keys' limits, which is what a bound on memory
    /// means; the bound is chosen by the operator.
    pub fn evict_nearest_idle(&self, keys: &KeyMap, policy: &Policy) -> usize {
        let mut candidates: Vec<(u64, compact_str::CompactString)> = keys
            .iter()
            .map(|entry| (entry.value().idle_at(policy), entry.key().clone()))
            .collect();
        if candidates.is_empty() {
            return 0;
        }
        let count = (candidates.len() / EVICT_DIVISOR).max(1);
        candidates.select_nth_unstable_by_key(count - 1, |(idle_at, _)| *idle_at);
        candidates[..count]
            .iter()
            .filter(|(_, key)| keys.remove(key.as_str()).is_some())
            .count()
    }
}
