//! The `ratesync` binary end to end: exit codes, messages, JSON shapes, and the
//! limits `bench` observes. Each invocation is a fresh process, so memory stores
//! start fresh every time: refusals (exit 75) are covered by unit tests instead.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use assert_cmd::prelude::*;
use predicates::prelude::*;
use serde_json::Value;
use tempfile::TempDir;

const VALID: &str = r#"
[stores.local]
engine = "memory"

[stores.cache]
engine = "redis"
url = "redis://app:hunter2@127.0.0.1:1/0"

[limiters.tb]
store = "local"
rate_per_second = 200.0
burst = 10

[limiters.sw]
store = "local"
algorithm = "sliding_window"
limit = 50
window_seconds = 1.0

[limiters.remote]
store = "cache"
rate_per_second = 1
max_concurrent = 2
"#;

/// A file as rate-sync users write it: env defaults, no burst, pool settings.
const RATE_SYNC_STYLE: &str = r#"
[stores.main]
engine = "redis"
url = "${RATESYNC_TEST_UNSET_URL:-redis://localhost:6379/0}"
pool_min_size = 1
pool_max_size = 10
timing_margin_ms = 10.0

[stores.db]
engine = "postgres"
url = "postgresql://user:secret@localhost:5432/app"
table_name = "rate_limiter_state"

[limiters.payments]
store = "main"
rate_per_second = 1.0
max_concurrent = 5
timeout = 30.0

[limiters.login]
store = "db"
algorithm = "sliding_window"
limit = 5
window_seconds = 300
"#;

/// Fixed windows (a daily quota at an offset, epoch-aligned seconds) and a sliding
/// window of a set precision, all in memory.
const WINDOWS: &str = r#"
[stores.local]
engine = "memory"

[limiters.daily]
store = "local"
algorithm = "fixed_window"
limit = 3
period = "day"
utc_offset = "+05:30"

[limiters.second]
store = "local"
algorithm = "fixed_window"
limit = 50
window_seconds = 1

[limiters.precise]
store = "local"
algorithm = "sliding_window"
limit = 50
window_seconds = 1
precision = 20

[limiters.llm]
store = "local"
algorithm = "fixed_window"
limit = 50
period = "day"
"#;

/// A temporary directory holding `rate-sync.toml` with `text`.
fn dir_with(text: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("rate-sync.toml"), text).unwrap();
    dir
}

/// `ratesync` run in `dir`, with no configuration from the environment.
fn ratesync(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ratesync"));
    // RUST_LOG would add the core's logs to stderr.
    cmd.current_dir(dir)
        .env_remove("RATE_SYNC_CONFIG")
        .env_remove("RUST_LOG");
    cmd
}

fn json_of(cmd: &mut Command) -> Value {
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("stdout is one JSON value")
}

#[test]
fn check_accepts_a_valid_file_and_masks_secrets() {
    let dir = dir_with(VALID);
    ratesync(dir.path())
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("valid, 2 store(s), 3 limiter(s)"))
        .stdout(predicate::str::contains("sliding_window"))
        .stdout(predicate::str::contains("app:***@127.0.0.1:1"))
        .stdout(predicate::str::contains("hunter2").not());
}

#[test]
fn check_describes_fixed_windows_and_precision() {
    let dir = dir_with(WINDOWS);
    ratesync(dir.path())
        .arg("check")
        .assert()
        .success()
        .stdout(predicate::str::contains("fixed_window"))
        // The next midnight in India, on its calendar.
        .stdout(predicate::str::contains("3 per day (UTC+05:30), resets at"))
        .stdout(predicate::str::contains(" 00:00:00 +05:30"))
        .stdout(predicate::str::contains("50 per 1 s, resets at"))
        .stdout(predicate::str::contains("50 per 1 s, precision 20"))
        .stdout(predicate::str::contains("50 per day (UTC), resets at"));
}

#[test]
fn check_accepts_files_written_for_rate_sync() {
    let dir = dir_with(RATE_SYNC_STYLE);
    ratesync(dir.path())
        .args(["check", "--config", "rate-sync.toml"])
        .assert()
        .success()
        .stdout(predicate::str::contains("payments"))
        .stdout(predicate::str::contains("secret").not());
}

