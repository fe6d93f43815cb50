//! TLS to PostgreSQL, as libpq's `sslmode` in the store URL asks: against a server
//! this file starts with `ssl = on` and a certificate from a private CA made by the test
//! (openssl), whose `pg_hba.conf` lets the user `postgres` in over TLS only
//! (`hostssl`) and the user `plain` in either way. A connection of `postgres` that
//! works has therefore encrypted. Also against the usual server without TLS, where
//! `require` must fail clearly.

#![cfg(feature = "postgres")]

mod support;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use ratesync::engine::postgres::PostgresEngine;
use ratesync::store::Engine;
use ratesync::{AcquireError, Config, LimiterBuilder, Registry, StoreBuilder};
use support::{PostgresServer, TestCertificates};

/// Clients of `postgres` must encrypt; `plain` may not.
const HBA: &str = "\
local all all trust
hostssl all postgres 127.0.0.1/32 trust
host all plain 127.0.0.1/32 trust
";

struct TlsServer {
    server: PostgresServer,
    /// Holds the CA (`ca.pem`) for the tests' `sslrootcert`.
    certificates: TestCertificates,
}

impl TlsServer {
    fn ca(&self) -> PathBuf {
        self.certificates.ca()
    }

    /// `postgresql://USER@HOST:PORT/postgres?QUERY`.
    fn url(&self, user: &str, host: &str, query: &str) -> String {
        let port = self.server.port();
        format!("postgresql://{user}@{host}:{port}/postgres?{query}")
    }
}

/// The TLS server this test process shares.
fn tls_server() -> &'static TlsServer {
    static SHARED: OnceLock<TlsServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        support::require_postgres();
        support::require_binaries(&["openssl"]);
        let certificates = TestCertificates::make();
        let server = PostgresServer::start_with_tls(
            &certificates.server_cert(),
            &certificates.server_key(),
            HBA,
        );
        // Over TLS (psql prefers it, and `postgres` has only `hostssl`).
        let created = server.psql("CREATE ROLE plain LOGIN SUPERUSER");
        assert_eq!(created, "CREATE ROLE", "{}", server.log());
        TlsServer {
            server,
            certificates,
        }
    })
}

fn store(url: &str) -> StoreBuilder {
    StoreBuilder::postgres(url).option("auto_create", true)
}

/// Whether the store answers, or its error.
async fn ping(url: &str) -> Result<(), String> {
    let engine = PostgresEngine::new(&support::postgres_config(store(url))).unwrap();
    engine.ping().await.map_err(|error| error.to_string())
}

#[tokio::test]
async fn verify_full_with_the_ca_decides_over_tls() {
    let tls = tls_server();
    let ca = tls.ca().display().to_string();
    let url = tls.url(
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    );
    let config = Config::builder()
        .store("db", store(&url))
        .limiter(
            "burst",
            LimiterBuilder::token_bucket("db", 0.001)
                .burst(3)
                .fail_closed(true),
        )
        .build()
        .unwrap();
    let registry = Registry::from_config(config).unwrap();
    let limiter = registry.limiter("burst").unwrap();
    for n in 1..=3 {
        limiter
            .key("k")
            .try_acquire()
            .await
            .unwrap_or_else(|e| panic!("call {n} of the burst admitted: {e}"));
    }
    let denied = limiter.key("k").try_acquire().await.unwrap_err();
    assert!(matches!(denied, AcquireError::Denied { .. }), "{denied}");
    // The server's own view: every connection of ratesync is encrypted.
    let seen = tls.server.psql(
        "SELECT bool_and(s.ssl), count(*) > 0 FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'ratesync'",
    );
    assert_eq!(seen, "t|t");
}

#[tokio::test]
async fn require_and_prefer_encrypt_without_the_ca() {
    let tls = tls_server();
    // `postgres` may only come in over TLS: connecting proves encryption.
    for query in ["sslmode=require", "sslmode=prefer", ""] {
        let url = tls.url("postgres", "127.0.0.1", query);
        ping(&url)
            .await
            .unwrap_or_else(|e| panic!("`{query}` connects over TLS: {e}"));
    }
}

