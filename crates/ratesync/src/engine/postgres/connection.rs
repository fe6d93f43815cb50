//! The connections of a store: a small fixed set of clients, shared by every limiter
//! and key, without checkout: a key's calls go to one client, and keys spread over
//! as many clients as the load needs (`Pool::client_of`).
//!
//! tokio-postgres pipelines the queries that tasks send concurrently on one client,
//! so a handful of connections carries any number of tasks; there is no pool to wait
//! on. The number of clients is the store's `pool_max_size` (else `pool_min_size`,
//! else 4), at most 64. Each client is opened on first use, prepares the engine's
//! statements once, and is replaced after it fails: a closed socket, a server
//! shutting down (database restart), or a call without an answer within the deadline.
//! One task reconnects a client at a time; the others wait for it, bounded by the
//! core's deadline. With `auto_create`, the first connection of the store applies the
//! migration first.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::OnceCell;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use super::database::{chain, Database, CONNECT_TIMEOUT};
use super::schema::{self, Names};
use crate::config::PostgresConfig;
use crate::store::{client_timeout, StoreError, DEFAULT_DEADLINE};

const DEFAULT_CLIENTS: u32 = 4;
const MAX_CLIENTS: u32 = 64;
/// Acquires outstanding per client in use before the keys spread over one more
/// client (`docs/design.md#postgresql`, Connections). A batch pays a transaction's
/// fixed cost once, and that cost is about that of 20 calls in it: with two batches
/// in flight, a client's 64 calls make batches of about 30, of which the fixed cost
/// is still about two fifths.
const CALLS_PER_CLIENT: usize = 64;

/// The engine's statements, prepared once per client.
pub(crate) struct Statements {
    pub acquire: Statement,
    pub refund: Statement,
    pub renew: Statement,
    pub release: Statement,
    pub reset: Statement,
    pub notify: Statement,
    pub cleanup: Statement,
}

pub(crate) struct Session {
    pub client: Client,
    pub statements: Statements,
}

#[derive(Default)]
struct Slot {
    current: RwLock<Option<(u64, Arc<Session>)>>,
    generation: AtomicU64,
    connecting: tokio::sync::Mutex<()>,
}

pub(crate) struct Pool {
    database: Arc<Database>,
    pub names: Names,
    auto_create: bool,
    migrated: OnceCell<()>,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// Acquires of the store sent or queued and not answered yet.
    load: AtomicUsize,
    /// How many clients the keys are spread over now: 1 up to all of them.
    spread: AtomicUsize,
}

/// An acquire counted in the store's load while it lives.
pub(crate) struct Load<'a>(&'a Pool);

impl Drop for Load<'_> {
    fn drop(&mut self) {
        let load = self.0.load.fetch_sub(1, Ordering::Relaxed) - 1;
        self.0.adjust_spread(load);
    }
}

