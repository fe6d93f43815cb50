//! `ratesync migrate` (PostgreSQL stores): what it prints, with secrets masked, and its
//! errors. Printing needs no database; applying is covered by the engine's tests.

#![cfg(feature = "postgres")]

use std::process::Command;

use assert_cmd::prelude::*;
use predicates::prelude::*;
use tempfile::TempDir;

const CONFIG: &str = r#"
[stores.db]
engine = "postgres"
url = "postgresql://app:hunter2@127.0.0.1:1/app"
schema_name = "limits"
table_name = "api_state"

[stores.mem]
engine = "memory"

[limiters.api]
store = "db"
rate_per_second = 10
"#;

fn ratesync(text: &str) -> (TempDir, Command) {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("rate-sync.toml"), text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratesync"));
    cmd.current_dir(dir.path()).env_remove("RATE_SYNC_CONFIG");
    (dir, cmd)
}

#[test]
fn migrate_prints_the_sql_of_each_postgres_store() {
    let (_dir, mut cmd) = ratesync(CONFIG);
    cmd.args(["migrate", "--print", "--unlogged"])
        .assert()
        .success()
        .stdout(predicate::str::contains("-- store `db`"))
        .stdout(predicate::str::contains(
            "CREATE SCHEMA IF NOT EXISTS \"limits\";",
        ))
        .stdout(predicate::str::contains(
            "CREATE UNLOGGED TABLE IF NOT EXISTS \"limits\".\"api_state\"",
        ))
        .stdout(predicate::str::contains("pg_advisory_xact_lock"))
        .stdout(predicate::str::contains("COMMIT;"))
        .stdout(predicate::str::contains("hunter2").not());
}

#[test]
fn migrate_without_a_postgres_store_says_so() {
    let (_dir, mut cmd) = ratesync("[stores.mem]\nengine = \"memory\"\n");
    cmd.args(["migrate", "--print"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no PostgreSQL store"));
    let (_dir, mut cmd) = ratesync(CONFIG);
    cmd.args(["migrate", "--print", "--store", "mem"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no PostgreSQL store `mem`"));
}

#[test]
fn migrate_reports_an_unreachable_database() {
    let (_dir, mut cmd) = ratesync(CONFIG);
    cmd.arg("migrate")
        .assert()
        .code(69)
        .stderr(predicate::str::contains("store `db`"))
        .stderr(predicate::str::contains("hunter2").not());
}

#[test]
fn migrate_connects_with_the_tls_settings_of_the_url() {
    // The root certificates are read before connecting: a missing file shows that
    // `migrate` honours `sslmode` and `sslrootcert` as the engine does.
    let text = CONFIG.replace(
        "127.0.0.1:1/app",
        "127.0.0.1:1/app?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    );
    let (_dir, mut cmd) = ratesync(&text);
    cmd.arg("migrate")
        .assert()
        .code(69)
        .stderr(predicate::str::contains(
            "cannot read the root certificates of sslrootcert=/nonexistent/ca.pem",
        ))
        .stderr(predicate::str::contains("hunter2").not());
}