#[tokio::test]
async fn verify_full_without_the_ca_is_refused_naming_the_certificate() {
    let tls = tls_server();
    // The system trust store does not hold the test's private CA.
    let url = tls.url("postgres", "127.0.0.1", "sslmode=verify-full");
    let error = ping(&url).await.unwrap_err();
    assert!(
        error.contains("invalid peer certificate") && error.contains("UnknownIssuer"),
        "{error}"
    );
    assert!(error.contains("sslmode=verify-full"), "{error}");
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let tls = tls_server();
    let ca = tls.ca().display().to_string();
    // The socket goes to 127.0.0.1; the name checked is one the certificate lacks.
    let query = |mode: &str| format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}");
    let error = ping(&tls.url("postgres", "db.invalid", &query("verify-full")))
        .await
        .unwrap_err();
    assert!(error.contains("not valid for name"), "{error}");
    ping(&tls.url("postgres", "db.invalid", &query("verify-ca")))
        .await
        .expect("verify-ca accepts a trusted chain for another name");
    // A trusted chain and the right name.
    ping(&tls.url("postgres", "localhost", &query("verify-full")))
        .await
        .expect("verify-full accepts localhost");
}

#[tokio::test]
async fn disable_connects_in_plain_where_the_server_allows_it() {
    let tls = tls_server();
    ping(&tls.url("plain", "127.0.0.1", "sslmode=disable"))
        .await
        .expect("`plain` may connect without TLS");
    let error = ping(&tls.url("postgres", "127.0.0.1", "sslmode=disable"))
        .await
        .unwrap_err();
    assert!(error.contains("no encryption"), "{error}");
}

// Multi-threaded: the release listener connects in the background while the test
// thread blocks in `wait_until`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_and_the_release_listener_use_tls() {
    let tls = tls_server();
    let ca = tls.ca().display().to_string();
    let url = tls.url(
        "postgres",
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}&application_name=ratesync-listener"),
    );
    let config = support::postgres_config(
        StoreBuilder::postgres(&url).option("table_name", "listener_state"),
    );
    ratesync::engine::postgres::migrate(&config, false)
        .await
        .expect("migrate over TLS");
    let registry = Registry::from_config(
        Config::builder()
            .store(
                "db",
                StoreBuilder::postgres(&url).option("table_name", "listener_state"),
            )
            .limiter(
                "slots",
                LimiterBuilder::token_bucket("db", 1000.0)
                    .burst(10)
                    .max_concurrent(1)
                    .fail_closed(true),
            )
            .build()
            .unwrap(),
    )
    .unwrap();
    let permit = registry.limiter("slots").unwrap().try_acquire().await;
    permit.expect("a slot over TLS");
    // The LISTEN connection could only come in over TLS (`hostssl`); wait for it.
    let listening = support::wait_until(Duration::from_secs(10), || {
        tls.server.psql(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'ratesync-listener' AND a.query LIKE 'LISTEN%' \
             AND s.ssl",
        ) == "1"
    });
    assert!(listening, "{}", tls.server.log());
}

#[tokio::test]
async fn require_against_a_server_without_tls_is_a_clear_error() {
    let server = PostgresServer::start();
    let error = ping(&format!("{}?sslmode=require", server.url()))
        .await
        .unwrap_err();
    assert!(error.contains("server does not support TLS"), "{error}");
    // `prefer`, the default, falls back to plain.
    ping(&server.url()).await.expect("prefer connects in plain");
    // As in libpq, `sslmode` does not apply to a unix socket.
    let socket = format!(
        "postgresql:///postgres?host={}&port={}&user=postgres&sslmode=require",
        server.socket_dir().display(),
        server.port()
    );
    ping(&socket)
        .await
        .expect("require is ignored on a unix socket");
}
