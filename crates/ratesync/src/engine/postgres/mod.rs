//! The PostgreSQL engine (SPEC §5 postgres): every decision is one call of a plpgsql
//! function that locks the key's row, decides on the server's clock and writes the
//! new state, in one round trip.
//!
//! - [`schema`] and `sql/migrate.sql`: the table, its expiry index and the functions,
//!   named from `schema_name` / `table_name`; the SQL `ratesync migrate` prints.
//! - [`connection`]: a few shared clients used round-robin (queries pipelined on
//!   each, no checkout), statements prepared per client, replaced after failures.
//! - [`database`] and [`tls`]: the URL's settings and libpq's `sslmode` over rustls,
//!   one way to connect for the clients, the listener and `ratesync migrate`.
//! - [`limiter`]: the [`EngineLimiter`] that binds each call's parameters.
//! - [`releases`]: one LISTEN connection per store that wakes waiters for a
//!   concurrency slot when another process releases one.
//! - Cleanup: a background task deletes expired rows in small batches through the
//!   expiry index (`<table>_cleanup`), so idle keys vanish without a scan on the hot
//!   path.
//!
//! The functions decide in whole microseconds: a token bucket's interval and a
//! window's length are rounded *up*, so rounding can only make a limit stricter.
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
use self::releases::Releases;
use self::schema::Names;
use super::{Engine, EngineFuture, EngineLimiter, LimiterSpec, StoreError};
use crate::config::PostgresConfig;

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
    releases: Arc<Releases>,
    cleanup_started: std::sync::atomic::AtomicBool,
    cleanup: bool,
}

impl PostgresEngine {
    /// Prepares the engine without any I/O: clients connect on first use (and again
    /// after failures), so a registry builds while the database is down. Fails only
    /// on a configuration that cannot work (URL, names too long).
    pub fn new(config: &PostgresConfig) -> Result<Self, StoreError> {
        Self::build(config, true)
    }

    /// As [`Self::new`], without the background cleanup: for tests that pin the
    /// clock, whose rows would look expired on the real one.
    #[doc(hidden)]
    pub fn without_cleanup(config: &PostgresConfig) -> Result<Self, StoreError> {
        Self::build(config, false)
    }

    fn build(config: &PostgresConfig, cleanup: bool) -> Result<Self, StoreError> {
        let names = Names::new(config)?;
        let releases = Arc::new(Releases::new(names.channel.clone()));
        Ok(PostgresEngine {
            shared: Arc::new(Shared {
                pool: Arc::new(Pool::new(config, names)?),
                releases,
                cleanup_started: false.into(),
                cleanup,
            }),
        })
    }

    /// The concrete limiter handle (what [`Engine::limiter`] returns, unboxed), for
    /// tests that drive the functions directly.
    pub fn postgres_limiter(&self, spec: LimiterSpec) -> Result<Arc<PostgresLimiter>, StoreError> {
        let limiter = PostgresLimiter::new(self.shared.clone(), &spec)?;
        if spec.policy.concurrency.is_some() {
            self.shared
                .releases
                .watch(self.shared.pool.database(), limiter.id(), spec.releases);
        }
        self.start_cleanup();
        Ok(Arc::new(limiter))
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
    let names = Names::new(config)?;
    let client = Database::new(config)?.connect().await?;
    connection::apply_migration(&client, &names, unlogged).await
}

impl Engine for PostgresEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn limiter(&self, spec: LimiterSpec) -> Result<Arc<dyn EngineLimiter>, StoreError> {
        Ok(self.postgres_limiter(spec)?)
    }

    /// A cleanup of zero rows: answers only when the store is reachable and its
    /// functions exist.
    fn ping(&self) -> EngineFuture<'_, ()> {
        Box::pin(async move { self.cleanup(0).await.map(drop) })
    }
}
