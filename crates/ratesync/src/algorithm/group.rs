//! All-or-nothing groups: several (limiter, key) decided as one
//! (`docs/design.md#groups`).
//!
//! The reference for every engine: each member is decided on a copy of its state, in
//! member order; only when every copy admits are the copies written back. So a
//! refused group changes no state at all, whichever member refused, and an admitted
//! one is exactly the members' admissions made one after the other at one instant.
//! The Lua and SQL ports check every member before writing any.

use super::{decide, peek, KeyState, LeaseId, Policy, Receipt};
use crate::decision::Decision;

/// One member of a group: the state of its (limiter, key), locked by the caller for
/// the whole decision. Members are distinct (limiter, key) pairs.
pub struct Member<'a> {
    /// The policy of the member's limiter.
    pub policy: &'a Policy,
    /// The state of the member's key, written only when the whole group is admitted.
    pub state: &'a mut KeyState,
    /// Units the member takes; checked by the caller ([`super::check_cost`]).
    pub cost: u32,
    /// The lease id to hold a concurrency slot under, as in [`decide`].
    pub lease: Option<LeaseId>,
}

/// What a group got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupDecision {
    /// Every member was admitted: its decision and receipt, in member order.
    Admitted(Vec<(Decision, Receipt)>),
    /// Nothing was consumed. `index` is the first member (in order) that refused,
    /// `refusal` its decision; `peeks` has, for every other member, a peek (`None`
    /// at `index`, and where a store that reserves member by member could not say).
    Refused {
        /// The first member that refused.
        index: usize,
        /// Its decision.
        refusal: Decision,
        /// A peek for every member, `None` at `index`.
        peeks: Vec<Option<Decision>>,
    },
}

/// Decides `members` at `now`, all or nothing.
pub fn decide_all(members: &mut [Member<'_>], now: u64) -> GroupDecision {
    let mut copies = Vec::with_capacity(members.len());
    let mut admitted = Vec::with_capacity(members.len());
    for (index, member) in members.iter().enumerate() {
        let mut copy = member.state.clone();
        let (decision, receipt) = decide(member.policy, &mut copy, now, member.cost, member.lease);
        if !decision.allowed() {
            let peeks = members
                .iter()
                .enumerate()
                .map(|(i, m)| (i != index).then(|| peek(m.policy, m.state, now, m.cost)))
                .collect();
            return GroupDecision::Refused {
                index,
                refusal: decision,
                peeks,
            };
        }
        copies.push(copy);
        admitted.push((decision, receipt));
    }
    for (member, copy) in members.iter_mut().zip(copies) {
        *member.state = copy;
    }
    GroupDecision::Admitted(admitted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algorithm::{Rule, SlidingWindow, TokenBucket};

    const SEC: u64 = 1_000_000_000;

    fn policy(rule: Rule) -> Policy {
        Policy {
            rule: Some(rule),
            concurrency: None,
        }
    }

    #[test]
    fn a_refusal_by_any_member_consumes_from_none() {
        let wide = policy(Rule::SlidingWindow(SlidingWindow::new(300, 600.0).unwrap()));
        let tight = policy(Rule::TokenBucket(TokenBucket::new(1.0, 1).unwrap()));
        let (mut a, mut b) = (KeyState::fresh(&wide), KeyState::fresh(&tight));
        let group = |a: &mut KeyState, b: &mut KeyState| {
            decide_all(
                &mut [
                    Member {
                        policy: &wide,
                        state: a,
                        cost: 1,
                        lease: None,
                    },
                    Member {
                        policy: &tight,
                        state: b,
                        cost: 1,
                        lease: None,
                    },
                ],
                SEC,
            )
        };
        assert!(matches!(group(&mut a, &mut b), GroupDecision::Admitted(ref d) if d.len() == 2));
        let before = (a.clone(), b.clone());
        match group(&mut a, &mut b) {
            GroupDecision::Refused {
                index,
                refusal,
                peeks,
            } => {
                assert_eq!(index, 1);
                assert!(!refusal.allowed());
                let [Some(first), None] = peeks[..] else {
                    panic!("the other member's peek: {peeks:?}");
                };
                assert!(first.allowed(), "the first member's peek");
                assert_eq!(first.remaining, 299);
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!((a, b), before);
    }
}
