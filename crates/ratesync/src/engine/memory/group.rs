//! A group decided in memory: every slot taken in one fixed order, then
//! [`algorithm::decide_all`] (`docs/design.md#groups`).
//!
//! The order is (limiter, key) — the limiter's address, then the key — the same for
//! every group, so two groups sharing slots can never each hold one the other waits
//! for. While the group runs it holds the store's key lock, so no sweep, eviction or
//! reset can remove a slot under it; the map's shard locks it holds are read locks,
//! which never wait for each other.

use std::sync::Arc;

use super::{MemoryLimiter, Shared, SlotRef};
use crate::algorithm::{self, GroupDecision, KeyState};
use crate::store::{GroupMember, StoreError};

pub(super) fn decide(
    shared: &Arc<Shared>,
    members: &[GroupMember<'_>],
) -> Result<GroupDecision, StoreError> {
    let limiters = members
        .iter()
        .map(|member| match member.limiter.downcast::<MemoryLimiter>() {
            Some(limiter) if Arc::ptr_eq(&limiter.shared, shared) => Ok(limiter),
            _ => Err(StoreError::ForeignLimiter),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut order: Vec<usize> = (0..members.len()).collect();
    let place = |i: &usize| {
        (
            limiters[*i] as *const MemoryLimiter as usize,
            members[*i].key,
        )
    };
    order.sort_by_key(place);
    if order
        .windows(2)
        .any(|pair| place(&pair[0]) == place(&pair[1]))
    {
        return Err(StoreError::Backend(
            "a group names the same limiter and key twice".to_owned(),
        ));
    }
    let now = shared.clock.now_nanos();
    let decision = {
        let _keys_in_place = shared.limiters.lock();
        for &i in &order {
            if !members[i].key.is_empty() {
                // No room is made here (that would remove keys): the store may pass
                // `max_keys` by a group's new keys until the next addition.
                drop(limiters[i].insert(members[i].key));
            }
        }
        let slots: Vec<SlotRef<'_>> = order
            .iter()
            .map(|&i| limiters[i].existing_slot(members[i].key))
            .collect::<Option<_>>()
            .ok_or_else(|| StoreError::Backend("a group's key vanished".to_owned()))?;
        let mut held: Vec<_> = slots.iter().map(|slot| slot.hold()).collect();
        // Back from lock order to member order.
        let mut states: Vec<Option<&mut KeyState>> = (0..members.len()).map(|_| None).collect();
        for (&i, slot) in order.iter().zip(held.iter_mut()) {
            states[i] = Some(slot.state());
        }
        let mut group: Vec<algorithm::Member<'_>> = members
            .iter()
            .zip(&limiters)
            .zip(states)
            .filter_map(|((member, limiter), state)| {
                Some(algorithm::Member {
                    policy: &limiter.policy,
                    state: state?,
                    cost: member.cost,
                    lease: member.lease,
                })
            })
            .collect();
        algorithm::decide_all(&mut group, now)
    };
    Ok(decision)
}
