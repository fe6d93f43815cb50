//! A PostgreSQL store pointed at a database that holds rate-sync's table, as rate-sync's
//! engine or its documentation creates it: the error names that table, its columns and
//! the way to ratesync's own table, and says that rate-sync's state is not carried
//! over; wherever the error shows (a `fail_closed` limiter's call, the engine's ping
//! that `initialize` and the circuit's probe make, `ratesync migrate`, `auto_create`),
//! and never with the URL's password. Two cases: the store's table has rate-sync's
//! name (both default to `rate_limiter_state`), and the store's table is missing
//! while rate-sync's is there.
//!
//! Runs against a PostgreSQL server this file starts on a free port, one database per
//! test.

#![cfg(feature = "postgres")]

mod support;

use std::sync::OnceLock;

use ratesync::config::PostgresConfig;
use ratesync::engine::postgres::{migrate, PostgresEngine};
use ratesync::store::{Engine, StoreError};
use ratesync::{AcquireError, Config, LimiterBuilder, Registry, StoreBuilder};
use support::{runtime, PostgresServer};

/// Never asked for (the server trusts every local connection): it must not show.
const PASSWORD: &str = "hunter2-secret";

/// What rate-sync's engine runs with `auto_create = True` and its defaults
/// (`src/ratesync/engines/postgres.py`, `_create_table_if_not_exists`, with
/// `{schema}.{table}` = `public.rate_limiter_state`).
const RATE_SYNC_ENGINE_TABLES: &str = "
    CREATE TABLE IF NOT EXISTS public.rate_limiter_state (
        group_id VARCHAR(255) PRIMARY KEY,
        last_acquisition_at TIMESTAMPTZ NOT NULL,
        concurrent_count INTEGER NOT NULL DEFAULT 0,
        version BIGINT NOT NULL DEFAULT 1
    );

    CREATE INDEX IF NOT EXISTS idx_rate_limiter_state_group
    ON public.rate_limiter_state(group_id);

    CREATE TABLE IF NOT EXISTS public.rate_limiter_state_window (
        id BIGSERIAL PRIMARY KEY,
        group_id VARCHAR(255) NOT NULL,
        timestamp_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    );

    CREATE INDEX IF NOT EXISTS idx_rate_limiter_state_window_group_ts
    ON public.rate_limiter_state_window(group_id, timestamp_at);
";

/// What rate-sync's documentation tells a production user to run
/// (`docs/engines/postgres.md`, "Manual Table Setup"; `docs/setup/postgres-setup.md`).
const RATE_SYNC_DOCUMENTED_TABLE: &str = "
    CREATE TABLE rate_limiter_state (
        group_id VARCHAR(255) PRIMARY KEY,
        last_acquisition_at TIMESTAMPTZ NOT NULL,
        version INTEGER NOT NULL DEFAULT 1,
        current_concurrent INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
        updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
    );

    CREATE INDEX idx_rate_limiter_state_updated
        ON rate_limiter_state(updated_at);

    -- Grant minimal permissions
    GRANT SELECT, INSERT, UPDATE ON rate_limiter_state TO myapp_user;
";

/// The server this test process shares.
fn server() -> &'static PostgresServer {
    static SHARED: OnceLock<PostgresServer> = OnceLock::new();
    SHARED.get_or_init(PostgresServer::start)
}

/// A new database `name` holding what `sql` creates; its URL, with a password.
async fn database(server: &PostgresServer, name: &str, sql: &str) -> String {
    let created = server.psql(&format!("CREATE DATABASE {name}"));
    assert_eq!(created, "CREATE DATABASE", "{created}");
    let url = format!(
        "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{name}",
        server.port()
    );
    let client = client(&url).await;
    client.batch_execute(sql).await.unwrap();
    url
}

async fn client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A store on `url` (`auto_create` off unless set in `options`), with a
/// `fail_closed` limiter `closed` and a fail-open limiter `open`.
fn setup(url: &str, options: &[(&str, toml::Value)]) -> (Registry, PostgresConfig) {
    let mut store = StoreBuilder::postgres(url);
    for (key, value) in options {
        store = store.option(key, value.clone());
    }
    let postgres = support::postgres_config(store.clone());
    let config = Config::builder()
        .store("db", store)
        .limiter(
            "closed",
            LimiterBuilder::token_bucket("db", 10.0).fail_closed(true),
        )
        .limiter("open", LimiterBuilder::token_bucket("db", 10.0))
        .build()
        .unwrap();
    (Registry::from_config(config).unwrap(), postgres)
}

