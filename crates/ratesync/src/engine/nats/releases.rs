//! Release notifications across processes: one KV watch per store, filtered to the
//! store's concurrency limiters.
//!
//! A release writes its entry with the `FREED` flag, the writer's origin and the
//! key; a reset purges the entry. The watch sees both: a freed slot from another engine
//! instance, or a purge from anyone, wakes the local waiters of that (limiter, key)
//! through its [`ReleaseSignal`]. A release's own instance ignores its write: the
//! limiter already woke its local waiters, in order, and a second wake-up would let
//! a later waiter overtake an earlier one. The watch starts with the store's first
//! concurrency limiter, is re-created when another one is added (its filter
//! changes) and after any failure (with a growing pause), and only delivers new
//! writes. Writes missed while it is down only delay waiters until the core's
//! bounded fallback poll.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::kv::{Entry, Operation};
use futures::StreamExt;
use tokio::sync::watch;

use super::connection::Connection;
use super::keys::split_entry;
use super::state::released_key;
use crate::engine::release_routes::ReleaseRoutes;
use crate::engine::ReleaseSignal;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Whom the store's release writes wake (by encoded limiter).
pub(crate) struct Releases {
    origin: u64,
    routes: ReleaseRoutes,
    /// Bumped when a limiter is added: the watch restarts with the new filter.
    limiters_changed: watch::Sender<u64>,
}

impl Releases {
    pub fn new(origin: u64) -> Self {
        Releases {
            origin,
            routes: ReleaseRoutes::default(),
            limiters_changed: watch::channel(0).0,
        }
    }

    /// Routes releases of `limiter` (encoded) to `signal`, and makes sure the
    /// store's watch runs and covers it.
    pub fn watch(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        limiter: &str,
        signal: ReleaseSignal,
    ) {
        let first = self.routes.add(limiter.as_bytes(), signal);
        self.limiters_changed.send_modify(|n| *n += 1);
        if first {
            let changed = self.limiters_changed.subscribe();
            crate::background::handle().spawn(run(
                Arc::downgrade(self),
                Arc::downgrade(connection),
                changed,
            ));
        }
    }

    fn filters(&self) -> Vec<String> {
        self.routes
            .limiters()
            .iter()
            .map(|limiter| format!("{}.>", String::from_utf8_lossy(limiter)))
            .collect()
    }

    fn dispatch(&self, entry: &Entry) {
        let Some((limiter, name_key)) = split_entry(&entry.key) else {
            return;
        };
        let key = match entry.operation {
            // A release by another instance names its key in the value.
            Operation::Put => match released_key(&entry.value) {
                Some((origin, key)) if origin != self.origin => key,
                _ => return,
            },
            // A reset: any origin. A hashed key cannot be named; its waiters
            // are left to the fallback poll.
            Operation::Delete | Operation::Purge => match name_key {
                Some(key) => key,
                None => return,
            },
        };
        self.routes.wake(limiter.as_bytes(), &key);
    }
}

/// The watch loop: bind, watch, dispatch until the watch ends or the limiters
/// change, pause after failures, start over; until the engine is dropped.
async fn run(
    releases: Weak<Releases>,
    connection: Weak<Connection>,
    mut changed: watch::Receiver<u64>,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let session = async {
            let (Some(strong), Some(connection)) = (releases.upgrade(), connection.upgrade())
            else {
                return Session::EngineGone;
            };
            changed.borrow_and_update();
            let filters = strong.filters();
            drop(strong);
            let timeout = connection.timeout;
            let opened = async {
                let bound = connection.get().await.ok()?;
                bound.kv.watch_many(filters).await.ok()
            };
            let Ok(Some(mut entries)) = tokio::time::timeout(timeout, opened).await else {
                return Session::Failed;
            };
            drop(connection);
            pause = FIRST_PAUSE;
            loop {
                tokio::select! {
                    entry = entries.next() => match entry {
                        Some(Ok(entry)) => {
                            let Some(releases) = releases.upgrade() else {
                                return Session::EngineGone;
                            };
                            releases.dispatch(&entry);
                        }
                        _ => return Session::Failed,
                    },
                    result = changed.changed() => {
                        return if result.is_ok() { Session::Changed } else { Session::EngineGone };
                    }
                }
            }
        };
        match session.await {
            Session::EngineGone => return,
            Session::Changed => continue,
            Session::Failed => {}
        }
        if releases.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

enum Session {
    EngineGone,
    Changed,
    Failed,
}