#[test]
fn check_names_file_line_and_path_of_each_error() {
    let dir = dir_with("[stores.local]\nengine = \"memory\"\n\n[limiters.api]\nstore = \"local\"\nrate_per_secnd = 10\n");
    ratesync(dir.path())
        .arg("check")
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "rate-sync.toml:6: limiters.api.rate_per_secnd",
        ))
        .stderr(predicate::str::starts_with("error: "));
}

#[test]
fn check_without_a_file_says_where_it_looked() {
    let dir = TempDir::new().unwrap();
    ratesync(dir.path())
        .arg("check")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("RATE_SYNC_CONFIG"))
        .stderr(predicate::str::contains("./config/rate-sync.toml"));
    ratesync(dir.path())
        .args(["check", "--config", "missing.toml"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("missing.toml"));
}

#[test]
fn check_never_panics_on_hostile_input() {
    let deep = format!("a = {}", "[".repeat(50_000));
    let hostile: Vec<Vec<u8>> = vec![
        b"\x00\xff\xfe[[[".to_vec(),
        deep.into_bytes(),
        b"[stores.s]\nengine = \"memory\"\n[limiters.l]\nstore = \"s\"\nrate_per_second = nan\n".to_vec(),
        b"[stores.s]\nengine = \"memory\"\n[limiters.l]\nstore = \"s\"\nrate_per_second = 1e308\nburst = 4294967296\n".to_vec(),
        b"[stores.s]\nengine = \"memory\"\n[limiters.l]\nstore = \"s\"\nalgorithm = \"sliding_window\"\nlimit = -1\nwindow_seconds = inf\n".to_vec(),
        b"[stores.\"${\"]\nengine = \"${UNSET_RATESYNC_VAR}\"\n".to_vec(),
        b"[limiters.l]\nstore = \"nowhere\"\ntimeout = -5\n".to_vec(),
        b"stores = 3\nlimiters = [1, 2]\n".to_vec(),
        b"[stores.s]\nengine = \"redis\"\nurl = \"::::\"\n".to_vec(),
    ];
    for input in hostile {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("rate-sync.toml"), &input).unwrap();
        let output = ratesync(dir.path()).arg("check").output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{input:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.lines().all(|l| l.starts_with("error: ")), "{stderr}");
    }
}

