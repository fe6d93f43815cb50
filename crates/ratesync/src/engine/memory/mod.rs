//! The memory engine: the embedded default, for development and single-process use
//! (`docs/design.md#memory`).
//!
//! State lives in one sharded concurrent map per limiter, keyed by the user's key;
//! the limiter-wide key (`""`) has a slot of its own so unkeyed limiters never hash.
//! A key costs its map entry and nothing else: no task, timer or lock object per key.
//! Every call is decided in this process, without I/O: the engine answers at once
//! ([`StoreCall::Ready`]).
//!
//! Token buckets without a concurrency cap (the common case) are one `AtomicU64`
//! (the GCRA theoretical arrival time) updated by compare-and-swap: lock-free.
//! Sliding windows and concurrency leases keep a
//! [`KeyState`](crate::algorithm::KeyState) under a short `parking_lot` mutex; the
//! critical section is the pure decision function. A group takes its slots in a
//! fixed order (`group`).
//!
//! Idle keys (state equal to a fresh key's) are dropped by sweeps that run as keys are
//! added, amortised O(1) per new key; `max_keys` bounds the total across the store,
//! evicting the store's idlest keys whichever limiter they belong to (`eviction`).

mod eviction;
mod group;
mod slot;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use compact_str::CompactString;
use dashmap::mapref::one::{Ref, RefMut};
use dashmap::DashMap;
use parking_lot::Mutex;

use self::eviction::Sweeper;
use self::slot::Slot;
use crate::algorithm::{GroupDecision, LeaseId, Policy, Receipt};
use crate::clock::{Clock, MonotonicClock};
use crate::config::MemoryConfig;
use crate::decision::Decision;
use crate::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError};

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
    /// The store's limiters, for store-wide eviction. This lock also keeps keys in
    /// place: whatever removes keys (sweeps, evictions, resets) takes it, and so does
    /// a group decision while it holds its slots.
    limiters: Mutex<Vec<Weak<MemoryLimiter>>>,
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
                limiters: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Keys currently tracked by this store (all limiters).
    pub fn tracked_keys(&self) -> usize {
        self.shared.keys.load(Ordering::Relaxed)
    }
}

/// The production clock is called directly (inlined on the hot path); any other
/// through its trait object. Each limiter keeps a copy beside its state, so a
/// decision reads the clock without going through the store.
#[derive(Clone)]
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

impl MemoryEngine {
    fn limiter_on(&self, policy: Policy, state: Arc<KeyStates>) -> Arc<dyn EngineLimiter> {
        let limiter = Arc::new(MemoryLimiter {
            policy,
            clock: self.shared.clock.clone(),
            shared: self.shared.clone(),
            state,
        });
        let mut limiters = self.shared.limiters.lock();
        limiters.retain(|l| l.strong_count() > 0);
        limiters.push(Arc::downgrade(&limiter));
        limiter
    }
}

/// Whether state kept for `old` reads the same under `new`: the same algorithm, and
/// the same kind of slot (a bare bucket's is one atomic word, any other a locked
/// state with its leases).
fn same_layout(old: &Policy, new: &Policy) -> bool {
    let algorithm = |policy: &Policy| policy.rule.as_ref().map(|rule| rule.algorithm_name());
    algorithm(old) == algorithm(new)
        && std::mem::discriminant(&Slot::fresh(old)) == std::mem::discriminant(&Slot::fresh(new))
}

impl Engine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let state = Arc::new(KeyStates {
            limiter_wide: Slot::fresh(&spec.policy),
            keys: KeyMap::with_hasher_and_shard_amount(Default::default(), KEY_MAP_SHARDS),
            sweeper: Sweeper::default(),
            shared: self.shared.clone(),
        });
        Ok(self.limiter_on(spec.policy, state))
    }

    /// The keys of the limiter a reload replaces carry over to its successor when
    /// both keep them the same way: the same algorithm, and a cap on both or neither
    /// (`docs/design.md#hot-reload`).
    fn limiter_replacing(
        &self,
        spec: LimiterSpec,
        previous: &Arc<dyn EngineLimiter>,
    ) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let previous = previous.clone() as Arc<dyn std::any::Any + Send + Sync>;
        let kept = previous
            .downcast::<MemoryLimiter>()
            .ok()
            .filter(|previous| {
                Arc::ptr_eq(&previous.shared, &self.shared)
                    && same_layout(&previous.policy, &spec.policy)
            });
        match kept {
            Some(previous) => Ok(self.limiter_on(spec.policy, previous.state.clone())),
            None => self.limiter(spec),
        }
    }

    fn acquire_all<'a>(&'a self, members: &'a [GroupMember<'a>]) -> StoreCall<'a, GroupDecision> {
        StoreCall::Ready(group::decide(&self.shared, members))
    }
}

