//! One limiter on a NATS store: read the entry, decide with [`crate::algorithm`],
//! write it back by compare-and-set on its revision; on a conflict, read again.
//!
//! **Why this stays fast under contention.** Callers of one key in this process
//! take turns (an async lock per key in use), so CAS conflicts can only come from
//! other processes, never from this one's own tasks. After a successful write the
//! winner keeps the new (revision, state): the next caller of the key in this
//! process decides on it and writes straight away, one round trip per decision,
//! with no read. When another process wrote in between, that write conflicts, and
//! the loop reads and tries again after a short jittered pause, up to `max_retries`
//! times. Refusals write nothing, so a key at its limit costs one read per call and
//! causes no conflicts at all. Conflicts per decision are counted
//! ([`super::CasStats`], and the `ratesync_nats_cas_conflicts_total` counter).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;
use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;

use super::connection::Bound;
use super::keys::LimiterKeys;
use super::state::{self, FREED};
use super::Shared;
use crate::algorithm::{self, KeyState, LeaseId, Policy};
use crate::decision::Decision;
use crate::engine::{EngineFuture, EngineLimiter, LimiterSpec, StoreError};

/// Idle keys whose last state this process keeps (per limiter), so that a key used
/// again soon decides without a read. In-use keys are always kept.
const KEEP_IDLE: usize = 1024;
/// The longest pause between two attempts, in multiples of `retry_interval`.
const MAX_BACKOFF_FACTOR: u32 = 32;

/// An entry as read (or as this process last wrote it).
#[derive(Clone)]
struct Snapshot {
    /// 0 when the entry does not exist.
    revision: u64,
    state: KeyState,
    /// Server time of the write that stored it (0 = unknown).
    stamp: u64,
}

/// What one step of a read-modify-write decided.
enum Step<T> {
    /// Nothing to store: return `T`.
    Keep(T),
    /// Store the new state (with these flags) and return `T`.
    Write(T, u8),
}

/// The keys of one limiter in a NATS store.
pub struct NatsLimiter {
    shared: Arc<Shared>,
    keys: LimiterKeys,
    policy: Policy,
    inflight: Inflight,
}

