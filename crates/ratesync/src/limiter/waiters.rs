//! Callers waiting for a concurrency slot, woken first-come first-served when one is
//! released. Only keys with waiters have an entry, so idle keys cost nothing here.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
pub(crate) struct Waiters {
    queues: Mutex<HashMap<Box<str>, Arc<Notify>>>,
}

impl Waiters {
    /// Joins the queue of `key`. Wake-ups sent after this call are not lost, even if
    /// the caller has not started waiting yet.
    pub fn join(self: &Arc<Self>, key: &str) -> WaitTicket {
        let notify = self
            .queues
            .lock()
            .entry(key.into())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        WaitTicket {
            waiters: self.clone(),
            key: key.into(),
            notify,
        }
    }

    /// A slot of `key` came free: wake the longest waiter.
    pub fn released(&self, key: &str) {
        if let Some(notify) = self.queues.lock().get(key) {
            notify.notify_one();
        }
    }
}

/// A place in the queue of one key; leaving (drop) removes the queue when empty.
pub(crate) struct WaitTicket {
    waiters: Arc<Waiters>,
    key: Box<str>,
    pub notify: Arc<Notify>,
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        let mut queues = self.waiters.queues.lock();
        // Two references: the map's and ours. Nobody else waits on this key.
        if Arc::strong_count(&self.notify) == 2 {
            queues.remove(&self.key);
        }
    }
}
