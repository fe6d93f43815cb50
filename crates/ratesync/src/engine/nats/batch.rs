//! Callers of one key in one process take turns, in batches.
//!
//! Each call joins its key's queue. When no task is working on the key, the call
//! starts one (on the background runtime, so that a caller cancelled by its deadline
//! never strands the others). The task takes the whole queue, has it decided in
//! arrival order and written in one CAS ([`super::limiter::LimiterCore::run_batch`]),
//! answers every caller, and goes on while calls keep coming. Calls whose caller
//! has already gone (cancelled, timed out) are dropped before a batch is decided,
//! so they consume nothing.
//!
//! Only keys in use have a task; the queue entry of an idle key (with the last
//! state written, which spares the next call a read) is kept for up to
//! [`KEEP_IDLE`] keys per limiter, so millions of keys cost nothing here.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::limiter::{LimiterCore, Snapshot};
use crate::algorithm::{LeaseId, Receipt};
use crate::decision::Decision;
use crate::store::StoreError;

/// Idle keys whose queue (and last state) is kept per limiter.
pub(super) const KEEP_IDLE: usize = 1024;

/// One call on a key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Call {
    Acquire {
        cost: u32,
        lease: Option<LeaseId>,
    },
    Refund {
        cost: u32,
        receipt: Receipt,
        lease: Option<LeaseId>,
    },
    Release(LeaseId),
    Renew(LeaseId),
}

/// The answer to a [`Call`]: a decision (acquire), or whether it changed anything
/// (refund, release, renew).
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Decision(Decision, Receipt),
    Done(bool),
}

type Reply = oneshot::Sender<Result<Outcome, StoreError>>;

#[derive(Default)]
struct KeyTurn {
    queue: Vec<(Call, Reply)>,
    running: bool,
    /// What this process last wrote (or read) for the key.
    known: Option<Snapshot>,
}

/// The queues of one limiter's keys.
#[derive(Default)]
pub(crate) struct Turns {
    keys: Mutex<HashMap<Box<str>, Arc<Mutex<KeyTurn>>>>,
}

impl Turns {
    /// Queues `call` on `key` and waits for its outcome.
    pub async fn submit(
        core: &Arc<LimiterCore>,
        key: &str,
        call: Call,
    ) -> Result<Outcome, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let start = {
            let mut keys = core.turns().keys.lock();
            let turn = keys.entry(key.into()).or_default().clone();
            let mut state = turn.lock();
            state.queue.push((call, reply));
            let start = !state.running;
            state.running = true;
            drop(state);
            start.then_some(turn)
        };
        if let Some(turn) = start {
            crate::background::handle().spawn(work(core.clone(), key.into(), turn));
        }
        outcome
            .await
            .unwrap_or_else(|_| Err(StoreError::Backend("the key's batch task ended".into())))
    }

    /// Forgets the last state of `key` (it was reset).
    pub fn forget(&self, key: &str) {
        if let Some(turn) = self.keys.lock().get(key) {
            turn.lock().known = None;
        }
    }

    /// Forgets the last state of every key (the limiter was reset).
    pub fn forget_all(&self) {
        for turn in self.keys.lock().values() {
            turn.lock().known = None;
        }
    }

    /// Drops the queue of an idle key when the limiter keeps too many.
    fn tidy(&self, key: &str, turn: &Arc<Mutex<KeyTurn>>) {
        let mut keys = self.keys.lock();
        // The map's reference and the finishing task's: nobody else has it.
        if keys.len() > KEEP_IDLE && Arc::strong_count(turn) == 2 && !turn.lock().running {
            keys.remove(key);
        }
    }
}

/// The task of one busy key: batch after batch until the queue is empty.
async fn work(core: Arc<LimiterCore>, key: Box<str>, turn: Arc<Mutex<KeyTurn>>) {
    loop {
        let (batch, known) = {
            let mut state = turn.lock();
            state.queue.retain(|(_, reply)| !reply.is_closed());
            if state.queue.is_empty() {
                state.running = false;
                drop(state);
                core.turns().tidy(&key, &turn);
                return;
            }
            (std::mem::take(&mut state.queue), state.known.take())
        };
        let calls: Vec<Call> = batch.iter().map(|(call, _)| *call).collect();
        let (result, kept) = core.run_batch(&key, &calls, known).await;
        turn.lock().known = kept;
        match result {
            Ok(outcomes) => {
                for ((_, reply), outcome) in batch.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
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
