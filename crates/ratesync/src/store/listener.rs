//! The release listener of a remote store: releases seen in other processes wake
//! this process's waiters (`docs/design.md#release-signalling`).
//!
//! Each remote store has one [`ReleaseListener`]: a routing table from limiter to
//! the [`ReleaseSignal`]s of its waiters, and one background loop that follows the
//! store's release messages. How the messages arrive is the engine's business (Redis
//! pub/sub, PostgreSQL LISTEN, a NATS KV watch: a [`ReleaseFeed`]); everything else
//! is here, once:
//!
//! - the loop starts with the store's first concurrency limiter, reopens its feed
//!   after any failure with a pause that doubles from 100 ms to 5 s, reopens it when
//!   a limiter is added (for feeds filtered by limiter), and ends with the engine;
//! - a message from this engine instance itself ([`Origin`]) is ignored: the limiter
//!   already woke its local waiters, in order, and a second wake-up would let a later
//!   waiter overtake an earlier one. Messages without an origin (resets) wake all.
//!
//! Messages lost while the feed is down only delay waiters until the limiter's
//! bounded fallback poll.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use parking_lot::RwLock;
use tokio::sync::watch;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

use super::releases::ReleaseRoute;
use super::ReleaseSignal;

/// The id of one engine instance, written into its release messages so that it can
/// skip its own.
///
/// Random, and distinct across processes even when they were forked from one parent
/// after its random generator was seeded (a forked child inherits the parent's
/// generator state and would draw the same numbers): the process id and the time are
/// mixed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Origin(pub u64);

impl Origin {
    pub fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let pid = u64::from(std::process::id());
        let mut rng =
            fastrand::Rng::with_seed(fastrand::u64(..) ^ nanos.rotate_left(17) ^ (pid << 32));
        Origin(rng.u64(..))
    }

    /// The origin as 16 hex digits, as text messages carry it.
    pub fn hex(self) -> String {
        format!("{:016x}", self.0)
    }

    /// The origin a text message names (`None`: not one of ours, e.g. a reset's `-`).
    #[cfg(any(feature = "redis", feature = "postgres"))]
    pub fn parse_hex(text: &str) -> Option<Origin> {
        (text.len() == 16)
            .then(|| u64::from_str_radix(text, 16).ok().map(Origin))
            .flatten()
    }
}

/// One release message, as a feed read it.
pub(crate) struct Released {
    /// The engine instance that sent it; `None` for messages every instance acts on.
    pub origin: Option<Origin>,
    /// The limiter, as the engine names it in its messages.
    pub limiter: Box<[u8]>,
    pub key: String,
}

/// How an engine receives its store's release messages.
pub(crate) trait ReleaseFeed: Send + Sync + 'static {
    /// Opens one session that delivers the releases of `limiters` (as the engine
    /// names them), until it fails. Bounded by the feed itself.
    fn open(
        &self,
        limiters: Vec<Box<[u8]>>,
    ) -> BoxFuture<'_, Result<BoxStream<'static, Released>, String>>;

    /// Whether a session only covers the limiters it was opened for (so that adding
    /// a limiter reopens it). Feeds of one channel per store cover them all.
    fn filters_by_limiter(&self) -> bool {
        false
    }
}

/// A store's release routing and its listening loop.
pub(crate) struct ReleaseListener {
    origin: Origin,
    /// Per limiter, its live signals (a reload may keep a replaced limiter's handles
    /// alive for a while: both wake the waiters they share, which is harmless).
    routes: RwLock<HashMap<Box<[u8]>, Vec<ReleaseRoute>>>,
    /// Bumped when a limiter is routed; dropped with the engine, which ends the loop.
    limiters_changed: watch::Sender<u64>,
    started: AtomicBool,
}

impl ReleaseListener {
    pub fn new() -> Arc<Self> {
        Arc::new(ReleaseListener {
            origin: Origin::new(),
            routes: RwLock::default(),
            limiters_changed: watch::channel(0).0,
            started: AtomicBool::new(false),
        })
    }

    /// This engine instance's id, for the messages it sends.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Routes releases of `limiter` to `signal` while its maker holds it, and makes
    /// sure the store's loop runs, reading `feed` (made once, by the first call).
    pub fn watch<F: ReleaseFeed>(
        self: &Arc<Self>,
        limiter: &[u8],
        signal: &ReleaseSignal,
        feed: impl FnOnce() -> F,
    ) {
        {
            let mut routes = self.routes.write();
            // The signals of limiters gone since (rebuilt by reloads, dropped) leave.
            routes.retain(|_, signals| {
                signals.retain(|route| !route.is_gone());
                !signals.is_empty()
            });
            routes
                .entry(limiter.into())
                .or_default()
                .push(signal.route());
        }
        self.limiters_changed.send_modify(|n| *n += 1);
        if !self.started.swap(true, Ordering::AcqRel) {
            let changed = self.limiters_changed.subscribe();
            crate::background::handle().spawn(listen(Arc::downgrade(self), feed(), changed));
        }
    }

