//! The CLI against a Redis store: separate `ratesync` processes share one
//! limit, as scripts and cron jobs on many hosts would. The test starts its own
//! redis-server on a free port (skipped loudly when redis-server is missing; a
//! failure under CI=true).

#[path = "../../ratesync/tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn ratesync(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ratesync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .expect("ratesync runs")
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn config_for(server: &support::RedisServer, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("rate-sync.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[stores.shared]
engine = "redis"
url = "{url}"
socket_timeout = 2

[limiters.once]
store = "shared"
rate_per_second = 0.01
timeout = 0

[limiters.slots]
store = "shared"
rate_per_second = 1000
burst = 100
max_concurrent = 1
timeout = 0

[limiters.paced]
store = "shared"
rate_per_second = 100
burst = 10
"#,
            url = server.url()
        ),
    )
    .unwrap();
    path
}

#[test]
fn separate_invocations_share_one_limit() {
    let server = support::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&server, dir.path());

    // acquire: the first process takes the only unit; the next one is refused (75)
    // and told how long to wait.
    assert_eq!(
        code(&ratesync(&config, &["acquire", "once", "--key", "k"])),
        0
    );
    let refused = ratesync(&config, &["acquire", "once", "--key", "k"]);
    assert_eq!(code(&refused), 75);
    // With `timeout = 0` nothing waited: a refusal, not "timed out after 0.001s".
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refused: retry after"), "{stderr}");
    assert!(!stderr.contains("timed out"), "{stderr}");
    assert_eq!(
        code(&ratesync(&config, &["acquire", "once", "--key", "other"])),
        0
    );

    // status: a third process sees the state the first left, consuming nothing.
    let status = ratesync(&config, &["status", "once", "--key", "k", "--json"]);
    assert_eq!(code(&status), 0);
    let state: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(state["allowed"], false);
    assert_eq!(state["remaining"], 0);
    assert!(state["retry_after_s"].as_f64().unwrap() > 90.0);

    // reset: a fourth process clears it for everyone.
    assert_eq!(
        code(&ratesync(&config, &["reset", "once", "--key", "k"])),
        0
    );
    assert_eq!(
        code(&ratesync(&config, &["acquire", "once", "--key", "k"])),
        0
    );
}

#[test]
fn run_holds_a_shared_slot_while_its_command_runs() {
    let server = support::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&server, dir.path());
    let marker = dir.path().join("started");
    let holder = Command::new(env!("CARGO_BIN_EXE_ratesync"))
        .arg("--config")
        .arg(&config)
        .args(["run", "slots", "--", "sh", "-c"])
        .arg(format!("touch {} && sleep 2 && exit 3", marker.display()))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Generous: the holder has 10 s to start its command.
    assert!(
        support::wait_until(Duration::from_secs(10), || marker.exists()),
        "the command under `run` started"
    );
    let refused = ratesync(&config, &["acquire", "slots"]);
    assert_eq!(code(&refused), 75, "the slot is held by the other process");
    let finished = holder.wait_with_output().unwrap();
    assert_eq!(
        finished.status.code(),
        Some(3),
        "run exits with its command's code"
    );
    assert_eq!(
        code(&ratesync(&config, &["acquire", "slots"])),
        0,
        "run released the slot when its command ended"
    );
}

#[test]
fn bench_against_redis_stays_within_the_bucket() {
    let server = support::RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_for(&server, dir.path());
    let started = Instant::now();
    let output = ratesync(
        &config,
        &[
            "bench",
            "--limiter",
            "paced",
            "--tasks",
            "16",
            "--duration",
            "2",
            "--json",
        ],
    );
    assert_eq!(
        code(&output),
        0,
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let admitted = report["admitted"].as_f64().unwrap();
    let elapsed = report["elapsed_s"].as_f64().unwrap();
    // GCRA bound for the reported span: burst + rate * t, plus one call in flight.
    assert!(admitted <= 10.0 + 100.0 * elapsed + 1.0, "{report}");
    // And not far below it: the bucket was kept busy by 16 tasks.
    assert!(admitted >= 100.0 * elapsed * 0.9, "{report}");
    assert_eq!(report["errors"], 0);
    assert!(started.elapsed() < Duration::from_secs(30));
}
