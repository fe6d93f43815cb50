//! Several calls admitted together or not at all (`docs/design.md#groups`): the HTTP
//! layer's route limits, Python's `check_multi_limiters` and composite limiters all
//! go through here.
//!
//! The calls of one store are one group, decided by the store in one step (memory:
//! ordered locks; Redis: one script; PostgreSQL: one transaction; NATS: reserve and
//! refund). Calls on several stores are decided store by store, in order of first
//! appearance; when a later store refuses, what the earlier stores admitted is
//! refunded. A refused group consumes nothing from any limiter.

use std::sync::Arc;
use std::time::Duration;

use super::wait::{until_admitted, Refused};
use super::{Call, LimiterInner, Permit};
use crate::algorithm::{GroupDecision, LeaseId, Receipt};
use crate::decision::Decision;
use crate::error::{AcquireAllError, AcquireError};
use crate::store::{GroupMember, StoreError, StoreRuntime};

/// One attempt at every call; admitted only if every call admits. Never waits.
///
/// The permits come back in call order. Calls on the same limiter and key are decided
/// as one, their costs added; they may not both take a concurrency slot.
///
/// The one race left: where a group cannot be decided in one step (calls on several
/// stores, a NATS store, a Redis Cluster group whose keys span slots), what an earlier
/// part admitted is visible to other clients until the refusal of a later part
/// refunds it, one store round trip later. Within that window another client can be
/// refused for units that come back (`docs/design.md#groups`).
pub async fn try_acquire_all(calls: &[Call<'_>]) -> Result<Vec<Permit>, AcquireAllError> {
    if let [call] = calls {
        // One call is a group of one: no bookkeeping needed.
        return call
            .try_acquire()
            .await
            .map(|permit| vec![permit])
            .map_err(|error| AcquireAllError {
                index: 0,
                decisions: vec![error.decision().copied()],
                error,
            });
    }
    let members = members(calls)?;
    let mut decided: Vec<Option<Decision>> = vec![None; members.len()];
    let mut taken: Vec<(usize, Receipt)> = Vec::new();
    for store in stores(&members) {
        let mut part: Vec<usize> = (0..members.len())
            .filter(|&i| Arc::ptr_eq(&members[i].limiter.store, store))
            .collect();
        let failure = loop {
            let group: Vec<GroupMember<'_>> = part.iter().map(|&i| members[i].as_group()).collect();
            match store.ask(store.engine.acquire_all(&group)).await {
                Ok(GroupDecision::Admitted(admitted)) => {
                    for (&i, (decision, receipt)) in part.iter().zip(admitted) {
                        decided[i] = Some(decision);
                        taken.push((i, receipt));
                    }
                    break None;
                }
                Ok(GroupDecision::Refused { index, refusal, .. })
                    if members[part[index]].limiter.config.shadow =>
                {
                    // A limiter in shadow mode refuses nothing: the member is admitted
                    // without consuming, and the others decided again without it
                    // (the refused group took nothing).
                    decided[part.remove(index)] = Some(refusal.shadowed());
                    if part.is_empty() {
                        break None;
                    }
                }
                Ok(GroupDecision::Refused {
                    index,
                    refusal,
                    peeks,
                }) => {
                    for (&i, peek) in part.iter().zip(peeks) {
                        decided[i] = peek;
                    }
                    decided[part[index]] = Some(refusal);
                    break Some((part[index], members[part[index]].limiter.denied(refusal)));
                }
                Err(error) => match fail_closed(&members, &part, error) {
                    Some(failure) => break Some(failure),
                    None => {
                        // Every member fails open: admitted without a decision.
                        for &i in &part {
                            decided[i] =
                                Some(Decision::fail_open(members[i].limiter.policy.limit()));
                        }
                        break None;
                    }
                },
            }
        };
        let Some((member, error)) = failure else {
            continue;
        };
        refund(&members, &taken).await;
        return Err(AcquireAllError {
            index: members[member].calls[0],
            error,
            decisions: per_call(calls.len(), &members, &decided),
        });
    }
    let mut permits: Vec<Option<Permit>> = (0..calls.len()).map(|_| None).collect();
    for (member, decision) in members.iter().zip(decided) {
        // Every member was decided (admitted, or fail-open) to get here.
        let Some(decision) = decision else { continue };
        for (n, &call) in member.calls.iter().enumerate() {
            // The slot, if any, goes with the first call of the member.
            let permit = match n {
                _ if decision.shadow_denied_by().is_some() => {
                    member.limiter.shadow_admitted(decision)
                }
                0 => member.limiter.admitted(member.key, member.lease, decision),
                _ => member.limiter.admitted(member.key, None, decision),
            };
            permits[call] = Some(permit);
        }
    }
    Ok(permits.into_iter().flatten().collect())
}

/// Attempts every call together until all are admitted or `timeout` has passed
/// (`None`: wait as long as it takes). Waits as one call does: exactly the refusing
/// limiter's retry-after, or for a release of the slot that was missing.
pub async fn acquire_all(
    calls: &[Call<'_>],
    timeout: Option<Duration>,
) -> Result<Vec<Permit>, AcquireAllError> {
    let members: Vec<(&Arc<LimiterInner>, &str)> =
        calls.iter().map(|call| (call.inner, call.key)).collect();
    until_admitted(
        &members,
        timeout,
        false,
        || try_acquire_all(calls),
        |failure| match &failure.error {
            AcquireError::Denied { decision, .. } => Some(Refused {
                index: failure.index,
                decision: *decision,
            }),
            _ => None,
        },
        |failure, waited| AcquireAllError {
            error: failure.error.after_waiting(waited),
            ..failure
        },
    )
    .await
}

/// One (limiter, key) of a group, with the calls that name it.
struct Member<'a> {
    limiter: &'a Arc<LimiterInner>,
    key: &'a str,
    cost: u32,
    lease: Option<LeaseId>,
    calls: Vec<usize>,
}

impl Member<'_> {
    fn as_group(&self) -> GroupMember<'_> {
        GroupMember {
            limiter: &*self.limiter.engine,
            key: self.key,
            cost: self.cost,
            lease: self.lease,
        }
    }
}

