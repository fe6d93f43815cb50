//! Acquires as batches (`docs/design.md#batches`): calls of one hash slot (one queue
//! for a single server or a Sentinel master; one script call touches one slot, so a
//! Cluster can run it) that queue while others are in flight go to the server as one
//! call of `acquire.lua`, which decides each of them in order on one reading of
//! `TIME`.

use std::sync::Arc;

use futures::future::BoxFuture;
use redis::cluster_routing::Slot;

use super::keys::KeyTag;
use super::limiter::Encoding;
use super::scripts::answers;
use super::Shared;
use crate::algorithm::LeaseId;
use crate::engine::micros::CallAnswer;
use crate::store::batches::{self, Queues};
use crate::store::StoreError;

/// One member of a call: which limiter's settings, which key, what it takes.
pub(crate) struct Member {
    pub encoding: Arc<Encoding>,
    pub tag: KeyTag,
    pub cost: u32,
    pub lease: Option<LeaseId>,
}

/// One call of `acquire.lua`: members admitted all together or not at all (a single
/// acquire is a call of one member).
pub(crate) type Call = Vec<Member>;

/// The queues of one store.
pub(super) type Batches = Queues<Shared>;

/// Decides `call`, batched with the calls of its slot.
pub(super) async fn acquire(shared: &Arc<Shared>, call: Call) -> Result<CallAnswer, StoreError> {
    let queue = match shared.connection.is_cluster() {
        true => Some(Slot::for_key(call[0].tag.hash_tag())),
        false => None,
    };
    batches::submit(shared, queue, call).await
}

impl batches::Sender for Shared {
    /// Redis runs one script at a time: with 2 in flight it decides one batch while
    /// the client reads the other's answer and gathers the next. More make smaller
    /// batches, whose fixed cost (the call, `TIME`, the reply) then weighs more
    /// (64 tasks on one key, docs/benchmarks.md: 1 in flight 138k decisions/s, 2
    /// 210k, 4 155k; 35, 21 and 11 calls per batch).
    const MAX_IN_FLIGHT: usize = 2;
    type Queue = Option<Slot>;
    type Call = Call;
    type Answer = CallAnswer;

    fn send<'a>(
        &'a self,
        calls: &'a [&'a Call],
    ) -> BoxFuture<'a, Result<Vec<CallAnswer>, StoreError>> {
        Box::pin(send(self, calls))
    }

    fn queues(&self) -> &Batches {
        &self.batches
    }
}

/// One script call deciding `calls` in order; their answers in the same order. Each
/// limiter's settings go once, as a profile its members name by index, and calls in a
/// row that differ only in their keys go as one run, whose members' profile, cost and
/// lease are written once: a batch of like calls sends one argument per call, its key.
async fn send(shared: &Shared, calls: &[&Call]) -> Result<Vec<CallAnswer>, StoreError> {
    let mut profiles: Vec<&Arc<Encoding>> = Vec::new();
    // The length of each run, and the profile indices of its first call's members.
    let mut runs: Vec<usize> = Vec::new();
    let mut indices: Vec<usize> = Vec::new();
    let mut keys = 0;
    let mut run_head: Option<&Call> = None;
    for &call in calls {
        keys += call
            .iter()
            .map(|member| member.encoding.keys())
            .sum::<usize>();
        if let (Some(head), Some(run)) = (run_head, runs.last_mut()) {
            if same_shape(head, call) {
                *run += 1;
                continue;
            }
        }
        run_head = Some(call);
        runs.push(1);
        for member in call {
            let known = profiles
                .iter()
                .position(|p| Arc::ptr_eq(p, &member.encoding));
            indices.push(match known {
                Some(index) => index + 1,
                None => {
                    profiles.push(&member.encoding);
                    profiles.len()
                }
            });
        }
    }
    let answer: Vec<u8> = shared
        .scripts
        .acquire
        .run(&shared.connection, keys, |cmd| {
            for member in calls.iter().flat_map(|call| call.iter()) {
                member.encoding.member_keys(cmd, &member.tag);
            }
            cmd.arg(profiles.len());
            for profile in &profiles {
                profile.profile_args(cmd);
            }
            cmd.arg(runs.len());
            let mut index = indices.iter();
            let mut head = 0;
            for &run in &runs {
                let call = calls[head];
                head += run;
                cmd.arg(run).arg(call.len());
                for member in call.iter() {
                    cmd.arg(index.next().copied().unwrap_or_default());
                    Encoding::cost_and_lease(cmd, member.cost, member.lease);
                }
            }
        })
        .await?;
    answers(&answer, calls.iter().map(|call| call.len()))
}

/// Whether `call` can join the run `head` began: the same limiters in the same order,
/// the same costs, and no lease (a lease id is each call's own).
fn same_shape(head: &Call, call: &Call) -> bool {
    head.len() == call.len()
        && head.iter().zip(call).all(|(a, b)| {
            Arc::ptr_eq(&a.encoding, &b.encoding)
                && a.cost == b.cost
                && a.lease.is_none()
                && b.lease.is_none()
        })
}