impl NatsLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Self {
        NatsLimiter {
            shared,
            keys: LimiterKeys::new(&spec.id),
            policy: spec.policy,
            inflight: Inflight::default(),
        }
    }

    pub(super) fn keys(&self) -> &LimiterKeys {
        &self.keys
    }

    async fn bound(&self) -> Result<Arc<Bound>, StoreError> {
        let connection = &self.shared.connection;
        let bound = connection.get().await?;
        if connection.clock.is_due() {
            let (clock, kv, timeout) = (
                connection.clock.clone(),
                bound.kv.clone(),
                connection.timeout,
            );
            crate::background::handle().spawn(async move {
                let _ = clock.calibrate(&kv, timeout).await;
            });
        }
        Ok(bound)
    }

    async fn read(&self, bound: &Bound, name: &str) -> Result<Snapshot, StoreError> {
        let entry = bound
            .kv
            .entry(name)
            .await
            .map_err(|e| self.store_error(bound, e.to_string()))?;
        Ok(match entry {
            None => Snapshot {
                revision: 0,
                state: KeyState::fresh(&self.policy.rule),
                stamp: 0,
            },
            Some(entry) => Snapshot {
                revision: entry.revision,
                state: match entry.operation {
                    Operation::Put => state::decode(&entry.value, &self.policy.rule),
                    // A reset (purge) or delete marker: a fresh key.
                    Operation::Delete | Operation::Purge => KeyState::fresh(&self.policy.rule),
                },
                stamp: super::stamp_nanos(&entry.created),
            },
        })
    }

    /// Stores `value` if the entry is still at `revision`: the new revision, or
    /// `None` on a conflict.
    async fn write(
        &self,
        bound: &Bound,
        name: &str,
        revision: u64,
        value: bytes::Bytes,
    ) -> Result<Option<u64>, StoreError> {
        match bound.kv.update(name, value, revision).await {
            Ok(revision) => Ok(Some(revision)),
            Err(error) if is_conflict(&error) => Ok(None),
            Err(error) => Err(self.store_error(bound, error.to_string())),
        }
    }

    /// One read-modify-write of `key`'s entry, retried on conflicts (see the module
    /// docs). `step` decides on the state as of `now`; it may run several times.
    async fn transact<T>(
        &self,
        key: &str,
        mut step: impl FnMut(&mut KeyState, u64) -> Step<T>,
    ) -> Result<T, StoreError> {
        let bound = self.bound().await?;
        let name = self.keys.entry(key);
        let mut slot = self.inflight.enter(key).await;
        let mut known = slot.take();
        let mut conflicts = 0u32;
        loop {
            let from_cache = known.is_some();
            let snapshot = match known.take() {
                Some(snapshot) => snapshot,
                None => self.read(&bound, &name).await?,
            };
            let now = self.shared.connection.clock.now(snapshot.stamp);
            let mut state = snapshot.state.clone();
            let (result, flags) = match step(&mut state, now) {
                // A refusal (or a no-op) must hold for the store's state, not for
                // what this process saw last: check it against a fresh read.
                Step::Keep(_) if from_cache => continue,
                Step::Keep(result) => {
                    slot.keep(snapshot);
                    self.shared.stats.record(conflicts);
                    return Ok(result);
                }
                Step::Write(result, flags) => (result, flags),
            };
            let value = state::encode(&state, flags, self.shared.origin);
            match self.write(&bound, &name, snapshot.revision, value).await? {
                Some(revision) => {
                    slot.keep(Snapshot {
                        revision,
                        state,
                        stamp: now,
                    });
                    self.shared.stats.record(conflicts);
                    return Ok(result);
                }
                None => {
                    conflicts += 1;
                    self.shared.stats.conflict();
                    if conflicts > self.shared.max_retries {
                        self.shared.stats.record(conflicts);
                        return Err(StoreError::Backend(format!(
                            "gave up after {conflicts} conflicting writes to one key \
                             (max_retries = {})",
                            self.shared.max_retries
                        )));
                    }
                    // A stale local copy says nothing about contention: retry at
                    // once. A fresh read that lost: another process wrote in between.
                    if !from_cache {
                        tokio::time::sleep(self.backoff(conflicts)).await;
                    }
                }
            }
        }
    }

    /// Full jitter: uniform in `[0, retry_interval · 2^(n-1)]`, capped.
    fn backoff(&self, conflicts: u32) -> Duration {
        let factor = (1u32 << conflicts.saturating_sub(1).min(5)).min(MAX_BACKOFF_FACTOR);
        self.shared
            .retry_interval
            .saturating_mul(factor)
            .mul_f64(fastrand::f64())
    }

    /// A client error as a [`StoreError`], secrets masked; forgets the bucket when
    /// the server says it is gone, so the next call binds (or creates) it again.
    fn store_error(&self, bound: &Bound, text: String) -> StoreError {
        let connection = &self.shared.connection;
        let text = connection.mask(text);
        let lower = text.to_ascii_lowercase();
        if lower.contains("no responders") || lower.contains("stream not found") {
            connection.discard(bound);
        }
        if lower.contains("timed out") || lower.contains("timeout") {
            StoreError::Timeout(connection.timeout)
        } else {
            StoreError::Connection(text)
        }
    }

    async fn acquire_inner(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> Result<Decision, StoreError> {
        let policy = self.policy;
        self.transact(key, |state, now| {
            let decision = algorithm::decide(&policy, state, now, cost, lease);
            if decision.allowed {
                Step::Write(decision, 0)
            } else {
                Step::Keep(decision)
            }
        })
        .await
    }

    async fn peek_inner(&self, key: &str, cost: u32) -> Result<Decision, StoreError> {
        let bound = self.bound().await?;
        let snapshot = self.read(&bound, &self.keys.entry(key)).await?;
        let now = self.shared.connection.clock.now(snapshot.stamp);
        Ok(algorithm::peek(&self.policy, &snapshot.state, now, cost))
    }

    async fn release_inner(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        self.transact(key, |state, _| {
            if state.leases.release(lease) {
                Step::Write((), FREED)
            } else {
                Step::Keep(())
            }
        })
        .await
    }

    async fn renew_inner(&self, key: &str, lease: LeaseId) -> Result<bool, StoreError> {
        let Some(cc) = self.policy.concurrency else {
            return Ok(false);
        };
        self.transact(key, |state, now| {
            if state.leases.renew(lease, now, cc.lease_ttl) {
                Step::Write(true, 0)
            } else {
                Step::Keep(false)
            }
        })
        .await
    }

    /// Purges the entry: a marker that every watcher sees (waiters wake) and that
    /// reads as a fresh key.
    async fn reset_key(&self, key: &str) -> Result<(), StoreError> {
        let bound = self.bound().await?;
        let mut slot = self.inflight.enter(key).await;
        slot.take();
        bound
            .kv
            .purge(self.keys.entry(key))
            .await
            .map_err(|e| self.store_error(&bound, e.to_string()))
    }

    /// Purges every entry of this limiter from the bucket's stream, in one request.
    async fn reset_all(&self) -> Result<(), StoreError> {
        let bound = self.bound().await?;
        self.inflight.forget_all();
        let subject = format!("{}{}", bound.kv.prefix, self.keys.filter());
        bound
            .kv
            .stream
            .purge()
            .filter(subject)
            .await
            .map(drop)
            .map_err(|e| self.store_error(&bound, e.to_string()))
    }
}

