//! The PostgreSQL engine's state for sliding and fixed windows, where the reference
//! histories of `tests/postgres_sql.rs` cannot look: the runs a busy key's row holds
//! stay within the rule's precision (read from the table itself) while every decision
//! still equals the reference; a refused attempt drops the runs that have left the
//! window, as `algorithm::decide` does, so a later refund finds the same run; and a
//! table of the schema before fixed windows is upgraded in place, by `auto_create`
//! and by the SQL `ratesync migrate --print` shows, keeping the state it holds.
//!
//! Runs against a PostgreSQL server this file starts on a free port.

#![cfg(feature = "postgres")]

mod reference;
mod support;

use std::sync::{Arc, OnceLock};

use ratesync::algorithm::{Policy, Rule};
use ratesync::config::PostgresConfig;
use ratesync::engine::postgres::{migration_sql, PostgresEngine};
use ratesync::store::{Engine, EngineLimiter, LimiterSpec, ReleaseSignal};
use ratesync::testing::PinnedClock;
use ratesync::{DeniedBy, FixedWindow, SlidingWindow, StoreBuilder};
use reference::{bounded_window, sliding_window, Op, Pair, PinnedStore, EPOCH_US};
use support::{runtime, PostgresServer};

/// The server this test process shares.
fn server() -> &'static PostgresServer {
    static SHARED: OnceLock<PostgresServer> = OnceLock::new();
    SHARED.get_or_init(PostgresServer::start)
}

fn config(server: &PostgresServer, schema: &str, table: &str) -> PostgresConfig {
    let store = StoreBuilder::postgres(&server.url())
        .option("auto_create", true)
        .option("schema_name", schema)
        .option("table_name", table);
    support::postgres_config(store)
}

/// An engine on `public.<table>` whose functions read the time the test pins.
fn pinned(server: &PostgresServer, table: &str) -> PinnedStore {
    let clock = PinnedClock::new();
    let config = config(server, "public", table);
    let engine = PostgresEngine::with_pinned_clock(&config, clock.clone()).unwrap();
    PinnedStore {
        engine: Arc::new(engine),
        set_now: Box::new(move |t_us| clock.set_micros(t_us)),
        unit_ns: 1000,
    }
}

fn limiter(engine: &PostgresEngine, id: &str, rule: Rule) -> Arc<dyn EngineLimiter> {
    engine
        .limiter(LimiterSpec {
            id: id.into(),
            policy: Policy {
                rule: Some(rule),
                concurrency: None,
            },
            releases: ReleaseSignal::detached(),
        })
        .unwrap()
}

/// A key admitted at a new microsecond every millisecond for 2.5 windows: its row
/// reaches the default precision of 100 runs and never holds more, while every
/// decision and receipt equals the reference's.
#[test]
fn a_busy_log_stays_within_its_precision() {
    let server = server();
    let rt = runtime();
    let store = pinned(server, "ratesync_busy");
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        let policy = Policy {
            rule: Some(sliding_window(1_000_000, 1_000_000)),
            concurrency: None,
        };
        let mut pair = Pair::new(&store, policy);
        let mut most = 0i32;
        for step in 0..2_500u64 {
            let op = Op::Acquire {
                cost: 1 + (step % 3) as u32,
                lease: false,
            };
            pair.step(EPOCH_US + step * 1_000, &op).await.unwrap();
            let row = client
                .query_one(
                    "SELECT max(cardinality(log_at)), max(cardinality(log_n)) \
                     FROM public.ratesync_busy",
                    &[],
                )
                .await
                .unwrap();
            let (at, n): (i32, i32) = (row.get(0), row.get(1));
            assert_eq!(at, n, "one count per run");
            assert!(at <= 100, "{at} runs after {step} steps");
            most = most.max(at);
        }
        assert_eq!(most, 100, "the log reached its precision");
    });
}

/// A refused attempt drops the runs that have left the window (as the reference's
/// `decide` does), so that the refund of an admission whose run has gone finds the
/// grid run it would have been merged into, as in the reference.
#[test]
fn a_refusal_drops_what_left_the_window_before_a_refund() {
    let rt = runtime();
    let store = pinned(server(), "ratesync_refusals");
    let policy = Policy {
        // Grid of 500 ms; EPOCH_US is a multiple of it.
        rule: Some(bounded_window(3, 1_000_000, 4)),
        concurrency: None,
    };
    let acquire = |cost| Op::Acquire { cost, lease: false };
    rt.block_on(async {
        let mut pair = Pair::new(&store, policy);
        for (t, op) in [
            (100_000, acquire(1)),
            // Exactly on the grid: the run the first admission would merge into.
            (500_000, acquire(2)),
            // The first run has left the window; 2 + 2 > 3 is refused.
            (1_100_000, acquire(2)),
            // Its run is gone: the refund takes from the grid run at 500 ms.
            (1_100_000, Op::Refund(0)),
            (1_100_000, Op::Peek { cost: 2 }),
            (1_100_000, acquire(2)),
        ] {
            pair.step(EPOCH_US + t, &op).await.unwrap();
        }
    });
}