/// The keys of one limiter in a memory store.
pub struct MemoryLimiter {
    policy: Policy,
    clock: EngineClock,
    shared: Arc<Shared>,
    /// Shared with the limiter this one replaced on a reload, when both keep keys the
    /// same way (`MemoryEngine::limiter_replacing`).
    state: Arc<KeyStates>,
}

/// The state of a limiter's keys.
struct KeyStates {
    limiter_wide: Slot,
    keys: KeyMap,
    sweeper: Sweeper,
    shared: Arc<Shared>,
}

impl Drop for KeyStates {
    fn drop(&mut self) {
        // Keys no limiter decides any more leave the store's count.
        self.shared
            .keys
            .fetch_sub(self.keys.len(), Ordering::Relaxed);
    }
}

impl MemoryLimiter {
    #[inline]
    fn now(&self) -> u64 {
        self.clock.now_nanos()
    }

    /// The slot of `key`, created if needed.
    #[inline]
    fn slot<'a>(&'a self, key: &str, now: u64) -> SlotRef<'a> {
        if key.is_empty() {
            return SlotRef::LimiterWide(&self.state.limiter_wide);
        }
        match self.state.keys.get(key) {
            Some(slot) => SlotRef::Found(slot),
            None => SlotRef::Added(self.add_slot(key, now)),
        }
    }

    /// The slot of `key` if it exists.
    fn existing_slot<'a>(&'a self, key: &str) -> Option<SlotRef<'a>> {
        if key.is_empty() {
            return Some(SlotRef::LimiterWide(&self.state.limiter_wide));
        }
        self.state.keys.get(key).map(SlotRef::Found)
    }

    /// The first sighting of a key: kept out of line so the lookup path stays small.
    #[cold]
    #[inline(never)]
    fn add_slot<'a>(&'a self, key: &str, now: u64) -> RefMut<'a, CompactString, Slot> {
        eviction::make_room(self, now);
        self.insert(key)
    }

    /// Inserts `key` with a fresh slot unless it is there.
    fn insert<'a>(&'a self, key: &str) -> RefMut<'a, CompactString, Slot> {
        self.state
            .keys
            .entry(CompactString::from(key))
            .or_insert_with(|| {
                self.shared.keys.fetch_add(1, Ordering::Relaxed);
                Slot::fresh(&self.policy)
            })
    }

    /// Decides and, when admitted, consumes (see [`EngineLimiter::acquire`]); the
    /// decision and its receipt go to `then` (see [`Slot::acquire`]).
    #[inline(always)]
    pub(crate) fn decide<R>(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
        then: impl FnOnce(Decision, Receipt) -> R,
    ) -> R {
        let now = self.now();
        self.slot(key, now)
            .acquire(&self.policy, now, cost, lease, then)
    }

    fn peek_now(&self, key: &str, cost: u32) -> Decision {
        let now = self.now();
        match self.existing_slot(key) {
            Some(slot) => slot.peek(&self.policy, now, cost),
            None => Slot::fresh(&self.policy).peek(&self.policy, now, cost),
        }
    }

    fn refund_now(&self, key: &str, cost: u32, receipt: Receipt, lease: Option<LeaseId>) {
        // A key that is gone (idle, evicted, reset) is fresh: nothing to give back.
        if let Some(slot) = self.existing_slot(key) {
            slot.refund(&self.policy, self.now(), cost, receipt, lease);
        }
    }

    fn release_now(&self, key: &str, lease: LeaseId) {
        if let Some(slot) = self.existing_slot(key) {
            slot.release(lease);
        }
    }

    fn renew_now(&self, key: &str, lease: LeaseId) -> bool {
        let now = self.now();
        let ttl = self.policy.concurrency.map_or(0, |c| c.lease_ttl);
        self.existing_slot(key)
            .is_some_and(|slot| slot.renew(lease, now, ttl))
    }

    fn reset_now(&self, key: Option<&str>) {
        match key {
            Some("") => self.state.limiter_wide.reset(&self.policy),
            Some(key) => {
                let _keys_in_place = self.shared.limiters.lock();
                if self.state.keys.remove(key).is_some() {
                    self.shared.keys.fetch_sub(1, Ordering::Relaxed);
                }
            }
            None => {
                self.state.limiter_wide.reset(&self.policy);
                let _keys_in_place = self.shared.limiters.lock();
                let before = self.state.keys.len();
                self.state.keys.clear();
                self.shared.keys.fetch_sub(before, Ordering::Relaxed);
            }
        }
    }
}

impl EngineLimiter for MemoryLimiter {
    #[inline]
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)> {
        StoreCall::ready(self.decide(key, cost, lease, |decision, receipt| (decision, receipt)))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        StoreCall::ready(self.peek_now(key, cost))
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()> {
        self.refund_now(key, cost, receipt, lease);
        StoreCall::ready(())
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()> {
        self.release_now(key, lease);
        StoreCall::ready(())
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool> {
        StoreCall::ready(self.renew_now(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()> {
        self.reset_now(key);
        StoreCall::ready(())
    }
}
