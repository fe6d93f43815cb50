//! One limiter on a PostgreSQL store: binds each function call's parameters and reads
//! the answer. One round trip per call; a group is one call too.

use std::sync::Arc;

use tokio_postgres::types::ToSql;

use super::connection::Statements;
use super::Shared;
use crate::algorithm::{GroupDecision, LeaseId, Receipt};
use crate::decision::Decision;
use crate::engine::encoding::release_message;
use crate::engine::micros::{self, MicrosPolicy, DECISION_LEN};
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

/// One call's members as the acquire function takes them: one array per parameter.
#[derive(Default)]
struct Members<'a> {
    limiters: Vec<&'a [u8]>,
    keys: Vec<&'a [u8]>,
    kinds: Vec<&'static str>,
    params: Vec<i64>,
    caps: Vec<i64>,
    costs: Vec<i64>,
    max: Vec<i64>,
    leases: Vec<Option<i64>>,
    ttls: Vec<i64>,
}

impl<'a> Members<'a> {
    fn push(
        &mut self,
        limiter: &'a PostgresLimiter,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) {
        let p = &limiter.policy;
        self.limiters.push(limiter.id.as_bytes());
        self.keys.push(key.as_bytes());
        self.kinds.push(p.kind.code());
        self.params.push(p.param as i64);
        self.caps.push(i64::from(p.capacity));
        self.costs.push(i64::from(cost));
        self.max.push(i64::from(p.max_concurrent));
        // Lease ids are random u64; bigint holds the same 64 bits.
        self.leases.push(lease.map(|id| id.0 as i64));
        self.ttls.push(p.lease_ttl_us as i64);
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

    /// Which client carries the calls of `key` (see `Pool::query_one`).
    fn route(&self, key: &str) -> u64 {
        let hash = |seed: u64, bytes: &[u8]| {
            bytes.iter().fold(seed, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
        };
        hash(
            hash(0xcbf2_9ce4_8422_2325, self.id.as_bytes()),
            key.as_bytes(),
        )
    }

    /// A release message for `key`, unless it is too long for NOTIFY.
    fn message(&self, origin: bool, key: &str) -> Option<String> {
        let origin = origin.then(|| self.shared.listener.origin());
        Some(release_message(origin, &self.id, key)).filter(|m| m.len() <= MAX_NOTIFY)
    }

    async fn decide_one(
        &self,
        key: &str,
        cost: u32,
        lease: Option<LeaseId>,
        consume: bool,
    ) -> Result<(Decision, Receipt), StoreError> {
        let mut members = Members::default();
        members.push(self, key, cost, lease);
        let answer = call_acquire(&self.shared, self.route(key), &members, consume).await?;
        match answer.as_slice() {
            [now, _, decision @ ..] => micros::decision(decision, self.policy.limit, *now),
            _ => Err(unexpected(&answer)),
        }
    }

    async fn refund_one(
        &self,
        key: &str,
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    ) -> Result<(), StoreError> {
        let p = &self.policy;
        let (param, cost) = (p.param as i64, i64::from(cost));
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
            .query_one(Some(self.route(key)), |s| &s.refund, &params)
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
            .query_one(Some(self.route(key)), |s| &s.renew, &params)
            .await?;
        Ok(row.try_get::<_, bool>(0).unwrap_or(false))
    }

    async fn release_lease(&self, key: &str, lease: LeaseId) -> Result<(), StoreError> {
        let lease = lease.0 as i64;
        let message = self.message(true, key);
        let pool = &self.shared.pool;
        pool.query_one(
            Some(self.route(key)),
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
        let route = key.map(|key| self.route(key));
        let row = pool
            .query_one(
                route,
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

/// Calls the acquire function with `members` (a peek when `consume` is false).
async fn call_acquire(
    shared: &Shared,
    route: u64,
    m: &Members<'_>,
    consume: bool,
) -> Result<Vec<i64>, StoreError> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![
        &m.limiters,
        &m.keys,
        &m.kinds,
        &m.params,
        &m.caps,
        &m.costs,
        &m.max,
        &m.leases,
        &m.ttls,
        &consume,
    ];
    let now = shared.pool.names.clock.pinned_micros();
    if now.is_some() {
        params.push(&now);
    }
    let row = shared
        .pool
        .query_one(Some(route), |s| &s.acquire, &params)
        .await?;
    row.try_get(0)
        .map_err(|e| StoreError::Backend(format!("unexpected decision: {e}")))
}

/// Decides a group in one function call: one transaction, rows locked in key order.
pub(super) async fn acquire_group(
    shared: &Shared,
    limiters: Vec<&PostgresLimiter>,
    members: &[GroupMember<'_>],
) -> Result<GroupDecision, StoreError> {
    let mut call = Members::default();
    for (limiter, member) in limiters.iter().zip(members) {
        call.push(limiter, member.key, member.cost, member.lease);
    }
    // The first member's client: calls on one key keep queueing on one client.
    let route = limiters
        .first()
        .zip(members.first())
        .map_or(0, |(limiter, member)| limiter.route(member.key));
    let answer = call_acquire(shared, route, &call, true).await?;
    let [now, refused, decisions @ ..] = answer.as_slice() else {
        return Err(unexpected(&answer));
    };
    if decisions.len() != DECISION_LEN * members.len() {
        return Err(unexpected(&answer));
    }
    let decided = decisions
        .chunks(DECISION_LEN)
        .zip(&limiters)
        .map(|(values, limiter)| micros::decision(values, limiter.policy.limit, *now));
    if *refused == 0 {
        return decided
            .collect::<Result<_, _>>()
            .map(GroupDecision::Admitted);
    }
    let index = usize::try_from(*refused - 1).map_err(|_| unexpected(&answer))?;
    let mut peeks = decided
        .map(|decision| decision.map(|(d, _)| Some(d)))
        .collect::<Result<Vec<_>, _>>()?;
    let refusal = peeks
        .get_mut(index)
        .and_then(Option::take)
        .ok_or_else(|| unexpected(&answer))?;
    Ok(GroupDecision::Refused {
        index,
        refusal,
        peeks,
    })
}

fn unexpected(answer: &[i64]) -> StoreError {
    StoreError::Backend(format!("unexpected decision of {} values", answer.len()))
}

impl EngineLimiter for PostgresLimiter {
    fn acquire<'a>(
        &'a self,
        key: &'a str,
        cost: u32,
        lease: Option<LeaseId>,
    ) -> StoreCall<'a, (Decision, Receipt)> {
        StoreCall::pending(self.decide_one(key, cost, lease, true))
    }

    fn peek<'a>(&'a self, key: &'a str, cost: u32) -> StoreCall<'a, Decision> {
        StoreCall::pending(async move { Ok(self.decide_one(key, cost, None, false).await?.0) })
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
