//! One limiter on a PostgreSQL store: binds each function call's parameters and reads
//! the answer. Acquires (single calls and groups) go through the store's batches
//! (`docs/design.md#batches`): calls that queue while others are in flight on their
//! client are decided by one call of the acquire function.

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio_postgres::types::ToSql;

use super::connection::Statements;
use super::Shared;
use crate::algorithm::{GroupDecision, LeaseId, Receipt};
use crate::decision::Decision;
use crate::engine::encoding::release_message;
use crate::engine::micros::{call_answers, single_answer, CallAnswer, MicrosPolicy};
use crate::store::batches::{self, Queues};
use crate::store::{EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError};

/// PostgreSQL's NOTIFY payload limit is 8000 bytes: a release message that does not
/// fit is not sent (waiters then find the slot by their bounded fallback poll).
const MAX_NOTIFY: usize = 7_999;

/// The rows of one limiter in a PostgreSQL store.
pub struct PostgresLimiter {
    shared: Arc<Shared>,
    id: Arc<str>,
    policy: MicrosPolicy,
}

/// One member of a call of the acquire function: a limiter's id and rule, a key,
/// what it takes. Owned, so that a call waiting for its batch owns what it sends.
pub(crate) struct Member {
    limiter: Arc<str>,
    policy: MicrosPolicy,
    key: Box<str>,
    cost: u32,
    lease: Option<LeaseId>,
}

/// One call: members admitted all together or not at all (a single acquire is a
/// call of one member).
pub(crate) struct Call {
    /// The client whose queue the call joined, where its batch is sent: the client
    /// of its first member's key when it was made (`Pool::client_of`).
    client: usize,
    members: Vec<Member>,
}

impl Call {
    fn new(shared: &Shared, members: Vec<Member>) -> Self {
        let client = members
            .first()
            .map_or(0, |m| shared.pool.client_of(route(&m.limiter, &m.key)));
        Call { client, members }
    }
}

/// The queues of one store: one per client, since a client runs its calls one after
/// the other.
pub(super) type Batches = Queues<Shared>;

/// The parameters of one call of the acquire function: the distinct rows in
/// (limiter, key) order, then one array per member parameter.
#[derive(Default)]
struct Params<'a> {
    limiters: Vec<&'a [u8]>,
    keys: Vec<&'a [u8]>,
    calls: Vec<i32>,
    rows: Vec<i32>,
    kinds: Vec<&'static str>,
    params: Vec<i64>,
    aligns: Vec<i64>,
    runs: Vec<i64>,
    caps: Vec<i64>,
    costs: Vec<i64>,
    max: Vec<i64>,
    leases: Vec<Option<i64>>,
    ttls: Vec<i64>,
}

impl<'a> Params<'a> {
    fn new(calls: &[&'a Call]) -> Self {
        let mut rows: Vec<(&'a [u8], &'a [u8])> = calls
            .iter()
            .flat_map(|call| call.members.iter())
            .map(|m| (m.limiter.as_bytes(), m.key.as_bytes()))
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let mut params = Params::default();
        for call in calls {
            params.calls.push(call.members.len() as i32);
            for m in &call.members {
                let row = rows
                    .binary_search(&(m.limiter.as_bytes(), m.key.as_bytes()))
                    .unwrap_or_default();
                let p = &m.policy;
                params.rows.push(row as i32 + 1);
                params.kinds.push(p.kind.code());
                params.params.push(p.param as i64);
                params.aligns.push(p.align_us);
                params.runs.push(i64::from(p.runs));
                params.caps.push(i64::from(p.capacity));
                params.costs.push(i64::from(m.cost));
                params.max.push(i64::from(p.max_concurrent));
                // Lease ids are random u64; bigint holds the same 64 bits.
                params.leases.push(m.lease.map(|id| id.0 as i64));
                params.ttls.push(p.lease_ttl_us as i64);
            }
        }
        (params.limiters, params.keys) = rows.into_iter().unzip();
        params
    }
}

impl PostgresLimiter {
    pub(super) fn new(shared: Arc<Shared>, spec: &LimiterSpec) -> Result<Self, StoreError> {
        Ok(PostgresLimiter {
            policy: MicrosPolicy::new(&spec.id, &spec.policy, "PostgreSQL")?,
            id: spec.id.clone(),
            shared,
        })
    }

    /// Whether this limiter belongs to the engine whose state is `shared`.
    pub(super) fn is_of(&self, shared: &Arc<Shared>) -> bool {
        Arc::ptr_eq(&self.shared, shared)
    }

    /// Which client carries the calls of `key` (see `Pool::client_of`).
    fn client(&self, key: &str) -> usize {
        self.shared.pool.client_of(route(&self.id, key))
    }

    /// One member of a call of the acquire function for `key`.
    fn member(&self, key: &str, cost: u32, lease: Option<LeaseId>) -> Member {
        Member {
            limiter: self.id.clone(),
            policy: self.policy,
            key: key.into(),
            cost,
            lease,
        }
    }

