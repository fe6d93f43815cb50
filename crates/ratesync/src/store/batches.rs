//! Calls that queue while others are in flight reach the store together, as one
//! store operation deciding each of them in order (`docs/design.md#batches`).
//!
//! An engine sorts its calls into queues (Redis: per hash slot; PostgreSQL: per
//! client) and says how to send several calls in one operation ([`Sender`]). A call
//! that finds fewer than [`Sender::MAX_IN_FLIGHT`] senders at work on its queue is
//! sent at once, alone, by its own caller: at low load nothing waits and no task is started.
//! Calls that arrive while that many are in flight wait; when a sender's call is
//! answered (or its caller gives up), a task takes everything waiting and sends it
//! as one operation, and goes on while calls keep coming. So under load the store
//! pays its per-operation costs (a round trip, a script or function entered, a
//! transaction, a lock taken) once per batch instead of once per call.
//!
//! A waiting call whose caller has gone (cancelled, timed out) is dropped before its
//! batch is sent: it consumes nothing. A call already sent is decided, as any call in
//! flight would be. A failed batch fails each of its calls with the same error.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::StoreError;

/// Most calls in one operation: the store decides them in one atomic step, holding
/// up others for its length.
pub(crate) const MAX_CALLS: usize = 256;

/// How an engine sends calls.
pub(crate) trait Sender: Send + Sync + 'static {
    /// Operations of one queue in flight at once. More overlap the store's work on
    /// one with the client's reading of another's answer and gathering of the next;
    /// fewer make bigger batches.
    const MAX_IN_FLIGHT: usize;

    /// Which calls may share an operation.
    type Queue: Copy + Eq + Hash + Send + Sync + 'static;
    /// One call, owned: a waiting call outlives its caller's borrow.
    type Call: Send + Sync + 'static;
    /// The store's answer for one call.
    type Answer: Send + 'static;

    /// Decides `calls` in one operation, in order; their answers in the same order.
    fn send<'a>(
        &'a self,
        calls: &'a [&'a Self::Call],
    ) -> BoxFuture<'a, Result<Vec<Self::Answer>, StoreError>>;

    /// This sender's queues.
    fn queues(&self) -> &Queues<Self>;
}

type Reply<S> = oneshot::Sender<Result<<S as Sender>::Answer, StoreError>>;

struct Queue<S: Sender + ?Sized> {
    /// Senders at work: callers sending their own call, tasks sending batches.
    senders: usize,
    waiting: Vec<(S::Call, Reply<S>)>,
}

/// The queues of one store, by [`Sender::Queue`].
pub(crate) struct Queues<S: Sender + ?Sized> {
    queues: Mutex<HashMap<S::Queue, Queue<S>>>,
}

impl<S: Sender + ?Sized> Default for Queues<S> {
    fn default() -> Self {
        Queues {
            queues: Mutex::new(HashMap::new()),
        }
    }
}

/// Decides `call`: sent at once when its queue has room for another sender, else with
/// the calls that queue with it once a call in flight has its answer.
pub(crate) async fn submit<S: Sender>(
    sender: &Arc<S>,
    queue: S::Queue,
    call: S::Call,
) -> Result<S::Answer, StoreError> {
    let waiting = {
        let mut queues = sender.queues().queues.lock();
        let entry = queues.entry(queue).or_insert_with(|| Queue {
            senders: 0,
            waiting: Vec::new(),
        });
        if entry.senders < S::MAX_IN_FLIGHT {
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
            let _turn = Turn { sender, queue };
            let mut answers = send(sender.as_ref(), &[&call]).await?;
            Ok(answers.pop().expect("one answer for one call"))
        }
        Err(answer) => answer.await.unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "the batch of this call was abandoned".to_owned(),
            ))
        }),
    }
}

/// The turn of a caller sending its own call: when it ends, a task takes over the
/// calls that queued meanwhile, or the sender leaves.
struct Turn<'a, S: Sender> {
    sender: &'a Arc<S>,
    queue: S::Queue,
}

impl<S: Sender> Drop for Turn<'_, S> {
    fn drop(&mut self) {
        if let Some(batch) = next_batch_or_leave(self.sender.as_ref(), &self.queue) {
            let (sender, queue) = (self.sender.clone(), self.queue);
            crate::background::handle().spawn(send_batches(sender, queue, batch));
        }
    }
}

/// The next batch of `queue` (up to [`MAX_CALLS`] of the calls waiting); when none
/// are waiting, the sender leaves the queue instead. A queue without senders is
/// dropped, so only queues in use take memory.
fn next_batch_or_leave<S: Sender>(
    sender: &S,
    queue: &S::Queue,
) -> Option<Vec<(S::Call, Reply<S>)>> {
    let mut queues = sender.queues().queues.lock();
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

/// Sends `batch`, then the calls waiting on `queue`, batch after batch, until none
/// are left.
async fn send_batches<S: Sender>(
    sender: Arc<S>,
    queue: S::Queue,
    mut batch: Vec<(S::Call, Reply<S>)>,
) {
    loop {
        // Callers that have gone consume nothing.
        batch.retain(|(_, reply)| !reply.is_closed());
        if !batch.is_empty() {
            let calls: Vec<&S::Call> = batch.iter().map(|(call, _)| call).collect();
            match send(sender.as_ref(), &calls).await {
                Ok(answers) => {
                    for ((_, reply), answer) in batch.drain(..).zip(answers) {
                        let _ = reply.send(Ok(answer));
                    }
                }
                Err(error) => {
                    for (_, reply) in batch.drain(..) {
                        let _ = reply.send(Err(error.clone()));
                    }
                }
            }
        }
        match next_batch_or_leave(sender.as_ref(), &queue) {
            Some(next) => batch = next,
            None => return,
        }
    }
}

/// [`Sender::send`], holding the store to one answer per call.
async fn send<S: Sender>(sender: &S, calls: &[&S::Call]) -> Result<Vec<S::Answer>, StoreError> {
    let answers = sender.send(calls).await?;
    match answers.len() == calls.len() {
        true => Ok(answers),
        false => Err(StoreError::Backend(format!(
            "the store answered {} calls of {}",
            answers.len(),
            calls.len()
        ))),
    }
}