/// Whether a failed update lost a compare-and-set: JetStream's "wrong last
/// sequence", error 10071, or 10164 (the same refusal, reported by newer servers
/// for a constant expected sequence).
fn is_conflict(error: &async_nats::jetstream::kv::UpdateError) -> bool {
    use async_nats::jetstream::kv::UpdateErrorKind;
    if error.kind() == UpdateErrorKind::WrongLastRevision {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(js) = cause.downcast_ref::<async_nats::jetstream::Error>() {
            return matches!(js.error_code().0, 10071 | 10164);
        }
        source = cause.source();
    }
    let text = error.to_string();
    text.contains("wrong last sequence") || text.contains("10071") || text.contains("10164")
}

/// The keys of one limiter this process is deciding on, each with the last state
/// it saw: callers of one key take turns, and reuse that state (module docs).
#[derive(Default)]
struct Inflight {
    slots: Mutex<HashMap<Box<str>, Slot>>,
}

/// One key's turn-taking lock and the last state seen.
type Slot = Arc<tokio::sync::Mutex<Option<Snapshot>>>;

impl Inflight {
    async fn enter(&self, key: &str) -> SlotGuard<'_> {
        let slot = self.slots.lock().entry(key.into()).or_default().clone();
        let guard = slot.clone().lock_owned().await;
        SlotGuard {
            inflight: self,
            key: key.into(),
            slot,
            guard: Some(guard),
        }
    }

    fn forget_all(&self) {
        self.slots.lock().clear();
    }
}

struct SlotGuard<'a> {
    inflight: &'a Inflight,
    key: Box<str>,
    slot: Slot,
    guard: Option<OwnedMutexGuard<Option<Snapshot>>>,
}

impl SlotGuard<'_> {
    fn take(&mut self) -> Option<Snapshot> {
        self.guard.as_mut().and_then(|g| g.take())
    }

    fn keep(&mut self, snapshot: Snapshot) {
        if let Some(guard) = self.guard.as_mut() {
            **guard = Some(snapshot);
        }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut slots = self.inflight.slots.lock();
        // Ours and the map's: nobody else is using or waiting for this key.
        if Arc::strong_count(&self.slot) == 2
            && slots.len() > KEEP_IDLE
            && slots
                .get(&self.key)
                .is_some_and(|s| Arc::ptr_eq(s, &self.slot))
        {
            slots.remove(&self.key);
        }
    }
}

impl EngineLimiter for NatsLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> EngineFuture<'a, Decision> {
        Box::pin(self.acquire_inner(key, cost, lease))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> EngineFuture<'a, Decision> {
        Box::pin(self.peek_inner(key, cost))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, ()> {
        Box::pin(self.release_inner(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> EngineFuture<'a, bool> {
        Box::pin(self.renew_inner(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> EngineFuture<'a, ()> {
        Box::pin(async move {
            match key {
                Some(key) => self.reset_key(key).await,
                None => self.reset_all().await,
            }
        })
    }
}