/// The error of a `fail_closed` limiter's first call, and of the engine's ping.
async fn errors(registry: &Registry, config: &PostgresConfig) -> (String, String) {
    let error = registry
        .limiter("closed")
        .unwrap()
        .state()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            AcquireError::StoreUnavailable {
                source: StoreError::Backend(_),
                ..
            }
        ),
        "{error}"
    );
    let ping = PostgresEngine::new(config)
        .unwrap()
        .ping()
        .await
        .unwrap_err();
    (error.to_string(), ping.to_string())
}

fn assert_says(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
    assert!(!message.contains(PASSWORD), "the password shows: {message}");
}

/// The store's table is rate-sync's (the default name of both), as rate-sync's engine
/// created it: named with its columns, wherever the schema is checked or migrated,
/// and left as it was.
#[test]
fn the_store_s_table_is_rate_sync_s() {
    let server = server();
    runtime().block_on(async {
        let url = database(server, "rate_sync_engine", RATE_SYNC_ENGINE_TABLES).await;
        client(&url)
            .await
            .batch_execute(
                "INSERT INTO rate_limiter_state (group_id, last_acquisition_at) \
                 VALUES ('api', now())",
            )
            .await
            .unwrap();
        let (registry, config) = setup(&url, &[]);
        assert_eq!(config.table_name, "rate_limiter_state");
        let said = [
            "table \"public\".\"rate_limiter_state\" was not created by ratesync: it is \
             rate-sync's table (columns group_id, last_acquisition_at, concurrent_count, \
             version)",
            "both default to \"rate_limiter_state\"",
            "`table_name`",
            "`ratesync migrate`",
            "`auto_create = true`",
            "rate-sync's state is not carried over",
        ];
        let (call, ping) = errors(&registry, &config).await;
        assert_says(&call, &said);
        assert!(
            call.starts_with("limiter `closed`: store `db` unavailable"),
            "{call}"
        );
        assert_says(&ping, &said);
        // A fail-open limiter admits (and logs the same error).
        registry.limiter("open").unwrap().acquire().await.unwrap();

        // `ratesync migrate` and `auto_create` refuse it by the same words.
        let migrated = migrate(&config, false).await.unwrap_err().to_string();
        assert_says(&migrated, &said);
        let (registry, config) = setup(&url, &[("auto_create", true.into())]);
        let (call, ping) = errors(&registry, &config).await;
        assert_says(&call, &said);
        assert_says(&ping, &said);

        // rate-sync's table is as it was: same columns, same row, no comment.
        let row = client(&url)
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM rate_limiter_state), \
                        (SELECT count(*) FROM pg_attribute \
                          WHERE attrelid = 'rate_limiter_state'::regclass AND attnum > 0), \
                        obj_description('rate_limiter_state'::regclass, 'pg_class') IS NULL",
                &[],
            )
            .await
            .unwrap();
        assert_eq!((row.get(0), row.get(1), row.get(2)), (1i64, 4i64, true));
    });
}

/// The store names a table of its own that is missing, and rate-sync's table (as its
/// documentation creates it) is in the database: both named, and `ratesync migrate`
/// is the way out; after it the store works beside rate-sync's table.
#[test]
fn the_store_s_table_is_missing_beside_rate_sync_s() {
    let server = server();
    let role = server.psql("CREATE ROLE myapp_user LOGIN");
    assert_eq!(role, "CREATE ROLE", "{role}");
    runtime().block_on(async {
        let url = database(server, "rate_sync_documented", RATE_SYNC_DOCUMENTED_TABLE).await;
        let (registry, config) = setup(&url, &[("table_name", "ratesync_state".into())]);
        let said = [
            "table \"public\".\"ratesync_state\" does not exist; \
             \"public\".\"rate_limiter_state\" is rate-sync's table (columns group_id, \
             last_acquisition_at, version, current_concurrent, created_at, updated_at), \
             which ratesync does not read",
            "`ratesync migrate`",
            "`auto_create = true`",
            "rate-sync's state is not carried over",
        ];
        let (call, ping) = errors(&registry, &config).await;
        assert_says(&call, &said);
        assert_says(&ping, &said);
        registry.limiter("open").unwrap().acquire().await.unwrap();

        migrate(&config, false).await.unwrap();
        let (registry, _) = setup(&url, &[("table_name", "ratesync_state".into())]);
        registry.limiter("closed").unwrap().acquire().await.unwrap();
        let row = client(&url)
            .await
            .query_one(
                "SELECT (SELECT count(*) FROM ratesync_state), \
                        (SELECT count(*) FROM rate_limiter_state)",
                &[],
            )
            .await
            .unwrap();
        assert_eq!((row.get(0), row.get(1)), (1i64, 0i64));
    });
}
