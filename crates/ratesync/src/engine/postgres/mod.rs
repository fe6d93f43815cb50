//! The PostgreSQL engine (`docs/design.md#postgresql`): decisions are made by a plpgsql
//! function that locks the rows of their keys, decides on the server's clock and
//! writes the new state, in one round trip and one transaction. A group is one call
//! over all its keys; calls that queue on a client while others are in flight go in
//! one call too (`docs/design.md#batches`).
//!
//! - `schema` and `sql/migrate.sql`: the table, its expiry index and the functions,
//!   named from `schema_name` / `table_name`; the SQL `ratesync migrate` prints.
//! - `connection`: a few shared clients (queries pipelined on each, no checkout), a
//!   key's calls on one of as many as the load needs, statements prepared per
//!   client, replaced after failures.
//! - `database` and `tls`: the URL's settings and libpq's `sslmode` over rustls,
//!   one way to connect for the clients, the listener and `ratesync migrate`.
//! - `limiter`: the [`EngineLimiter`] that binds each call's parameters.
//! - `releases`: the store's LISTEN channel as a release feed.
//! - Cleanup: a background task deletes expired rows in small batches through the
//!   expiry index (`<table>_cleanup`), so idle keys vanish without a scan on the hot
//!   path.
//!
//! The functions decide in whole microseconds (`engine::micros`).
//! `timing_margin_ms` is accepted for compatibility and ignored: a margin could only
//! loosen limits.

mod connection;
mod database;
mod limiter;
mod releases;
mod schema;
mod tls;

use std::sync::{Arc, Weak};
use std::time::Duration;

use self::connection::Pool;
use self::database::Database;
use self::schema::{Names, SqlClock};
use crate::algorithm::GroupDecision;
use crate::config::PostgresConfig;
use crate::store::listener::ReleaseListener;
use crate::store::{Engine, EngineLimiter, GroupMember, LimiterSpec, StoreCall, StoreError};

pub use self::limiter::PostgresLimiter;
pub use self::schema::migration_sql;

/// Pause between two cleanup rounds of a store.
const CLEANUP_EVERY: Duration = Duration::from_secs(10);
/// Rows one cleanup statement deletes at most; a round repeats it while it fills.
const CLEANUP_BATCH: i32 = 500;
const CLEANUP_MAX_BATCHES: u32 = 20;

/// A PostgreSQL store: a few shared clients used by all its limiters and keys.
/// Cheap to clone; clones share the clients.
#[derive(Clone)]
pub struct PostgresEngine {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pool: Arc<Pool>,
    /// Acquires waiting to be sent together.
    batches: limiter::Batches,
    listener: Arc<ReleaseListener>,
    cleanup_started: std::sync::atomic::AtomicBool,
    cleanup: bool,
}

impl PostgresEngine {
    /// Prepares the engine without any I/O: clients connect on first use (and again
    /// after failures), so a registry builds while the database is down. Fails only
    /// on a configuration that cannot work (URL, names too long).
    pub fn new(config: &PostgresConfig) -> Result<Self, StoreError> {
        Self::build(config, SqlClock::Server)
    }

    /// As [`Self::new`], deciding at the time `clock` says instead of the server's,
    /// and without the background cleanup (its rows would look expired on the real
    /// clock): a test hook.
    #[cfg(feature = "testing")]
    pub fn with_pinned_clock(
        config: &PostgresConfig,
        clock: crate::testing::PinnedClock,
    ) -> Result<Self, StoreError> {
        Self::build(config, SqlClock::Pinned(clock))
    }

    fn build(config: &PostgresConfig, clock: SqlClock) -> Result<Self, StoreError> {
        let cleanup = clock.pinned_micros().is_none();
        let names = Names::new(config, clock)?;
        Ok(PostgresEngine {
            shared: Arc::new(Shared {
                pool: Arc::new(Pool::new(config, names)?),
                batches: limiter::Batches::default(),
                listener: ReleaseListener::new(),
                cleanup_started: false.into(),
                cleanup,
            }),
        })
    }

    /// Deletes up to `batch` expired rows now; how many it deleted. The background
    /// cleanup calls this every few seconds.
    pub async fn cleanup(&self, batch: i32) -> Result<u32, StoreError> {
        let row = self
            .shared
            .pool
            .query_one(None, |s| &s.cleanup, &[&batch])
            .await?;
        Ok(row.try_get::<_, i32>(0).map_or(0, |n| n.max(0) as u32))
    }

    fn start_cleanup(&self) {
        use std::sync::atomic::Ordering;
        if self.shared.cleanup && !self.shared.cleanup_started.swap(true, Ordering::AcqRel) {
            crate::background::handle().spawn(clean(Arc::downgrade(&self.shared)));
        }
    }
}

/// The cleanup loop: every [`CLEANUP_EVERY`] (jittered, so processes spread out),
/// delete expired rows in batches; until the engine is dropped. Failures are left
/// to the next round.
async fn clean(shared: Weak<Shared>) {
    loop {
        let pause = CLEANUP_EVERY.mul_f64(0.5 + fastrand::f64());
        tokio::time::sleep(pause).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let engine = PostgresEngine { shared };
        for _ in 0..CLEANUP_MAX_BATCHES {
            match engine.cleanup(CLEANUP_BATCH).await {
                Ok(deleted) if deleted == CLEANUP_BATCH as u32 => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::debug!(%error, "PostgreSQL cleanup failed; retrying later");
                    break;
                }
            }
        }
    }
}

/// Applies the migration SQL for `config` (what `ratesync migrate` does): connects
/// once, runs the idempotent transaction, disconnects.
pub async fn migrate(config: &PostgresConfig, unlogged: bool) -> Result<(), StoreError> {
    let names = Names::new(config, SqlClock::Server)?;
    let client = Database::new(config)?.connect().await?;
    connection::apply_migration(&client, &names, unlogged).await
}

impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        let limiter = PostgresLimiter::new(self.shared.clone(), &spec)?;
        if spec.policy.concurrency.is_some() {
            let shared = &self.shared;
            shared
                .listener
                .watch(spec.id.as_bytes(), &spec.releases, || {
                    releases::PostgresFeed::new(shared.pool.database(), &shared.pool.names.channel)
                });
        }
        self.start_cleanup();
        Ok(Arc::new(limiter))
    }

    /// A cleanup of zero rows: answers only when the store is reachable and its
    /// functions exist.
    fn ping(&self) -> StoreCall<'_, ()> {
        StoreCall::pending(async move { self.cleanup(0).await.map(drop) })
    }

    fn acquire_all<'a>(&'a self, members: &'a [GroupMember<'a>]) -> StoreCall<'a, GroupDecision> {
        let limiters: Option<Vec<&PostgresLimiter>> = members
            .iter()
            .map(|m| {
                m.limiter
                    .downcast::<PostgresLimiter>()
                    .filter(|l| l.is_of(&self.shared))
            })
            .collect();
        match limiters {
            Some(limiters) => {
                StoreCall::pending(limiter::acquire_group(&self.shared, limiters, members))
            }
            None => StoreCall::Ready(Err(StoreError::ForeignLimiter)),
        }
    }
}
