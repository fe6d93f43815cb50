//! The memory engine: the embedded default, for development and single-process use.
//!
//! State lives in one sharded concurrent map per limiter, keyed by the user's key;
//! the limiter-wide key (`""`) has a slot of its own so unkeyed limiters never hash.
//! A key costs its map entry and nothing else: no task, timer or lock object per key.
//!
//! Token buckets without a concurrency cap (the common case) are one `AtomicU64`
//! (the GCRA theoretical arrival time) updated by compare-and-swap: lock-free.
//! Sliding windows and concurrency leases keep a [`KeyState`] under a short
//! `parking_lot` mutex; the critical section is the pure decision function.
//!
//! Idle keys (state equal to a fresh key's) are dropped by sweeps that run as keys are
//! added, amortised O(1) per new key; `max_keys` bounds the total across the store.

mod eviction;
mod slot;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use compact_str::CompactString;
use dashmap::mapref::one::{Ref, RefMut};
use dashmap::DashMap;

use self::eviction::{Sweeper, IDLE_GRACE_NANOS};
use self::slot::Slot;
use super::{Engine, EngineFuture, EngineLimiter, LimiterSpec, StoreError};
use crate::algorithm::{LeaseId, Policy};
use crate::clock::{Clock, MonotonicClock};
use crate::config::MemoryConfig;
use crate::decision::Decision;

/// Keys up to 24 bytes (user ids, IP addresses, API-key hashes) are stored inline in
/// the map's bucket: a lookup compares them without another cache miss.
type KeyMap = DashMap<CompactString, Slot, foldhash::fast::RandomState>;

/// A borrowed slot: the limiter-wide one, or one in the map (holding its shard's lock).
enum SlotRef<'a> {
    LimiterWide(&'a Slot),
    Found(Ref<'a, CompactString, Slot>),
    Added(RefMut<'a, CompactString, Slot>),
}

impl std::ops::Deref for SlotRef<'_> {
    type Target = Slot;

    #[inline]
    fn deref(&self) -> &Slot {
        match self {
            SlotRef::LimiterWide(slot) => slot,
            SlotRef::Found(slot) => slot,
            SlotRef::Added(slot) => slot,
        }
    }
}

/// Shards of each limiter's key map. Even a read takes its shard's lock word, so
/// threads on different keys contend whenever their keys share a shard; more shards
/// than dashmap's default (4 × cores) make that rare at the cost of a few KiB.
const KEY_MAP_SHARDS: usize = 128;

/// Process-memory store. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct MemoryEngine {
    shared: Arc<Shared>,
}

struct Shared {
    clock: EngineClock,
    max_keys: Option<usize>,
    /// Keys tracked across all limiters of this store.
    keys: AtomicUsize,
}

impl MemoryEngine {
    /// A memory store on the monotonic clock.
    pub fn new(config: &MemoryConfig) -> Self {
        Self::build(config, EngineClock::Monotonic(MonotonicClock::default()))
    }

    /// A memory store on the given clock (tests use [`crate::ManualClock`]).
    pub fn with_clock(config: &MemoryConfig, clock: Arc<dyn Clock>) -> Self {
        Self::build(config, EngineClock::Custom(clock))
    }

    fn build(config: &MemoryConfig, clock: EngineClock) -> Self {
        MemoryEngine {
            shared: Arc::new(Shared {
                clock,
                max_keys: config.max_keys.map(|n| n.get()),
                keys: AtomicUsize::new(0),
            }),
        }
    }

    /// Keys currently tracked by this store (all limiters).
    pub fn tracked_keys(&self) -> usize {
        self.shared.keys.load(Ordering::Relaxed)
    }
}

/// The production clock is called directly (inlined on the hot path); any other
/// through its trait object.
enum EngineClock {
    Monotonic(MonotonicClock),
    Custom(Arc<dyn Clock>),
}

impl EngineClock {
    #[inline]
    fn now_nanos(&self) -> u64 {
        match self {
            EngineClock::Monotonic(clock) => clock.now_nanos(),
            EngineClock::Custom(clock) => clock.now_nanos(),
        }
    }
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(Arc::new(MemoryLimiter {
            policy: spec.policy,
            shared: self.shared.clone(),
            limiter_wide: Slot::fresh(&spec.policy),
            keys: KeyMap::with_hasher_and_shard_amount(Default::default(), KEY_MAP_SHARDS),
            sweeper: Sweeper::default(),
        }))
    }
}

/// The keys of one limiter in a memory store.
pub struct MemoryLimiter {
    policy: Policy,
    shared: Arc<Shared>,
    limiter_wide: Slot,
    keys: KeyMap,
    sweeper: Sweeper,
}