/// The distinct (limiter, key) pairs of `calls`, costs checked and added up.
fn members<'a>(calls: &[Call<'a>]) -> Result<Vec<Member<'a>>, AcquireAllError> {
    let mut members: Vec<Member<'a>> = Vec::with_capacity(calls.len());
    let refuse = |index: usize, error: AcquireError| AcquireAllError {
        index,
        error,
        decisions: vec![None; calls.len()],
    };
    for (index, call) in calls.iter().enumerate() {
        let limiter = call.inner;
        limiter
            .check_cost(call.cost)
            .map_err(|e| refuse(index, e))?;
        let same = members
            .iter_mut()
            .find(|m| Arc::ptr_eq(m.limiter, limiter) && m.key == call.key);
        match same {
            None => members.push(Member {
                limiter,
                key: call.key,
                cost: call.cost,
                lease: limiter.new_lease_id(),
                calls: vec![index],
            }),
            Some(member) if member.lease.is_some() => {
                return Err(refuse(
                    index,
                    AcquireError::SlotTwice {
                        limiter: limiter.name.clone(),
                    },
                ));
            }
            Some(member) => {
                member.cost = member.cost.saturating_add(call.cost);
                limiter
                    .check_cost(member.cost)
                    .map_err(|e| refuse(index, e))?;
                member.calls.push(index);
            }
        }
    }
    Ok(members)
}

/// The stores of `members`, in order of first appearance.
fn stores<'m>(members: &'m [Member<'_>]) -> Vec<&'m Arc<StoreRuntime>> {
    let mut stores: Vec<&Arc<StoreRuntime>> = Vec::new();
    for member in members {
        if !stores.iter().any(|s| Arc::ptr_eq(s, &member.limiter.store)) {
            stores.push(&member.limiter.store);
        }
    }
    stores
}

/// A store that could not decide `part`: the failure of its first `fail_closed`
/// member, or `None` when all of them fail open.
fn fail_closed(
    members: &[Member<'_>],
    part: &[usize],
    error: StoreError,
) -> Option<(usize, AcquireError)> {
    let mut failure = None;
    for &i in part {
        match members[i].limiter.on_store_error(error.clone()) {
            Err(closed) if failure.is_none() => failure = Some((i, closed)),
            _ => {}
        }
    }
    failure
}

/// Gives back what earlier stores admitted, through each store's runtime.
async fn refund(members: &[Member<'_>], taken: &[(usize, Receipt)]) {
    for &(i, receipt) in taken.iter().rev() {
        let member = &members[i];
        let limiter = member.limiter;
        let asked = limiter
            .engine
            .refund(member.key, member.cost, receipt, member.lease);
        if let Err(error) = limiter.store.ask(asked).await {
            limiter.metrics.store_errors.increment(1);
            tracing::warn!(limiter = %limiter.name, %error, "could not refund a refused group's admission; its units return when they refill");
        }
    }
}

/// The members' decisions, one per call.
fn per_call(
    calls: usize,
    members: &[Member<'_>],
    decided: &[Option<Decision>],
) -> Vec<Option<Decision>> {
    let mut out = vec![None; calls];
    for (member, decision) in members.iter().zip(decided) {
        for &call in &member.calls {
            out[call] = *decision;
        }
    }
    out
}