    /// A slot of `key` of `limiter` came free somewhere: wake its local waiters.
    fn dispatch(&self, message: Released) {
        if message.origin == Some(self.origin) {
            return;
        }
        if let Some(signals) = self.routes.read().get(&message.limiter) {
            for signal in signals {
                signal.released(&message.key);
            }
        }
    }

    fn limiters(&self) -> Vec<Box<[u8]>> {
        self.routes.read().keys().cloned().collect()
    }
}

/// How a session ended.
enum Session {
    EngineGone,
    LimitersChanged,
    Failed,
}

/// The loop: open the feed, dispatch until it fails (or the limiters it filters on
/// change), pause, start over; until the engine is dropped.
async fn listen<F: ReleaseFeed>(
    listener: Weak<ReleaseListener>,
    feed: F,
    mut changed: watch::Receiver<u64>,
) {
    let mut pause = FIRST_PAUSE;
    loop {
        let Some(limiters) = listener.upgrade().map(|l| l.limiters()) else {
            return;
        };
        changed.borrow_and_update();
        let session = match feed.open(limiters).await {
            Ok(messages) => {
                pause = FIRST_PAUSE;
                follow(&listener, &feed, messages, &mut changed).await
            }
            Err(error) => {
                tracing::debug!(%error, "release feed failed; reopening");
                Session::Failed
            }
        };
        match session {
            Session::EngineGone => return,
            Session::LimitersChanged => continue,
            Session::Failed => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            gone = changed.changed() => if gone.is_err() { return },
        }
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

async fn follow<F: ReleaseFeed>(
    listener: &Weak<ReleaseListener>,
    feed: &F,
    mut messages: BoxStream<'static, Released>,
    changed: &mut watch::Receiver<u64>,
) -> Session {
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Session::Failed };
                // Only a weak reference while idle, so the engine can go away.
                let Some(listener) = listener.upgrade() else { return Session::EngineGone };
                listener.dispatch(message);
            }
            result = changed.changed() => match result {
                Err(_) => return Session::EngineGone,
                Ok(()) if feed.filters_by_limiter() => return Session::LimitersChanged,
                Ok(()) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(feature = "redis", feature = "postgres"))]
    #[test]
    fn origins_differ_and_read_back() {
        let (a, b) = (Origin::new(), Origin::new());
        assert_ne!(a, b);
        assert_eq!(Origin::parse_hex(&a.hex()), Some(a));
        assert_eq!(Origin::parse_hex("-"), None);
    }

    #[test]
    fn own_messages_are_skipped_and_others_routed() {
        let listener = ReleaseListener::new();
        let woken = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let seen = woken.clone();
        let signal = ReleaseSignal::new(move |key| seen.lock().push(key.to_owned()));
        listener
            .routes
            .write()
            .insert(b"api"[..].into(), vec![signal.route()]);
        let message = |origin, key: &str| Released {
            origin,
            limiter: b"api"[..].into(),
            key: key.into(),
        };
        listener.dispatch(message(Some(listener.origin()), "mine"));
        listener.dispatch(message(Some(Origin(7)), "theirs"));
        listener.dispatch(message(None, "reset"));
        assert_eq!(*woken.lock(), ["theirs", "reset"]);
    }

    /// A limiter rebuilt again and again (reloads) leaves one route, not one per
    /// build; a dropped signal wakes nobody.
    #[tokio::test]
    async fn routes_last_as_long_as_their_signals() {
        let listener = ReleaseListener::new();
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let signal = |woken: &Arc<std::sync::atomic::AtomicUsize>| {
            let woken = woken.clone();
            ReleaseSignal::new(move |_| {
                woken.fetch_add(1, Ordering::Relaxed);
            })
        };
        let mut kept = signal(&woken);
        for _ in 0..10 {
            kept = signal(&woken);
            listener.watch(b"api", &kept, || NoFeed);
        }
        assert_eq!(listener.routes.read()[&b"api"[..]].len(), 1);
        listener.dispatch(Released {
            origin: None,
            limiter: b"api"[..].into(),
            key: "k".into(),
        });
        assert_eq!(woken.load(Ordering::Relaxed), 1, "one wake-up per release");
        drop(kept);
        listener.dispatch(Released {
            origin: None,
            limiter: b"api"[..].into(),
            key: "k".into(),
        });
        assert_eq!(woken.load(Ordering::Relaxed), 1);
    }

    /// A feed that never opens (the loop it starts retries in the background).
    struct NoFeed;

    impl ReleaseFeed for NoFeed {
        fn open(
            &self,
            _: Vec<Box<[u8]>>,
        ) -> BoxFuture<'_, Result<BoxStream<'static, Released>, String>> {
            Box::pin(async { Err("no feed".to_owned()) })
        }
    }
}
