//! One limiter on a NATS store: read the entry, decide with [`crate::algorithm`],
//! write it back by compare-and-set on its revision; on a conflict, read again.
//!
//! **Why a hot key does not collapse.** Plain optimistic CAS collapses under
//! contention: every caller reads, all but one lose the write, and the losers
//! multiply the load (bucket4j#404). Here the callers of one key in a process never
//! race each other: they queue on the key ([`super::batch`]), and one background
//! task per busy key takes the whole queue, decides every call in arrival order on
//! one state, and writes the result in one CAS. So only processes contend, never
//! tasks; under load the batches grow, and with them the decisions per write. The
//! task also keeps the (revision, state) it wrote: the next batch decides on it and
//! writes straight away, one round trip, no read, as long as the key is this
//! process's alone (every few batches a read checks who wrote last; a key other
//! processes write too is read before every batch, so that no process wins every
//! race by skipping the read and starves the others). A write that loses to another
//! process reads again and retries after a jittered pause that doubles with each
//! further loss, up to `max_retries` conflicts. Refusals write nothing, so a key at
//! its limit causes no conflicts at all. Conflicts per decision are counted
//! ([`super::CasSnapshot`], and the `ratesync_nats_cas_conflicts_total` counter).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::Operation;

use super::batch::{Call, Outcome, Turns};
use super::connection::Bound;
use super::keys::LimiterKeys;
use super::state::{self, FREED};
use super::Shared;
use crate::algorithm::{self, KeyState, LeaseId, Policy, Receipt};
use crate::decision::Decision;
use crate::store::{EngineLimiter, LimiterSpec, StoreCall, StoreError};

/// The longest pause between two attempts, in multiples of `retry_interval`.
const MAX_BACKOFF_FACTOR: u32 = 32;
/// Batches in a row that may decide on this process's own last write without a
/// read; then a read checks whether other processes write the key too.
const MAX_REUSE: u32 = 8;

/// An entry as read (or as this process last wrote it).
#[derive(Clone)]
pub(super) struct Snapshot {
    /// 0 when the entry does not exist.
    revision: u64,
    state: KeyState,
    /// Server time of the write that stored it (0 = unknown).
    stamp: u64,
    /// Batches decided on it without a read since the last read.
    reuse: u32,
    /// The last read found another process's write: the key is shared, so every
    /// batch reads first. (A process deciding on its own last write every time
    /// would win every race against one that must read, and starve it.)
    shared: bool,
}

/// The keys of one limiter in a NATS store.
pub struct NatsLimiter {
    core: Arc<LimiterCore>,
}

/// What the per-key batch tasks need, shared with them.
pub(super) struct LimiterCore {
    shared: Arc<Shared>,
    keys: LimiterKeys,
    policy: Policy,
    turns: Turns,
}