impl Pool {
    pub fn new(config: &PostgresConfig, names: Names) -> Result<Self, StoreError> {
        let database = Arc::new(Database::new(config)?);
        let clients = config
            .pool_max_size
            .or(config.pool_min_size)
            .unwrap_or(DEFAULT_CLIENTS)
            .clamp(1, MAX_CLIENTS);
        Ok(Pool {
            database,
            names,
            auto_create: config.auto_create,
            migrated: OnceCell::new(),
            slots: (0..clients).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            load: AtomicUsize::new(0),
            spread: AtomicUsize::new(1),
        })
    }

    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }

    /// Runs one prepared statement, chosen from the client's set by `statement`, and
    /// returns its single row, on `client` (see [`Self::client_of`]); `None`:
    /// round-robin.
    pub async fn query_one(
        self: &Arc<Self>,
        client: Option<usize>,
        statement: impl Fn(&Statements) -> &Statement,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let (slot, generation, session) = self.pick(client).await?;
        let call = session
            .client
            .query_one(statement(&session.statements), params);
        // The store runtime cuts the call at the engine's deadline; giving up a little
        // earlier here lets this layer replace a client whose server vanished without
        // closing the socket (a cancelled call would leave it in place).
        let timeout = client_timeout(DEFAULT_DEADLINE);
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(row)) => Ok(row),
            Ok(Err(error)) => {
                if must_reconnect(&error) {
                    discard(slot, generation);
                }
                Err(map_error(&error, &self.names))
            }
            Err(_) => {
                discard(slot, generation);
                Err(StoreError::Timeout(timeout))
            }
        }
    }

    /// The index of the client that carries the calls of `route` (a hash of limiter
    /// and key). PostgreSQL runs a client's calls one after the other: a busy key's
    /// calls queue in the client's pipeline and batches instead of on the row lock
    /// (which costs the server far more). Keys spread over as many clients as the
    /// load needs (`CALLS_PER_CLIENT` each), not over all of them: every client in
    /// use splits the calls into smaller batches, each paying a whole transaction.
    /// A jump consistent hash (Lamping and Veach), so that a change of spread moves
    /// few keys; a key that moves meanwhile is only locked in turn by two clients.
    pub fn client_of(&self, route: u64) -> usize {
        let spread = self
            .spread
            .load(Ordering::Relaxed)
            .clamp(1, self.slots.len());
        jump_hash(route, spread)
    }

    /// Counts an acquire in the load until the returned guard drops.
    pub fn count_load(&self) -> Load<'_> {
        let load = self.load.fetch_add(1, Ordering::Relaxed) + 1;
        self.adjust_spread(load);
        Load(self)
    }

    /// One more client when the load exceeds what those in use carry; one fewer once
    /// it falls to half of what one fewer would carry (so a load near a step does
    /// not move keys back and forth).
    fn adjust_spread(&self, load: usize) {
        let spread = self.spread.load(Ordering::Relaxed);
        let wanted = if load > spread * CALLS_PER_CLIENT {
            (spread + 1).min(self.slots.len())
        } else if spread > 1 && load * 2 < (spread - 1) * CALLS_PER_CLIENT {
            spread - 1
        } else {
            return;
        };
        // Another caller may have moved it meanwhile: theirs stands.
        let _ = self
            .spread
            .compare_exchange(spread, wanted, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Client number `client` (or the next in turn). One that is not open yet is opened in the background
    /// while the call goes to an open one, so a new store pays for one connection
    /// before its first answer, not one per client (and calls keep their order).
    async fn pick(
        self: &Arc<Self>,
        client: Option<usize>,
    ) -> Result<(&Slot, u64, Arc<Session>), StoreError> {
        let count = self.slots.len();
        let index = match client {
            Some(client) => client % count,
            None => self.next.fetch_add(1, Ordering::Relaxed) % count,
        };
        let open = |i: usize| {
            let slot = &self.slots[i % count];
            let current = slot.current.read();
            current.as_ref().map(|(g, s)| (slot, *g, s.clone()))
        };
        if let Some(found) = open(index) {
            return Ok(found);
        }
        if let Some(found) = (1..count).find_map(|step| open(index + step)) {
            let pool = self.clone();
            crate::background::handle().spawn(async move {
                let slot = &pool.slots[index];
                // Someone else is opening it already: nothing to do.
                if let Ok(_guard) = slot.connecting.try_lock() {
                    drop(_guard);
                    let _ = pool.session(slot).await;
                }
            });
            return Ok(found);
        }
        let slot = &self.slots[index];
        let (generation, session) = self.session(slot).await?;
        Ok((slot, generation, session))
    }

    async fn session(&self, slot: &Slot) -> Result<(u64, Arc<Session>), StoreError> {
        if let Some((generation, session)) = slot.current.read().as_ref() {
            return Ok((*generation, session.clone()));
        }
        let _connecting = slot.connecting.lock().await;
        if let Some((generation, session)) = slot.current.read().as_ref() {
            return Ok((*generation, session.clone()));
        }
        let session = match tokio::time::timeout(CONNECT_TIMEOUT, self.open()).await {
            Ok(session) => Arc::new(session?),
            Err(_) => return Err(StoreError::Timeout(CONNECT_TIMEOUT)),
        };
        let generation = slot.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *slot.current.write() = Some((generation, session.clone()));
        Ok((generation, session))
    }

    /// Opens a client: connects, makes commits asynchronous for this session, applies
    /// the migration once per store when `auto_create`, prepares the statements.
    async fn open(&self) -> Result<Session, StoreError> {
        let client = self.database.connect().await?;
        let names = &self.names;
        // A decision's commit does not wait for its WAL flush: a crash of the database
        // server may forget the last few hundred milliseconds of decisions (never
        // corrupts anything), and each decision costs no disk flush.
        client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(|e| map_error(&e, names))?;
        if self.auto_create {
            self.migrated
                .get_or_try_init(|| apply_migration(&client, names, false))
                .await?;
        }
        let prepare = |sql: String| {
            let client = &client;
            async move { client.prepare(&sql).await }
        };
        // A function that reads "now" takes the pinned time as its last parameter
        // when the clock is pinned (tests).
        let pinned = names.clock.pinned_micros().is_some();
        let call = |function: &str, params: usize, reads_clock: bool| {
            let params = params + usize::from(reads_clock && pinned);
            let list: Vec<String> = (1..=params).map(|n| format!("${n}")).collect();
            format!("SELECT {function}({})", list.join(", "))
        };
        let prepared = futures::try_join!(
            prepare(call(&names.acquire, 14, true)),
            prepare(call(&names.refund, 11, true)),
            prepare(call(&names.renew, 4, true)),
            prepare(call(&names.release, 5, false)),
            prepare(call(&names.reset, 2, false)),
            prepare("SELECT pg_notify($1, $2)".to_owned()),
            prepare(call(&names.cleanup, 1, false)),
        );
        let (acquire, refund, renew, release, reset, notify, cleanup) = match prepared {
            Ok(statements) => statements,
            Err(error) => return Err(schema_error(&client, names, &error).await),
        };
        Ok(Session {
            client,
            statements: Statements {
                acquire,
                refund,
                renew,
                release,
                reset,
                notify,
                cleanup,
            },
        })
    }
}

/// Brings the schema up to date, unless it is already: the version in the table's
/// comment is read before and again under the migration lock, so of many processes
/// starting at once only the first runs the migration and the others wait for it
/// and then skip it (never taking the table lock that `CREATE INDEX` would).
pub(crate) async fn apply_migration(
    client: &Client,
    names: &Names,
    unlogged: bool,
) -> Result<(), StoreError> {
    let map = |e: tokio_postgres::Error| map_error(&e, names);
    let current = || async {
        // Read from the catalog tables with the statement's snapshot: name look-ups
        // such as to_regclass() go through caches that may not have seen another
        // session's commit yet (no relation lock is taken that would refresh them).
        let rows = client
            .query(
                "SELECT d.description FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_catalog.pg_description d ON d.objoid = c.oid \
                  AND d.classoid = 'pg_catalog.pg_class'::regclass AND d.objsubid = 0 \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&names.schema_name, &names.table_name],
            )
            .await
            .map_err(map)?;
        let version = names.version();
        Ok::<_, StoreError>(rows.iter().any(|row| {
            row.try_get::<_, &str>(0)
                .is_ok_and(|description| description == version)
        }))
    };
    if current().await? {
        return Ok(());
    }
    client.batch_execute("BEGIN").await.map_err(map)?;
    let applied = async {
        client.batch_execute(&names.lock_sql()).await.map_err(map)?;
        if !current().await? {
            client
                .batch_execute(&names.migration_body(unlogged))
                .await
                .map_err(map)?;
        }
        client.batch_execute("COMMIT").await.map_err(map)
    }
    .await;
    if applied.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
        // The migration refuses a table of another shape under the store's name.
        if let Some(error) = schema::rate_sync_table_error(client, names, false).await {
            return Err(error);
        }
    }
    applied
}

