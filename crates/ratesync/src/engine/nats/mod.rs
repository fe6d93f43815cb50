//! The NATS engine (`docs/design.md#nats`): a JetStream KV bucket with one entry per
//! (limiter, key) holding its whole state, updated by compare-and-set on the
//! entry's revision.
//!
//! - `keys`: entry names in the KV charset, collision-free.
//! - `state`: the entry's value, a compact binary [`crate::algorithm::KeyState`].
//! - `connection`: one client per store (server list, token), the bucket found or
//!   created (`history = 1`, `max_age` covering the longest state of its limiters).
//! - `clock`: the server's clock, measured from its message timestamps; how far
//!   two hosts can disagree is documented there.
//! - `limiter`: read, decide with [`crate::algorithm`], write by CAS; bounded,
//!   jittered retries. `batch`: callers of one key in a process queue, and one
//!   task decides each queue's calls together and writes them in one CAS.
//! - `releases`: the store's KV watch as a release feed.
//!
//! KV has no server-side scripting, so unlike Redis and PostgreSQL the decision runs
//! in the client, on the same pure functions the memory engine uses; the CAS on the
//! revision makes read-decide-write one atomic step. Nor has it multi-key
//! transactions: a group is reserved member by member and refunded when one refuses
//! (the contract's default, `docs/design.md#groups`). `timing_margin_ms` is accepted
//! for compatibility and ignored: a margin could only loosen limits.

mod batch;
mod clock;
mod connection;
mod keys;
mod limiter;
mod releases;
mod state;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use self::connection::Connection;
use crate::config::NatsConfig;
use crate::store::listener::{Origin, ReleaseListener};
use crate::store::{Engine, EngineLimiter, LimiterSpec, StoreCall, StoreError, DEFAULT_DEADLINE};

pub use self::limiter::NatsLimiter;

/// Conflicting writes tolerated per decision before it fails (`max_retries`).
pub const DEFAULT_MAX_RETRIES: u32 = 50;
/// Base pause after a lost compare-and-set (`retry_interval`); each further loss
/// doubles it (up to 32x), and the pause is drawn uniformly below it (full jitter).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(1);

/// A NATS store: one client and bucket shared by all its limiters and keys. Cheap
/// to clone; clones share the client.
#[derive(Clone)]
pub struct NatsEngine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    connection: Arc<Connection>,
    /// The release listener; its origin (this engine instance's id) is written into
    /// every entry the engine stores.
    listener: Arc<ReleaseListener>,
    max_retries: u32,
    retry_interval: Duration,
    stats: CasStats,
}

impl NatsEngine {
    /// Prepares the engine without any I/O: the client connects on the first call
    /// (and the bucket is bound or created then), so a registry builds while NATS is
    /// down. Fails only on a `url` the client cannot use.
    pub fn new(config: &NatsConfig) -> Result<Self, StoreError> {
        // NATS stores have no `socket_timeout` key: calls get the default deadline.
        let listener = ReleaseListener::new();
        let connection = Connection::new(config, DEFAULT_DEADLINE, listener.origin())?;
        Ok(NatsEngine {
            shared: Arc::new(Shared {
                connection: Arc::new(connection),
                listener,
                max_retries: config.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                retry_interval: config.retry_interval.unwrap_or(DEFAULT_RETRY_INTERVAL),
                stats: CasStats::new(&config.bucket_name),
            }),
        })
    }

    /// Decisions and lost compare-and-sets so far, across this engine's limiters.
    pub fn cas_stats(&self) -> CasSnapshot {
        self.shared.stats.snapshot()
    }

    /// Makes this engine read the server's clock `nanos` later than it is (may be
    /// negative): for tests of calendar windows, whose boundaries (midnight, the 1st
    /// of the month) cannot be waited for. Entries read keep their real stamps, so
    /// only a shift forward is meaningful.
    #[cfg(feature = "testing")]
    pub fn shift_clock(&self, nanos: i64) {
        self.shared.connection.clock.shift(nanos);
    }

    /// How far this process's idea of the server's clock may be off (half the
    /// round trip of the best clock probe); zero before the first call.
    pub fn clock_uncertainty(&self) -> Duration {
        self.shared.connection.clock.uncertainty()
    }
}

/// Server time of a stored message, in ns since the epoch.
pub(crate) fn stamp_nanos(time: &async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos()).unwrap_or(0)
}

impl Shared {
    /// This engine instance's id, as the entries it writes carry it.
    fn origin(&self) -> u64 {
        self.listener.origin().0
    }
}

impl Engine for NatsEngine {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let shared = &self.shared;
        shared.connection.need_span(spec.policy.span_nanos());
        let limiter = NatsLimiter::new(shared.clone(), &spec);
        if spec.policy.concurrency.is_some() {
            let limiter_token = limiter.keys().encoded_limiter().as_bytes();
            shared.listener.watch(limiter_token, &spec.releases, || {
                releases::NatsFeed::new(&shared.connection, shared.origin())
            });
        }
        Ok(Arc::new(limiter))
    }

    fn ping(&self) -> StoreCall<'_, ()> {
        StoreCall::pending(async move {
            let connection = &self.shared.connection;
            let bound = connection.get().await?;
            // One round trip that needs the bucket: a read of this instance's probe.
            bound
                .kv
                .entry(keys::clock_probe(Origin(self.shared.origin())))
                .await
                .map(drop)
                .map_err(|e| StoreError::Connection(connection.mask(e.to_string())))
        })
    }
}

/// Counts of compare-and-set outcomes: how hard the store's hot keys are contended.
pub(crate) struct CasStats {
    decisions: AtomicU64,
    conflicts: AtomicU64,
    conflicts_counter: metrics::Counter,
}

/// [`NatsEngine::cas_stats`]: read-modify-writes completed, and CAS conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CasSnapshot {
    /// Calls decided (acquire, release, renew), several per write under load.
    pub decisions: u64,
    /// Writes that lost a compare-and-set and were retried (or gave up).
    pub conflicts: u64,
}

impl CasSnapshot {
    /// Conflicts per completed decision.
    pub fn retries_per_decision(&self) -> f64 {
        if self.decisions == 0 {
            0.0
        } else {
            self.conflicts as f64 / self.decisions as f64
        }
    }
}

impl CasStats {
    fn new(bucket: &str) -> Self {
        CasStats {
            decisions: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            conflicts_counter: metrics::counter!(
                "ratesync_nats_cas_conflicts_total",
                "bucket" => bucket.to_owned()
            ),
        }
    }

    fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
        self.conflicts_counter.increment(1);
    }

    /// `calls` decisions were stored (or needed no write).
    fn record(&self, calls: usize) {
        self.decisions.fetch_add(calls as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CasSnapshot {
        CasSnapshot {
            decisions: self.decisions.load(Ordering::Relaxed),
            conflicts: self.conflicts.load(Ordering::Relaxed),
        }
    }
}
