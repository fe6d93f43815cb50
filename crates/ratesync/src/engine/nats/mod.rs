//! The NATS engine (SPEC §5 nats): a JetStream KV bucket with one entry per
//! (limiter, key) holding its whole state, updated by compare-and-set on the
//! entry's revision.
//!
//! - [`keys`]: entry names in the KV charset, collision-free.
//! - [`state`]: the entry's value, a compact binary [`crate::algorithm::KeyState`].
//! - [`connection`]: one client per store (server list, token), the bucket found or
//!   created (`history = 1`, `max_age` covering the longest state of its limiters).
//! - [`clock`]: the server's clock, measured from its message timestamps; how far
//!   two hosts can disagree is documented there.
//! - [`limiter`]: read, decide with [`crate::algorithm`], write by CAS; bounded,
//!   jittered retries. [`batch`]: callers of one key in a process queue, and one
//!   task decides each queue's calls together and writes them in one CAS.
//! - [`releases`]: one KV watch per store that wakes waiters for a concurrency slot
//!   when another process releases one.
//!
//! KV has no server-side scripting, so unlike Redis and PostgreSQL the decision runs
//! in the client, on the same pure functions the memory engine uses; the CAS on the
//! revision makes read-decide-write one atomic step. `timing_margin_ms` is accepted
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
use self::releases::Releases;
use super::{Engine, EngineFuture, EngineLimiter, LimiterSpec, StoreError};
use crate::algorithm::Rule;
use crate::config::NatsConfig;

pub use self::limiter::NatsLimiter;

/// Conflicting writes tolerated per decision before it fails (`max_retries`).
pub const DEFAULT_MAX_RETRIES: u32 = 50;
/// Base pause after a lost compare-and-set (`retry_interval`); each further loss
/// doubles it (up to 32x), and the pause is drawn uniformly below it (full jitter).
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(1);
/// Bound on each call: NATS stores have no `socket_timeout` key.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// A NATS store: one client and bucket shared by all its limiters and keys. Cheap
/// to clone; clones share the client.
#[derive(Clone)]
pub struct NatsEngine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    connection: Arc<Connection>,
    /// Random id of this engine instance, written into every entry it stores.
    origin: u64,
    releases: Arc<Releases>,
    max_retries: u32,
    retry_interval: Duration,
    stats: CasStats,
}

impl NatsEngine {
    /// Prepares the engine without any I/O: the client connects on the first call
    /// (and the bucket is bound or created then), so a registry builds while NATS is
    /// down. Fails only on a `url` the client cannot use.
    pub fn new(config: &NatsConfig) -> Result<Self, StoreError> {
        let origin = unique_origin();
        Ok(NatsEngine {
            shared: Arc::new(Shared {
                connection: Arc::new(Connection::new(config, CALL_TIMEOUT, origin)?),
                origin,
                releases: Arc::new(Releases::new(origin)),
                max_retries: config.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
                retry_interval: config.retry_interval.unwrap_or(DEFAULT_RETRY_INTERVAL),
                stats: CasStats::new(&config.bucket_name),
            }),
        })
    }

    /// An engine for the NATS at `url` with every other setting at its default
    /// except `auto_create = true` (tests, tools).
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let config = crate::Config::builder()
            .store(
                "nats",
                crate::StoreBuilder::nats(url).option("auto_create", true),
            )
            .build()
            .map_err(|error| StoreError::Backend(error.to_string()))?;
        match config.stores.get("nats").map(|store| &store.engine) {
            Some(crate::config::EngineConfig::Nats(nats)) => Self::new(nats),
            _ => Err(StoreError::Backend("not a NATS store".to_owned())),
        }
    }

    /// The concrete limiter handle (what [`Engine::limiter`] returns, unboxed).
    pub fn nats_limiter(&self, spec: LimiterSpec) -> Result<Arc<NatsLimiter>, StoreError> {
        self.shared.connection.need_span(longest_span(&spec));
        let limiter = NatsLimiter::new(self.shared.clone(), &spec);
        if spec.policy.concurrency.is_some() {
            self.shared.releases.watch(
                &self.shared.connection,
                limiter.keys().encoded_limiter(),
                spec.releases,
            );
        }
        Ok(Arc::new(limiter))
    }

    /// Decisions and lost compare-and-sets so far, across this engine's limiters.
    pub fn cas_stats(&self) -> CasSnapshot {
        self.shared.stats.snapshot()
    }

    /// How far this process's idea of the server's clock may be off (half the
    /// round trip of the best clock probe); zero before the first call.
    pub fn clock_uncertainty(&self) -> Duration {
        self.shared.connection.clock.uncertainty()
    }
}

/// A random id for this engine instance, distinct across processes even when they
/// were forked from one parent after its random generator was seeded (forked
/// children inherit the parent's generator state and would draw the same numbers):
/// the process id and the time are mixed in.
fn unique_origin() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = fastrand::Rng::with_seed(
        fastrand::u64(..) ^ nanos.rotate_left(17) ^ (u64::from(std::process::id()) << 32),
    );
    rng.u64(..)
}

/// How long a limiter's state stays meaningful after its last write (ns).
fn longest_span(spec: &LimiterSpec) -> u64 {
    let rate = match spec.policy.rule {
        Rule::TokenBucket(tb) => tb.interval_nanos().saturating_mul(u64::from(tb.burst())),
        Rule::SlidingWindow(sw) => sw.window_nanos(),
    };
    let lease = spec.policy.concurrency.map_or(0, |cc| cc.lease_ttl);
    rate.max(lease)
}

/// Server time of a stored message, in ns since the epoch.
pub(crate) fn stamp_nanos(time: &async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos()).unwrap_or(0)
}

impl Engine for NatsEngine {
    fn name(&self) -> &'static str {
        "nats"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(self.nats_limiter(spec)?)
    }

    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(async move {
            let connection = &self.shared.connection;
            let bound = connection.get().await?;
            // One round trip that needs the bucket: a read of this instance's probe.
            bound
                .kv
                .entry(keys::clock_probe(self.shared.origin))
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
