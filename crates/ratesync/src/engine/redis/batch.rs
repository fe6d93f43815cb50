//! Acquires that queue while one is in flight reach the server together, as one call
//! of `acquire.lua` deciding each of them in order (`docs/design.md#redis`).
//!
//! Calls are queued per hash slot (one queue for a single server or a Sentinel
//! master): one script call touches one slot, so a Cluster can run it. A call that
//! finds its queue idle is sent at once, alone, by its own caller: at low load
//! nothing waits and no task is started. Calls that arrive while a call of their
//! queue is in flight wait for it; then a task sends them all in one script call
//! and goes on while calls keep coming. So the server reads `TIME`, enters the
//! script and answers once per batch instead of once per call, and the client sends
//! and parses one command per batch.
//!
//! A waiting call whose caller has gone (cancelled, timed out) is dropped before its
//! batch is sent: it consumes nothing. A call already sent is decided, as a single
//! call in flight would be. A call's answer is the script's answer for that call
//! alone; a failed batch fails each of its calls with the same error.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use redis::cluster_routing::Slot;
use tokio::sync::oneshot;

use super::keys::KeyTag;
use super::limiter::Encoding;
use super::Shared;
use crate::algorithm::LeaseId;
use crate::engine::micros::DECISION_LEN;
use crate::store::StoreError;

/// Most calls in one script call: the script runs atomically, blocking the server
/// for its length (a few microseconds per call).
const MAX_CALLS: usize = 256;

/// Script calls of one queue in flight at once: while the server decides one batch,
/// the client reads the answers of the previous one and gathers the next.
const MAX_IN_FLIGHT: usize = 4;

/// One member of a call: which limiter's settings, which key, what it takes.
pub(super) struct Member {
    pub encoding: Arc<Encoding>,
    pub tag: KeyTag,
    pub cost: u32,
    pub lease: Option<LeaseId>,
}

/// One call of `acquire.lua`: members admitted all together or not at all (a single
/// acquire is a call of one member).
pub(super) type Call = Vec<Member>;

/// The script's answer for one call.
pub(super) struct Answer {
    /// The server time of the decision (µs).
    pub now: i64,
    /// 0 when admitted, else the 1-based index of the member that refused.
    pub refused: i64,
    /// `DECISION_LEN` integers per member.
    pub decisions: Vec<i64>,
}

type Reply = oneshot::Sender<Result<Answer, StoreError>>;

#[derive(Default)]
struct Queue {
    /// Senders at work: a caller sending its own call, or a task sending batches.
    senders: usize,
    waiting: Vec<(Call, Reply)>,
}

/// The queues of one store.
#[derive(Default)]
pub(super) struct Batches {
    queues: Mutex<HashMap<Option<Slot>, Queue>>,
}

/// Decides `call`: sent at once when its queue is idle, else with the calls that
/// queue with it once the call in flight has its answer.
pub(super) async fn acquire(shared: &Arc<Shared>, call: Call) -> Result<Answer, StoreError> {
    let queue = match shared.connection.is_cluster() {
        true => Some(Slot::for_key(call[0].tag.hash_tag())),
        false => None,
    };
    let waiting = {
        let mut queues = shared.batches.queues.lock();
        let entry = queues.entry(queue).or_default();
        if entry.senders < MAX_IN_FLIGHT {
            entry.senders += 1;
            Ok(call)
        } else {
            let (reply, answer) = oneshot::channel();
            entry.waiting.push((call, reply));
            Err(answer)
        }
    };
    match waiting {
        Ok(call) => {
            // Whatever happens to this caller (answered, cancelled), the calls that
            // queued meanwhile are handed on when it lets go.
            let _turn = Turn {
                shared,
                queue: &queue,
            };
            let mut answers = send(shared, &[&call]).await?;
            answers.pop().ok_or_else(|| unexpected(0))
        }
        Err(answer) => answer.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "the batch of this call was abandoned".to_owned(),
            ))
        }),
    }
}