    /// A release message for `key`, unless it is too long for NOTIFY.
    fn message(&self, origin: bool, key: &str) -> Option<String> {
        let origin = origin.then(|| self.shared.listener.origin());
        Some(release_message(origin, &self.id, key)).filter(|m| m.len() <= MAX_NOTIFY)
    }

    async fn acquire_one(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> Result<(Decision, Receipt), StoreError> {
        let call = Call::new(&self.shared, vec![self.member(key, cost, lease)]);
        acquire(&self.shared, call).await?.single(self.policy.limit)
    }

    async fn peek_one(&self, key: &str, cost: u32) -> Result<Decision, StoreError> {
        let call = Call::new(&self.shared, vec![self.member(key, cost, None)]);
        let values = call_acquire(&self.shared, &[&call], false).await?;
        Ok(single_answer(call_answers(&values, [1])?)?
            .single(self.policy.limit)?
            .0)
    }

    async fn refund_one(
        &self,
        key: &str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> Result<(), StoreError> {
        let p = &self.policy;
        let (param, align, cost) = (p.param as i64, p.align_us, i64::from(cost));
        let lease = lease.map(|id| id.0 as i64);
        let (admitted, recorded) = (receipt.now as i64, receipt.recorded as i64);
        let message = self.message(true, key);
        let shared = &self.shared;
        let (id, key_bytes, kind) = (self.id.as_bytes(), key.as_bytes(), p.kind.code());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![
            &id,
            &key_bytes,
            &kind,
            &param,
            &align,
            &cost,
            &lease,
            &admitted,
            &recorded,
            &shared.pool.names.channel,
            &message,
        ];
        let now = shared.pool.names.clock.pinned_micros();
        if now.is_some() {
            params.push(&now);
        }
        shared
            .pool
            .query_one(Some(self.client(key)), |s| &s.refund, &params)
            .await
            .map(drop)
    }

    async fn renew_lease(&self, key: &str, lease: LeaseId) -> Result<bool, StoreError> {
        let lease = lease.0 as i64;
        let ttl = self.policy.lease_ttl_us as i64;
        let pool = &self.shared.pool;
        let (id, key_bytes) = (self.id.as_bytes(), key.as_bytes());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &key_bytes, &lease, &ttl];
        let now = pool.names.clock.pinned_micros();
        if now.is_some() {
            params.push(&now);
        }
        let row = pool
            .query_one(Some(self.client(key)), |s| &s.renew, &params)
            .await?;
        Ok(row.try_get::<_, bool>(0).unwrap_or(false))
    }

    async fn release_lease(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let lease = lease.0 as i64;
        let message = self.message(true, key);
        let pool = &self.shared.pool;
        pool.query_one(
            Some(self.client(key)),
            |s| &s.release,
            &[
                &self.id.as_bytes(),
                &key.as_bytes(),
                &lease,
                &pool.names.channel,
                &message,
            ],
        )
        .await
        .map(drop)
    }

    /// Deletes the rows of `key` (or of every key), then announces the keys whose
    /// leases went with them: waiters in every process (this one included) retry.
    async fn reset_keys(&self, key: Option<&str>) -> Result<(), StoreError> {
        let pool = &self.shared.pool;
        let client = key.map(|key| self.client(key));
        let row = pool
            .query_one(
                client,
                |s| &s.reset,
                &[&self.id.as_bytes(), &key.map(str::as_bytes)],
            )
            .await?;
        let freed: Vec<Vec<u8>> = row
            .try_get(0)
            .map_err(|e| StoreError::Backend(format!("unexpected reset answer: {e}")))?;
        let notifies = freed
            .iter()
            .filter_map(|key| std::str::from_utf8(key).ok())
            .filter_map(|key| self.message(false, key))
            .map(|message| async move {
                pool.query_one(
                    None,
                    |s: &Statements| &s.notify,
                    &[&pool.names.channel, &message],
                )
                .await
            });
        futures::future::try_join_all(notifies).await.map(drop)
    }
}

/// The hash of (`limiter`, `key`) that chooses their client (`Pool::client_of`).
fn route(limiter: &str, key: &str) -> u64 {
    let hash = |seed: u64, bytes: &[u8]| {
        bytes.iter().fold(seed, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    hash(
        hash(0xcbf2_9ce4_8422_2325, limiter.as_bytes()),
        key.as_bytes(),
    )
}

/// Decides `call`, batched with the calls of its client. The client is the first
/// member's: calls on one key keep queueing on one client. Counted in the store's
/// load until answered, which decides over how many clients keys spread.
async fn acquire(shared: &Arc<Shared>, call: Call) -> Result<CallAnswer, StoreError> {
    let _load = shared.pool.count_load();
    let queue = call.client;
    batches::submit(shared, queue, call).await
}

impl batches::Sender for Shared {
    /// A client's calls run one after the other on its server session: two in flight
    /// keep it busy while the client reads one answer (one alone left it idle for
    /// every round trip), and the calls behind them go together.
    const MAX_IN_FLIGHT: usize = 2;
    type Queue = usize;
    type Call = Call;
    type Answer = CallAnswer;

    fn send<'a>(
        &'a self,
        calls: &'a [&'a Call],
    ) -> BoxFuture<'a, Result<Vec<CallAnswer>, StoreError>> {
        Box::pin(async move {
            let values = call_acquire(self, calls, true).await?;
            call_answers(&values, calls.iter().map(|call| call.members.len()))
        })
    }

