//! All-or-nothing groups on a store without multi-key atomicity: reserve each
//! member in order, refund what was taken when one refuses
//! (`docs/design.md#groups`).
//!
//! The refunds make a refused group consume nothing, but between a member's
//! reservation and its refund other processes see it taken: for that window (one
//! round trip per member) a call elsewhere may be refused because of a group that
//! is itself refused. A refund that fails (the store went away meanwhile) is logged;
//! its units come back when they would have anyway (the bucket refills, the window
//! passes).

use futures::future::join_all;

use super::contract::GroupMember;
use super::StoreError;
use crate::algorithm::{GroupDecision, Receipt};
use crate::decision::Decision;

/// Reserves `members` one after the other; refunds the reserved ones when a member
/// refuses or the store fails.
pub(crate) async fn reserve_in_order(
    members: &[GroupMember<'_>],
) -> Result<GroupDecision, StoreError> {
    let mut taken: Vec<(Decision, Receipt)> = Vec::with_capacity(members.len());
    for (index, member) in members.iter().enumerate() {
        let answer = member
            .limiter
            .acquire(member.key, member.cost, member.lease)
            .await;
        match answer {
            Ok((decision, receipt)) if decision.allowed() => taken.push((decision, receipt)),
            Ok((refusal, _)) => {
                refund(&members[..index], &taken).await;
                let peeks = join_all(members.iter().enumerate().map(|(i, m)| async move {
                    match i == index {
                        true => None,
                        false => m.limiter.peek(m.key, m.cost).await.ok(),
                    }
                }))
                .await;
                return Ok(GroupDecision::Refused {
                    index,
                    refusal,
                    peeks,
                });
            }
            Err(error) => {
                refund(&members[..index], &taken).await;
                return Err(error);
            }
        }
    }
    Ok(GroupDecision::Admitted(taken))
}

/// Gives back what `members` took (their receipts in `taken`), newest first.
async fn refund(members: &[GroupMember<'_>], taken: &[(Decision, Receipt)]) {
    for (member, (_, receipt)) in members.iter().zip(taken).rev() {
        let refunded = member
            .limiter
            .refund(member.key, member.cost, *receipt, member.lease)
            .await;
        if let Err(error) = refunded {
            tracing::warn!(%error, "could not refund a refused group's reservation; its units return when they refill");
        }
    }
}