impl NatsLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Self {
        NatsLimiter {
            core: Arc::new(LimiterCore {
                shared,
                keys: LimiterKeys::new(&spec.id),
                policy: spec.policy,
                turns: Turns::default(),
            }),
        }
    }

    pub(super) fn keys(&self) -> &LimiterKeys {
        &self.core.keys
    }

    async fn call(&self, key: &str, call: Call) -> Result<Outcome, StoreError> {
        Turns::submit(&self.core, key, call).await
    }

    async fn acquire_inner(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> Result<(Decision, Receipt), StoreError> {
        match self.call(key, Call::Acquire { cost, lease }).await? {
            Outcome::Decision(decision, receipt) => Ok((decision, receipt)),
            Outcome::Done(_) => Err(StoreError::Backend("an acquire got no decision".into())),
        }
    }

    async fn refund_inner(
        &self,
        key: &str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> Result<(), StoreError> {
        let refund = Call::Refund {
            cost,
            receipt,
            lease,
        };
        self.call(key, refund).await.map(drop)
    }

    async fn peek_inner(&self, key: &str, cost: u32) -> Result<Decision, StoreError> {
        let core = &self.core;
        let bound = core.bound().await?;
        let snapshot = core.read(&bound, &core.keys.entry(key)).await?;
        let now = core.shared.connection.clock.now(snapshot.stamp);
        Ok(algorithm::peek(&core.policy, &snapshot.state, now, cost))
    }

    async fn release_inner(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        self.call(key, Call::Release(lease)).await.map(drop)
    }

    async fn renew_inner(&self, key: &str, lease: LeaseId) -> Result<bool, StoreError> {
        match self.call(key, Call::Renew(lease)).await? {
            Outcome::Done(renewed) => Ok(renewed),
            Outcome::Decision(..) => Err(StoreError::Backend("a renewal got a decision".into())),
        }
    }

    /// Purges the entry: a marker that every watcher sees (waiters wake) and that
    /// reads as a fresh key.
    async fn reset_key(&self, key: &str) -> Result<(), StoreError> {
        let core = &self.core;
        let bound = core.bound().await?;
        core.turns.forget(key);
        bound
            .kv
            .purge(core.keys.entry(key))
            .await
            .map_err(|e| core.store_error(&bound, e.to_string()))
    }

    /// Purges every entry of this limiter from the bucket's stream, in one request.
    async fn reset_all(&self) -> Result<(), StoreError> {
        let core = &self.core;
        let bound = core.bound().await?;
        core.turns.forget_all();
        let subject = format!("{}{}", bound.kv.prefix, core.keys.filter());
        bound
            .kv
            .stream
            .purge()
            .filter(subject)
            .await
            .map(drop)
            .map_err(|e| core.store_error(&bound, e.to_string()))
    }
}

impl LimiterCore {
    pub(super) fn turns(&self) -> &Turns {
        &self.turns
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
                state: KeyState::fresh(&self.policy),
                stamp: 0,
                reuse: 0,
                shared: false,
            },
            Some(entry) => Snapshot {
                revision: entry.revision,
                reuse: 0,
                shared: entry.operation == Operation::Put
                    && state::origin(&entry.value).is_some_and(|o| o != self.shared.origin()),
                state: match entry.operation {
                    Operation::Put => state::decode(&entry.value, &self.policy),
                    // A reset (purge) or delete marker: a fresh key.
                    Operation::Delete | Operation::Purge => KeyState::fresh(&self.policy),
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

    /// Decides `calls` (in order, on one state) and stores the result in one CAS,
    /// starting from `known` (what this process last wrote) when there is one.
    /// Returns one outcome per call, and the snapshot to keep for the next batch.
    pub(super) async fn run_batch(
        &self,
        key: &str,
        calls: &[Call],
        mut known: Option<Snapshot>,
    ) -> (Result<Vec<Outcome>, StoreError>, Option<Snapshot>) {
        let bound = match self.bound().await {
            Ok(bound) => bound,
            Err(error) => return (Err(error), None),
        };
        let name = self.keys.entry(key);
        let mut conflicts = 0u32;
        known = known.filter(|k| !k.shared && k.reuse < MAX_REUSE);
        loop {
            let from_cache = known.is_some();
            let snapshot = match known.take() {
                Some(snapshot) => snapshot,
                None => match self.read(&bound, &name).await {
                    Ok(snapshot) => snapshot,
                    Err(error) => return (Err(error), None),
                },
            };
            let now = self.shared.connection.clock.now(snapshot.stamp);
            let mut state = snapshot.state.clone();
            let (outcomes, flags) = self.decide_batch(calls, &mut state, now);
            let Some(flags) = flags else {
                // Nothing to store. A refusal must hold for the store's state, not
                // for what this process wrote last: check it against a fresh read.
                if from_cache {
                    continue;
                }
                self.shared.stats.record(calls.len());
                return (Ok(outcomes), Some(snapshot));
            };
            let value = state::encode(&state, flags, self.shared.origin(), key);
            match self.write(&bound, &name, snapshot.revision, value).await {
                Ok(Some(revision)) => {
                    self.shared.stats.record(calls.len());
                    let kept = Snapshot {
                        revision,
                        state,
                        stamp: now,
                        reuse: if from_cache { snapshot.reuse + 1 } else { 0 },
                        shared: snapshot.shared,
                    };
                    return (Ok(outcomes), Some(kept));
                }
                Ok(None) => {
                    conflicts += 1;
                    self.shared.stats.conflict();
                    if conflicts > self.shared.max_retries {
                        let error = StoreError::Backend(format!(
                            "gave up after {conflicts} conflicting writes to one key \
                             (max_retries = {})",
                            self.shared.max_retries
                        ));
                        return (Err(error), None);
                    }
                    // The first loss retries at once (with a fresh read); further
                    // losses mean several processes keep colliding: spread them.
                    if conflicts >= 2 {
                        tokio::time::sleep(self.backoff(conflicts - 1)).await;
                    }
                }
                Err(error) => return (Err(error), None),
            }
        }
    }

    /// Every call of a batch decided on `state` at `now`; the flags to write with
    /// when the state changed (`None`: nothing to store).
    fn decide_batch(
        &self,
        calls: &[Call],
        state: &mut KeyState,
        now: u64,
    ) -> (Vec<Outcome>, Option<u8>) {
        let mut write: Option<u8> = None;
        let mut outcomes = Vec::with_capacity(calls.len());
        for call in calls {
            let outcome = match *call {
                Call::Acquire { cost, lease } => {
                    let (decision, receipt) =
                        algorithm::decide(&self.policy, state, now, cost, lease);
                    if decision.allowed() {
                        write = Some(write.unwrap_or(0));
                    }
                    Outcome::Decision(decision, receipt)
                }
                Call::Refund {
                    cost,
                    receipt,
                    lease,
                } => {
                    // A lease given back frees its slot: announced like a release.
                    let freed = algorithm::refund(&self.policy, state, now, cost, receipt, lease);
                    write = Some(write.unwrap_or(0) | if freed { FREED } else { 0 });
                    Outcome::Done(freed)
                }
                Call::Release(lease) => {
                    let released = state.leases.release(lease);
                    if released {
                        write = Some(write.unwrap_or(0) | FREED);
                    }
                    Outcome::Done(released)
                }
                Call::Renew(lease) => {
                    let renewed = self
                        .policy
                        .concurrency
                        .is_some_and(|cc| state.leases.renew(lease, now, cc.lease_ttl));
                    if renewed {
                        write = Some(write.unwrap_or(0));
                    }
                    Outcome::Done(renewed)
                }
            };
            outcomes.push(outcome);
        }
        (outcomes, write)
    }

    /// Full jitter: uniform in `[0, retry_interval · 2^(n-1)]`, capped.
    fn backoff(&self, losses: u32) -> Duration {
        let factor = (1u32 << losses.saturating_sub(1).min(5)).min(MAX_BACKOFF_FACTOR);
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

impl EngineLimiter for NatsLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)> {
        StoreCall::pending(self.acquire_inner(key, cost, lease))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        StoreCall::pending(self.peek_inner(key, cost))
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()> {
        StoreCall::pending(self.refund_inner(key, cost, receipt, lease))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()> {
        StoreCall::pending(self.release_inner(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool> {
        StoreCall::pending(self.renew_inner(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()> {
        StoreCall::pending(async move {
            match key {
                Some(key) => self.reset_key(key).await,
                None => self.reset_all().await,
            }
        })
    }
}