    fn queues(&self) -> &Batches {
        &self.batches
    }
}

/// Calls the acquire function once for `calls` (a peek when `consume` is false), on
/// the first call's client; its answer as the integers the engines' Lua and SQL
/// answer with (`micros`).
async fn call_acquire(
    shared: &Shared,
    calls: &[&Call],
    consume: bool,
) -> Result<Vec<i64>, StoreError> {
    let p = Params::new(calls);
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &p.limiters,
        &p.keys,
        &p.calls,
        &p.rows,
        &p.kinds,
        &p.params,
        &p.aligns,
        &p.runs,
        &p.caps,
        &p.costs,
        &p.max,
        &p.leases,
        &p.ttls,
        &consume,
    ];
    let now = shared.pool.names.clock.pinned_micros();
    if now.is_some() {
        params.push(&now);
    }
    let row = shared
        .pool
        .query_one(calls.first().map(|c| c.client), |s| &s.acquire, &params)
        .await?;
    row.try_get(0)
        .map_err(|e| StoreError::Backend(format!("unexpected decision: {e}")))
}

/// Decides a group in one function call: one transaction, rows locked in key order.
pub(super) async fn acquire_group(
    shared: &Arc<Shared>,
    limiters: Vec<&PostgresLimiter>,
    members: &[GroupMember<'_>],
) -> Result<GroupDecision, StoreError> {
    let members = limiters
        .iter()
        .zip(members)
        .map(|(limiter, m)| limiter.member(m.key, m.cost, m.lease))
        .collect();
    let call = Call::new(shared, members);
    let limits: Vec<u64> = limiters.iter().map(|l| l.policy.limit).collect();
    acquire(shared, call).await?.group(&limits)
}

/// Test hook (`tests/postgres_sql.rs`): the queues send a batch only under load, so
/// the differential tests choose what goes together here instead.
#[cfg(feature = "testing")]
impl super::PostgresEngine {
    /// Decides `calls` in one call of the acquire function, in order, as a batch
    /// of calls that queued together is decided. Each call is its members (at least
    /// one; distinct (limiter, key) on limiters of this engine); a single acquire is
    /// a call of one member. Each call's answer is a group's.
    #[doc(hidden)]
    pub async fn acquire_batch(
        &self,
        calls: &[Vec<GroupMember<'_>>],
    ) -> Result<Vec<GroupDecision>, StoreError> {
        let mut batch: Vec<Call> = Vec::with_capacity(calls.len());
        let mut limits: Vec<Vec<u64>> = Vec::with_capacity(calls.len());
        for members in calls {
            let limiters = members
                .iter()
                .map(|m| m.limiter.downcast::<PostgresLimiter>())
                .collect::<Option<Vec<_>>>()
                .filter(|limiters| limiters.iter().all(|l| l.is_of(&self.shared)))
                .ok_or(StoreError::ForeignLimiter)?;
            let call = limiters.iter().zip(members);
            let members = call
                .map(|(l, m)| l.member(m.key, m.cost, m.lease))
                .collect();
            batch.push(Call::new(&self.shared, members));
            limits.push(limiters.iter().map(|l| l.policy.limit).collect());
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let batch: Vec<&Call> = batch.iter().collect();
        let answers = batches::Sender::send(self.shared.as_ref(), &batch).await?;
        answers
            .iter()
            .zip(&limits)
            .map(|(answer, limits)| answer.group(limits))
            .collect()
    }
}

impl EngineLimiter for PostgresLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)> {
        StoreCall::pending(self.acquire_one(key, cost, lease))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        StoreCall::pending(self.peek_one(key, cost))
    }

    fn refund<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, ()> {
        StoreCall::pending(self.refund_one(key, cost, receipt, lease))
    }

    fn release<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, ()> {
        StoreCall::pending(self.release_lease(key, lease))
    }

    fn renew<'a>(&'a self, key: &'a str, lease: LeaseId) -> StoreCall<'a, bool> {
        StoreCall::pending(self.renew_lease(key, lease))
    }

    fn reset<'a>(&'a self, key: Option<&'a str>) -> StoreCall<'a, ()> {
        StoreCall::pending(self.reset_keys(key))
    }
}