/// The error of a statement that could not be prepared: when the store's objects are
/// missing and rate-sync's table is the cause, the error that says so by name.
async fn schema_error(client: &Client, names: &Names, error: &tokio_postgres::Error) -> StoreError {
    if error.code().is_some_and(schema::is_missing_object) {
        if let Some(error) = schema::rate_sync_table_error(client, names, true).await {
            return error;
        }
    }
    map_error(error, names)
}

/// Jump consistent hash: the bucket of `key` among `buckets` (at least 1). Going
/// from n to n + 1 buckets moves only the keys that land in the new one.
fn jump_hash(mut key: u64, buckets: usize) -> usize {
    let (mut bucket, mut next) = (0i64, 0i64);
    while next < buckets as i64 {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket as usize
}

fn discard(slot: &Slot, generation: u64) {
    let mut current = slot.current.write();
    if current.as_ref().is_some_and(|(g, _)| *g == generation) {
        *current = None;
    }
}

/// Whether the client is unusable after `error`: its socket is gone, or the server
/// is shutting down or has lost it (a restart).
fn must_reconnect(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        // Class 08 (connection exception) and 57 (operator intervention: shutdown,
        // admin termination, crash recovery).
        Some(code) => code.code().starts_with("08") || code.code().starts_with("57"),
        // Not an error the server sent: I/O, protocol.
        None => true,
    }
}

