//! Release notifications across processes: one LISTEN connection per store.
//!
//! The release and reset functions `pg_notify` the store's channel with
//! `<origin>:<limiter hex>:<key hex>`, sent when their transaction commits. A
//! release's own engine instance ignores its message: the limiter already woke its
//! local waiters, in order, and a second wake-up would let a later waiter overtake an
//! earlier one. Resets are sent with origin `-`, which every instance acts on. The
//! listener starts when the store's first concurrency limiter is created, runs in the
//! background and reconnects after any failure (with a growing pause), so a restarted
//! database is followed. Notifications lost while disconnected only delay waiters
//! until the core's bounded fallback poll.

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_postgres::AsyncMessage;

use super::database::Database;
use super::schema::quote_ident;
use crate::engine::release_routes::ReleaseRoutes;
use crate::engine::ReleaseSignal;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// The store's notification channel, and whom its notifications wake (by limiter id).
pub(crate) struct Releases {
    channel: String,
    /// Random id of this engine instance, in the notifications it sends.
    origin: String,
    routes: ReleaseRoutes,
    /// Dropped with the engine: the listener task then ends.
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

    /// Routes releases of `limiter` to `signal`, and makes sure the listener runs.
    pub fn watch(self: &Arc<Self>, database: &Arc<Database>, limiter: &str, signal: ReleaseSignal) {
        if self.routes.add(limiter.as_bytes(), signal) {
            let stop = self.stop.subscribe();
            crate::background::handle().spawn(listen(Arc::downgrade(self), database.clone(), stop));
        }
    }

    fn dispatch(&self, payload: &str) {
        let Some((origin, limiter, key)) = parse_payload(payload) else {
            return;
        };
        if origin == self.origin {
            return;
        }
        let Ok(key) = String::from_utf8(key) else {
            return;
        };
        self.routes.wake(&limiter, &key);
    }
}

/// `<origin>:<limiter hex>:<key hex>` → its three parts, hex decoded.
fn parse_payload(payload: &str) -> Option<(&str, Vec<u8>, Vec<u8>)> {
    let mut parts = payload.splitn(3, ':');
    let origin = parts.next()?;
    let limiter = from_hex(parts.next()?)?;
    let key = from_hex(parts.next()?)?;
    Some((origin, limiter, key))
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The listener loop: connect, LISTEN, dispatch until the connection ends, pause,
/// start over; until the engine is dropped.
async fn listen(releases: Weak<Releases>, database: Arc<Database>, mut stop: watch::Receiver<()>) {
    let mut pause = FIRST_PAUSE;
    loop {
        let session = async {
            let Some(channel) = releases.upgrade().map(|r| r.channel.clone()) else {
                return;
            };
            let (client, mut connection) =
                match tokio::time::timeout(MAX_PAUSE, database.connect_driven_by_caller()).await {
                    Ok(Ok(connected)) => connected,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "release listener could not connect; retrying");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("release listener could not connect in time; retrying");
                        return;
                    }
                };
            // The connection yields the notifications; it is driven here, next to the
            // client that sent LISTEN.
            let (sender, mut notifications) = mpsc::unbounded_channel();
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            let driver = async move {
                while let Some(Ok(message)) = messages.next().await {
                    if let AsyncMessage::Notification(notification) = message {
                        if sender.send(notification).is_err() {
                            return;
                        }
                    }
                }
            };
            let dispatcher = async {
                if client
                    .batch_execute(&format!("LISTEN {}", quote_ident(&channel)))
                    .await
                    .is_err()
                {
                    return;
                }
                pause = FIRST_PAUSE;
                while let Some(notification) = notifications.recv().await {
                    let Some(releases) = releases.upgrade() else {
                        return;
                    };
                    releases.dispatch(notification.payload());
                }
            };
            tokio::select! {
                _ = driver => {}
                _ = dispatcher => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_parsed() {
        let (origin, limiter, key) = parse_payload("ab:6170:7b7d3a").unwrap();
        assert_eq!(
            (origin, limiter.as_slice(), key.as_slice()),
            ("ab", &b"ap"[..], &b"{}:"[..])
        );
        assert!(parse_payload("ab:6170").is_none());
        assert!(parse_payload("ab:zz:00").is_none());
        assert!(parse_payload("ab:617:00").is_none());
    }
}