/// The table and functions of the schema before fixed windows (no `win_start` or
/// `win_used`; functions without the rules' grid, precision or phase), with a sliding
/// window's state in it: the key that used its limit on the old schema is refused on
/// the upgraded one.
fn create_previous_schema(server: &PostgresServer, schema: &str) {
    let output = server.psql(&format!(
        r#"
        CREATE SCHEMA "{schema}";
        CREATE TABLE "{schema}".state (
            limiter    bytea     NOT NULL,
            key        bytea     NOT NULL,
            tat        bigint    NOT NULL DEFAULT 0,
            log_at     bigint[]  NOT NULL DEFAULT '{{}}',
            log_n      bigint[]  NOT NULL DEFAULT '{{}}',
            lease_id   bigint[]  NOT NULL DEFAULT '{{}}',
            lease_exp  bigint[]  NOT NULL DEFAULT '{{}}',
            expires_at bigint    NOT NULL,
            PRIMARY KEY (limiter, key)
        ) WITH (fillfactor = 70);
        CREATE INDEX state_expiry ON "{schema}".state (expires_at);
        CREATE FUNCTION "{schema}".state_acquire(bytea[], bytea[], integer[], integer[],
            text[], bigint[], bigint[], bigint[], bigint[], bigint[], bigint[], boolean)
            RETURNS bigint[] LANGUAGE sql AS 'SELECT NULL::bigint[]';
        CREATE FUNCTION "{schema}".state_refund(bytea, bytea, text, bigint, bigint, bigint,
            bigint, bigint, text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
        INSERT INTO "{schema}".state (limiter, key, log_at, log_n, expires_at)
        SELECT 'carried'::bytea, 'k'::bytea, ARRAY[now_us], ARRAY[2::bigint],
               now_us + 120000000
          FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint) AS t(now_us);
        COMMENT ON TABLE "{schema}".state IS 'ratesync schema (before fixed windows)';
        "#
    ));
    assert!(!output.contains("ERROR"), "{output}");
}

/// After the upgrade: the new columns and only the new functions are there, the old
/// state still decides, and fixed windows count in the new columns.
async fn check_upgraded(server: &PostgresServer, schema: &str, engine: &PostgresEngine) {
    // The first connection migrates (with `auto_create`).
    engine.ping().await.unwrap();
    let columns = server.psql(&format!(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
         WHERE attrelid = '\"{schema}\".state'::regclass AND attnum > 0 AND NOT attisdropped"
    ));
    assert_eq!(
        columns,
        "limiter,key,tat,log_at,log_n,lease_id,lease_exp,expires_at,win_start,win_used"
    );
    let functions = server.psql(&format!(
        "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         WHERE n.nspname = '{schema}' AND p.proname IN ('state_acquire', 'state_refund')"
    ));
    assert_eq!(functions, "2", "the old overloads are gone");

    let window = SlidingWindow::new(2, 60.0).unwrap();
    let carried = limiter(engine, "carried", Rule::SlidingWindow(window));
    let (d, _) = carried.acquire("k", 1, None).await.unwrap();
    assert_eq!(
        d.denied_by(),
        Some(DeniedBy::Rate),
        "the old log still counts"
    );
    // A peek of a key never seen builds its row field by field.
    assert!(carried.peek("new", 2).await.unwrap().allowed());

    let fixed = FixedWindow::new(2, 1e6).unwrap();
    let fixed = limiter(engine, "fixed", Rule::FixedWindow(fixed));
    let (first, receipt) = fixed.acquire("k", 1, None).await.unwrap();
    assert!(first.allowed() && first.remaining() == 1);
    assert!(fixed.acquire("k", 1, None).await.unwrap().0.allowed());
    assert!(!fixed.acquire("k", 1, None).await.unwrap().0.allowed());
    // A settle of the first admission gives back in its own window.
    fixed.refund("k", 1, receipt, None).await.unwrap();
    assert!(fixed.acquire("k", 1, None).await.unwrap().0.allowed());
    let used = server.psql(&format!(
        "SELECT win_used FROM \"{schema}\".state WHERE limiter = 'fixed'::bytea"
    ));
    assert_eq!(used, "2");
}

#[test]
fn auto_create_upgrades_a_table_of_the_previous_schema() {
    let server = server();
    create_previous_schema(server, "upgraded_auto");
    runtime().block_on(async {
        let engine = PostgresEngine::new(&config(server, "upgraded_auto", "state")).unwrap();
        check_upgraded(server, "upgraded_auto", &engine).await;
    });
}

#[test]
fn the_printed_migration_upgrades_a_table_of_the_previous_schema() {
    let server = server();
    create_previous_schema(server, "upgraded_by_hand");
    let mut config = config(server, "upgraded_by_hand", "state");
    config.auto_create = false;
    let output = server.psql(&migration_sql(&config, false).unwrap());
    assert!(!output.contains("ERROR"), "{output}");
    // Applied twice, as a DBA might: nothing changes.
    let output = server.psql(&migration_sql(&config, false).unwrap());
    assert!(!output.contains("ERROR"), "{output}");
    runtime().block_on(async {
        let engine = PostgresEngine::new(&config).unwrap();
        check_upgraded(server, "upgraded_by_hand", &engine).await;
    });
}