impl MemoryLimiter {
    #[inline]
    fn now(&self) -> u64 {
        self.shared.clock.now_nanos()
    }

    /// The slot of `key`, created if needed.
    #[inline]
    fn slot<'a>(&'a self, key: &str, now: u64) -> SlotRef<'a> {
        if key.is_empty() {
            return SlotRef::LimiterWide(&self.limiter_wide);
        }
        match self.keys.get(key) {
            Some(slot) => SlotRef::Found(slot),
            None => SlotRef::Added(self.add_slot(key, now)),
        }
    }

    /// The first sighting of a key: kept out of line so the lookup path stays small.
    #[cold]
    #[inline(never)]
    fn add_slot<'a>(&'a self, key: &str, now: u64) -> RefMut<'a, CompactString, Slot> {
        self.make_room(now);
        self.keys
            .entry(CompactString::from(key))
            .or_insert_with(|| {
                self.shared.keys.fetch_add(1, Ordering::Relaxed);
                Slot::fresh(&self.policy)
            })
    }

    /// Before adding a key: drop idle keys now and then, and enforce `max_keys`.
    fn make_room(&self, now: u64) {
        let full = self
            .shared
            .max_keys
            .is_some_and(|max| self.shared.keys.load(Ordering::Relaxed) >= max);
        if full || self.sweeper.due(self.keys.len()) {
            let grace = if full { 0 } else { IDLE_GRACE_NANOS };
            let removed = self.sweeper.drop_idle(&self.keys, &self.policy, now, grace);
            self.shared.keys.fetch_sub(removed, Ordering::Relaxed);
        }
        if let Some(max) = self.shared.max_keys {
            if self.shared.keys.load(Ordering::Relaxed) >= max {
                let removed = self.sweeper.evict_nearest_idle(&self.keys, &self.policy);
                self.shared.keys.fetch_sub(removed, Ordering::Relaxed);
            }
        }
    }
}

impl MemoryLimiter {
    /// Decides and, when admitted, consumes (see [`EngineLimiter::acquire`]).
    #[inline]
    pub fn acquire_now(&self, key: &str, cost: u32, lease: Option<LeaseId>) -> Decision {
        let now = self.now();
        self.slot(key, now).acquire(&self.policy, now, cost, lease)
    }

    /// See [`EngineLimiter::peek`].
    pub fn peek_now(&self, key: &str, cost: u32) -> Decision {
        let now = self.now();
        if key.is_empty() {
            return self.limiter_wide.peek(&self.policy, now, cost);
        }
        match self.keys.get(key) {
            Some(slot) => slot.peek(&self.policy, now, cost),
            None => Slot::fresh(&self.policy).peek(&self.policy, now, cost),
        }
    }

    /// See [`EngineLimiter::release`].
    pub fn release_now(&self, key: &str, lease: LeaseId) {
        if key.is_empty() {
            return self.limiter_wide.release(lease);
        }
        if let Some(slot) = self.keys.get(key) {
            slot.release(lease);
        }
    }

    /// See [`EngineLimiter::renew`].
    pub fn renew_now(&self, key: &str, lease: LeaseId) -> bool {
        let now = self.now();
        let ttl = self.policy.concurrency.map_or(0, |c| c.lease_ttl);
        if key.is_empty() {
            return self.limiter_wide.renew(lease, now, ttl);
        }
        self.keys
            .get(key)
            .is_some_and(|slot| slot.renew(lease, now, ttl))
    }

    /// See [`EngineLimiter::reset`].
    pub fn reset_now(&self, key: Option<&str>) {
        match key {
            None => {
                self.limiter_wide.reset(&self.policy);
                let before = self.keys.len();
                self.keys.clear();
                self.shared.keys.fetch_sub(before, Ordering::Relaxed);
            }
            Some("") => self.limiter_wide.reset(&self.policy),
            Some(key) => {
                if self.keys.remove(key).is_some() {
                    self.shared.keys.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn ready<T: Send + 'static>(value: T) -> EngineFuture<'static, T> {
    Box::pin(std::future::ready(Ok(value)))
}

impl EngineLimiter for MemoryLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision> {
        ready(self.acquire_now(key, cost, lease))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision> {
        ready(self.peek_now(key, cost))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()> {
        self.release_now(key, lease);
        ready(())
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool> {
        ready(self.renew_now(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()> {
        self.reset_now(key);
        ready(())
    }

    fn local(&self) -> Option<&MemoryLimiter> {
        Some(self)
    }
}