/// The turn of a caller sending its own call: when it ends (answered or cancelled),
/// a task takes over the calls that queued meanwhile, or the sender leaves.
struct Turn<'a> {
    shared: &'a Arc<Shared>,
    queue: &'a Option<Slot>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if !leave_unless_waiting(self.shared, self.queue) {
            let (shared, queue) = (self.shared.clone(), *self.queue);
            crate::background::handle().spawn(run_batches(shared, queue));
        }
    }
}

/// A sender with nothing left to send leaves `queue`; false (and it stays) when calls
/// are waiting. A queue without senders is dropped: only queues in use take memory.
fn leave_unless_waiting(shared: &Shared, queue: &Option<Slot>) -> bool {
    let mut queues = shared.batches.queues.lock();
    let Some(entry) = queues.get_mut(queue) else {
        return true;
    };
    if !entry.waiting.is_empty() {
        return false;
    }
    entry.senders -= 1;
    if entry.senders == 0 {
        queues.remove(queue);
    }
    true
}

/// The next batch of `queue`; when no call is waiting, the sender leaves instead.
fn take_or_leave(shared: &Shared, queue: &Option<Slot>) -> Option<Vec<(Call, Reply)>> {
    let mut queues = shared.batches.queues.lock();
    let entry = queues.get_mut(queue)?;
    if entry.waiting.is_empty() {
        entry.senders -= 1;
        if entry.senders == 0 {
            queues.remove(queue);
        }
        return None;
    }
    let take = entry.waiting.len().min(MAX_CALLS);
    Some(entry.waiting.drain(..take).collect())
}

/// Sends the calls waiting on `queue`, batch after batch, until none are left.
async fn run_batches(shared: Arc<Shared>, queue: Option<Slot>) {
    loop {
        let Some(batch) = take_or_leave(&shared, &queue) else {
            return;
        };
        // Callers that have gone consume nothing.
        let batch: Vec<(Call, Reply)> = batch
            .into_iter()
            .filter(|(_, reply)| !reply.is_closed())
            .collect();
        if batch.is_empty() {
            continue;
        }
        let calls: Vec<&Call> = batch.iter().map(|(call, _)| call).collect();
        match send(&shared, &calls).await {
            Ok(answers) => {
                for ((_, reply), answer) in batch.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(error) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// One script call deciding `calls` in order; their answers in the same order.
async fn send(shared: &Shared, calls: &[&Call]) -> Result<Vec<Answer>, StoreError> {
    let members: usize = calls.iter().map(|call| call.len()).sum();
    let answer: Vec<i64> = shared
        .scripts
        .acquire
        .run(&shared.connection, Encoding::KEYS * members, |cmd| {
            for member in calls.iter().flat_map(|call| call.iter()) {
                member.encoding.member_keys(cmd, &member.tag);
            }
            cmd.arg(calls.len());
            for call in calls {
                cmd.arg(call.len());
                for member in call.iter() {
                    member.encoding.member_args(cmd, member.cost, member.lease);
                }
            }
        })
        .await?;
    // {now, then per call: refused, DECISION_LEN integers per member}
    let (&now, mut rest) = answer.split_first().ok_or_else(|| unexpected(0))?;
    let mut answers = Vec::with_capacity(calls.len());
    for call in calls {
        let len = 1 + DECISION_LEN * call.len();
        if rest.len() < len {
            return Err(unexpected(answer.len()));
        }
        let (this, next) = rest.split_at(len);
        answers.push(Answer {
            now,
            refused: this[0],
            decisions: this[1..].to_vec(),
        });
        rest = next;
    }
    if !rest.is_empty() {
        return Err(unexpected(answer.len()));
    }
    Ok(answers)
}

fn unexpected(values: usize) -> StoreError {
    StoreError::Backend(format!("unexpected script answer of {values} values"))
}