#[test]
fn acquire_admits_and_reports_configuration_errors() {
    let dir = dir_with(VALID);
    ratesync(dir.path())
        .args(["acquire", "tb"])
        .assert()
        .success();
    ratesync(dir.path())
        .args([
            "acquire",
            "tb",
            "--key",
            "user-1",
            "--cost",
            "10",
            "--timeout",
            "0",
        ])
        .assert()
        .success();
    // Cost above the burst could never be admitted: a configuration error, not 75.
    ratesync(dir.path())
        .args(["acquire", "tb", "--cost", "11"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("exceeds"));
    ratesync(dir.path())
        .args(["acquire", "nope"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("configured: tb, sw, remote"));
}

#[cfg(unix)]
#[test]
fn run_exits_with_the_commands_code() {
    let dir = dir_with(VALID);
    ratesync(dir.path())
        .args(["run", "tb", "--", "sh", "-c", "exit 7"])
        .assert()
        .code(7);
    ratesync(dir.path())
        .args(["run", "tb", "--", "sh", "-c", "kill -TERM $$"])
        .assert()
        .code(128 + 15);
    ratesync(dir.path())
        .args(["run", "tb", "--", "./no-such-command"])
        .assert()
        .code(127);
}

#[test]
fn status_json_has_the_documented_keys() {
    let dir = dir_with(VALID);
    let one = json_of(ratesync(dir.path()).args(["status", "tb", "--json", "--key", "k"]));
    for key in [
        "allowed",
        "limit",
        "remaining",
        "retry_after_s",
        "reset_after_s",
        "shadow",
    ] {
        assert!(one.get(key).is_some(), "missing {key} in {one}");
    }
    assert_eq!(one["limit"], 10);
    assert_eq!(one["shadow"], false);
    // All limiters: an array of those whose store answers; the redis one (nothing
    // listens on port 1) is named in a note, without its password, and the exit code
    // says a store was unavailable.
    let output = ratesync(dir.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(69));
    let all: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["limiter"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tb", "sw"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("remote"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[test]
fn status_describes_fixed_windows() {
    let dir = dir_with(WINDOWS);
    let daily = json_of(ratesync(dir.path()).args(["status", "daily", "--json"]));
    assert_eq!(daily["algorithm"], "fixed_window");
    assert_eq!(daily["rule"], "3 per day (UTC+05:30)");
    assert_eq!(
        (daily["limit"].as_u64(), daily["remaining"].as_u64()),
        (Some(3), Some(3))
    );
    let precise = json_of(ratesync(dir.path()).args(["status", "precise", "--json"]));
    assert_eq!(precise["rule"], "50 per 1 s, precision 20");
    ratesync(dir.path())
        .args(["status", "daily"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 per day (UTC+05:30), resets at"));
}

#[test]
fn reset_succeeds() {
    let dir = dir_with(VALID);
    ratesync(dir.path())
        .args(["reset", "tb", "--key", "k"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reset `tb` (key `k`)"));
}

fn bench(dir: &Path, limiter: &str, duration: &str) -> Value {
    json_of(ratesync(dir).args([
        "bench",
        "--limiter",
        limiter,
        "--mode",
        "try",
        "--tasks",
        "16",
        "--duration",
        duration,
        "--json",
    ]))
}

#[test]
fn bench_token_bucket_admits_burst_plus_rate_times_duration() {
    let dir = dir_with(VALID);
    let report = bench(dir.path(), "tb", "2");
    let admitted = report["admitted"].as_f64().unwrap();
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    // GCRA admits at most burst + rate·t in any interval of length t; the cost (1)
    // covers an admission exactly at the boundary.
    assert!(admitted <= 10.0 + 200.0 * elapsed + 1.0, "{report}");
    // 16 tasks polling without pause take each unit within microseconds of it
    // becoming available: 1% (4 units) covers scheduling on a loaded test machine.
    assert!(admitted >= 10.0 + 200.0 * 2.0 * 0.99 - 1.0, "{report}");
    assert_eq!(report["errors"], 0);
    for key in [
        "denied",
        "ops_per_s",
        "admitted_per_s",
        "tasks",
        "keys",
        "mode",
        "cost",
    ] {
        assert!(report.get(key).is_some(), "missing {key} in {report}");
    }
    for key in ["p50", "p90", "p99", "max"] {
        assert!(report["latency_us"][key].as_f64().is_some(), "{report}");
    }
}

#[test]
fn bench_sliding_window_never_exceeds_the_limit() {
    let dir = dir_with(VALID);
    let report = bench(dir.path(), "sw", "2.5");
    let admitted = report["admitted"].as_u64().unwrap();
    // 2.5 s meet at most 3 windows of 1 s: never above 3·50. Saturated, at least the
    // windows starting at 0 s and 1 s are filled.
    assert!(admitted <= 150, "{report}");
    assert!(admitted >= 100, "{report}");
}

#[test]
fn bench_fixed_window_never_exceeds_the_limit() {
    let dir = dir_with(WINDOWS);
    let report = bench(dir.path(), "second", "1.5");
    let admitted = report["admitted"].as_u64().unwrap();
    let bound = report["admitted_bound"].as_u64().unwrap();
    // 1.5 s meet 2 or 3 windows of 1 s (aligned to the Unix epoch, not to the run):
    // each admits 50 at its start.
    assert!(admitted <= bound && bound <= 150, "{report}");
    assert!(admitted >= 100, "{report}");
    assert_eq!(report["settle"], Value::Null);
}

#[test]
fn bench_settles_give_units_back() {
    let dir = dir_with(WINDOWS);
    let report = json_of(ratesync(dir.path()).args([
        "bench",
        "--limiter",
        "llm",
        "--tasks",
        "1",
        "--duration",
        "0.3",
        "--cost",
        "5",
        "--settle",
        "1",
        "--json",
    ]));
    let admitted = report["admitted"].as_u64().unwrap();
    // Each call takes 5 of the day's 50 and keeps 1: the 46th call finds 45 + 5 used.
    // Without settles, 10 (20 should the run cross midnight UTC).
    assert!((46..=92).contains(&admitted), "{report}");
    assert!(
        admitted <= report["admitted_bound"].as_u64().unwrap(),
        "{report}"
    );
    assert!(report["denied"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["settle"], 1);
    assert_eq!(report["settled"].as_u64(), Some(admitted), "{report}");
    assert_eq!(report["settle_errors"], 0);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            report["settle_latency_us"][key].as_f64().is_some(),
            "{report}"
        );
    }
    // A settle gives back; it never takes more than the cost.
    ratesync(dir.path())
        .args(["bench", "--limiter", "llm", "--cost", "2", "--settle", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--settle 3 is above --cost 2"));
    // The table says so too.
    ratesync(dir.path())
        .args([
            "bench",
            "--limiter",
            "second",
            "--duration",
            "0.2",
            "--tasks",
            "2",
            "--settle",
            "0",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("cost 1, settled at 0"))
        .stdout(predicate::str::contains("settle latency µs"))
        .stdout(predicate::str::contains("no bound"));
}

#[test]
fn bench_needs_a_limiter() {
    let dir = dir_with(VALID);
    ratesync(dir.path())
        .args(["bench", "--json"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--limiter"));
}

#[test]
fn demo_runs_without_a_file_and_ends_by_itself() {
    let dir = TempDir::new().unwrap();
    ratesync(dir.path())
        .args(["demo", "--duration", "0.5"])
        .assert()
        .success()
        .stdout(predicate::str::contains("api"))
        .stdout(predicate::str::contains("100/s, burst 10"));
}

#[test]
fn demo_drives_fixed_windows_from_a_file() {
    let dir = dir_with(WINDOWS);
    ratesync(dir.path())
        .args(["demo", "--duration", "1"])
        .assert()
        .success()
        .stdout(predicate::str::contains("3 per day (UTC+05:30)"))
        .stdout(predicate::str::contains("50 per 1 s, precision 20"))
        .stdout(predicate::str::contains("second"));
}

#[test]
fn every_command_has_help() {
    let dir = TempDir::new().unwrap();
    for command in [
        "check", "demo", "acquire", "run", "status", "reset", "bench",
    ] {
        ratesync(dir.path())
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains("Usage: ratesync"));
    }
    ratesync(dir.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("75"));
}

/// Every command that prints, its stdout a pipe whose reader has gone
/// (`ratesync check | head -0`): it ends quietly with 0, as `rg` and `fd` do,
/// instead of panicking on the broken pipe.
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    let dir = dir_with(VALID);
    let postgres = dir_with(RATE_SYNC_STYLE);
    let runs: [(&Path, &[&str]); 9] = [
        (dir.path(), &["check"]),
        (dir.path(), &["status", "tb"]),
        (dir.path(), &["status", "tb", "--json"]),
        (dir.path(), &["reset", "tb"]),
        (
            dir.path(),
            &["bench", "--limiter", "tb", "--duration", "0.1"],
        ),
        (
            dir.path(),
            &["bench", "--limiter", "tb", "--duration", "0.1", "--json"],
        ),
        (dir.path(), &["demo", "--duration", "0.1"]),
        (postgres.path(), &["migrate", "--print"]),
        (dir.path(), &["--help"]),
    ];
    for (dir, args) in runs {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let output = ratesync(dir).args(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("error"), "{args:?}: {stderr}");
    }
}

/// `ratesync migrate --print | head -1`: the reader takes one line and leaves.
#[test]
fn a_reader_that_stops_after_one_line_ends_the_command_quietly() {
    let dir = dir_with(RATE_SYNC_STYLE);
    for args in [&["migrate", "--print"][..], &["check"]] {
        let mut child = ratesync(dir.path())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(!first.is_empty(), "{args:?}");
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A fail-open limiter whose store is down admits (exit 0), and says so on stderr:
/// the core's rate-limited warning, its URL's password masked.
#[test]
fn acquire_on_a_down_fail_open_store_admits_with_a_warning() {
    let dir = dir_with(VALID);
    let output = ratesync(dir.path())
        .args(["acquire", "remote"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("WARN"), "{stderr}");
    assert!(stderr.contains("fail-open"), "{stderr}");
    assert!(stderr.contains("limiter=remote store=cache"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // RUST_LOG chooses what to show.
    ratesync(dir.path())
        .args(["acquire", "remote"])
        .env("RUST_LOG", "error")
        .assert()
        .success()
        .stderr("");
}

/// `status --help` names every key `status --json` prints.
#[test]
fn status_help_lists_every_json_key() {
    let dir = dir_with(VALID);
    let one = json_of(ratesync(dir.path()).args(["status", "tb", "--json"]));
    let help = ratesync(dir.path())
        .args(["status", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).replace('\n', " ");
    for key in one.as_object().unwrap().keys() {
        assert!(
            help.contains(&format!("`{key}`")),
            "{key} missing in {help}"
        );
    }
}
