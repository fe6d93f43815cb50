//! Release notifications across processes: one pub/sub subscription per store.
//!
//! The release and reset scripts PUBLISH `<origin>:<limiter>:<key>` (limiter and key
//! encoded) on the store's channel. A release's own engine instance ignores its
//! message: the limiter already woke its local waiters, in order, and a second
//! wake-up would let a later waiter overtake an earlier one. Resets are sent with
//! origin `-`, which every instance acts on. The subscription starts when the store's first concurrency
//! limiter is created, runs in the background, and resubscribes after any failure
//! (with a growing pause), so a restarted or failed-over server is followed. Each
//! message wakes the local waiters of that (limiter, key) through its
//! [`ReleaseSignal`]. Messages lost while disconnected only delay waiters until the
//! core's bounded fallback poll.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::connection::Connection;
use super::keys::parse_release_message;
use crate::engine::release_routes::ReleaseRoutes;
use crate::engine::ReleaseSignal;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The store's release channel, and whom its messages wake (by encoded limiter id).
pub(crate) struct Releases {
    channel: String,
    /// Random id of this engine instance, in the messages it sends.
    origin: String,
    routes: ReleaseRoutes,
    /// Dropped with the engine: the subscription task then ends.
    stop: watch::Sender<()>,
}

impl Releases {
    pub fn new(channel: String) -> Self {
        Releases {
            channel,
            origin: format!("{:016x}", fastrand::u64(..)),
            routes: ReleaseRoutes::default(),
            stop: watch::channel(()).0,
        }
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Routes releases of `limiter` (encoded) to `signal`, and makes sure the store's
    /// subscription runs.
    pub fn watch(
        self: &Arc<Self>,
        connection: &Arc<Connection>,
        limiter: &str,
        signal: ReleaseSignal,
    ) {
        if self.routes.add(limiter.as_bytes(), signal) {
            let stop = self.stop.subscribe();
            crate::background::handle().spawn(subscribe(
                Arc::downgrade(self),
                Arc::downgrade(connection),
                stop,
            ));
        }
    }

    fn dispatch(&self, message: &str) {
        let Some(message) = parse_release_message(message) else {
            return;
        };
        if message.origin == self.origin {
            return;
        }
        self.routes.wake(message.limiter.as_bytes(), &message.key);
    }
}

/// The subscription loop: connect, subscribe, dispatch until the connection ends,
/// pause, start over; until the engine is dropped.
async fn subscribe(
    releases: Weak<Releases>,
    connection: Weak<Connection>,
    mut stop: watch::Receiver<()>,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let releases_weak = &releases;
        let session = async {
            let (Some(releases), Some(connection)) =
                (releases_weak.upgrade(), connection.upgrade())
            else {
                return;
            };
            let timeout = connection.connect_timeout();
            let opened = async {
                let client = connection.pubsub_client().await?;
                drop(connection);
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(releases.channel()).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let mut pubsub = match tokio::time::timeout(timeout, opened).await {
                Ok(Ok(pubsub)) => pubsub,
                Ok(Err(error)) => {
                    tracing::debug!(kind = ?error.kind(), "release subscription failed; retrying");
                    return;
                }
                Err(_) => return,
            };
            pause = FIRST_PAUSE;
            // Hold only a weak reference while idle, so the engine can go away.
            drop(releases);
            let mut messages = pubsub.on_message();
            while let Some(message) = messages.next().await {
                let Some(releases) = releases_weak.upgrade() else {
                    return;
                };
                if let Ok(payload) = std::str::from_utf8(message.get_payload_bytes()) {
                    releases.dispatch(payload);
                }
            }
        };
        tokio::select! {
            _ = session => {}
            _ = stop.changed() => return,
        }
        if releases.strong_count() == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