/// A [`StoreError`] that says what went wrong and, for a missing table, how to fix it.
pub(crate) fn map_error(error: &tokio_postgres::Error, names: &Names) -> StoreError {
    let Some(db) = error.as_db_error() else {
        return StoreError::Connection(chain(error));
    };
    let code = db.code();
    if schema::is_missing_object(code) {
        return StoreError::Backend(format!(
            "the ratesync table {} (or its functions) does not exist: run `ratesync migrate` \
             (or apply the SQL of `ratesync migrate --print`), or set `auto_create = true` \
             on the store ({})",
            names.table,
            db.message()
        ));
    }
    if code.code().starts_with("08") || code.code().starts_with("57") {
        return StoreError::Connection(db.message().to_owned());
    }
    StoreError::Backend(format!("{} ({})", db.message(), code.code()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::postgres::schema::SqlClock;

    fn pool(clients: u32) -> Pool {
        let config = PostgresConfig {
            url: crate::config::secret::SecretUrl::new("postgresql://x@h/db".to_owned()),
            schema_name: "public".to_owned(),
            table_name: "t".to_owned(),
            auto_create: false,
            pool_min_size: None,
            pool_max_size: Some(clients),
            timing_margin_ms: None,
        };
        let names = Names::new(&config, SqlClock::Server).unwrap();
        Pool::new(&config, names).unwrap()
    }

    /// A key stays on its client when clients are added, unless it moves to the new
    /// one; every key lands on a client in use.
    #[test]
    fn a_wider_spread_moves_keys_only_to_the_new_client() {
        for key in (0..2000u64).map(|k| k.wrapping_mul(0x9e37_79b9_7f4a_7c15)) {
            assert_eq!(jump_hash(key, 1), 0);
            for buckets in 1..8 {
                let (before, after) = (jump_hash(key, buckets), jump_hash(key, buckets + 1));
                assert!(before < buckets && after <= buckets);
                assert!(
                    after == before || after == buckets,
                    "{key}: {before} -> {after}"
                );
            }
        }
    }

    /// Keys spread over one more client each time the load passes what those in use
    /// carry, never over more than the pool has, and come back as the load falls.
    #[test]
    fn the_spread_follows_the_load() {
        let pool = pool(4);
        let spread = |pool: &Pool| pool.spread.load(Ordering::Relaxed);
        let mut loads: Vec<Load<'_>> = (0..CALLS_PER_CLIENT).map(|_| pool.count_load()).collect();
        assert_eq!(
            spread(&pool),
            1,
            "one client carries {CALLS_PER_CLIENT} calls"
        );
        loads.push(pool.count_load());
        assert_eq!(spread(&pool), 2);
        loads.extend((0..10 * CALLS_PER_CLIENT).map(|_| pool.count_load()));
        assert_eq!(spread(&pool), 4, "at most the pool's clients");
        assert!((0..1000).all(|route| pool.client_of(route) < 4));
        // Down to a client's load: not yet under half of what two carry.
        loads.truncate(CALLS_PER_CLIENT);
        assert_eq!(spread(&pool), 3);
        loads.clear();
        assert_eq!(spread(&pool), 1);
        assert_eq!(pool.client_of(12345), 0);
    }
}
