//! Other OS processes for multi-process tests, without an extra binary: the test
//! binary runs itself again, filtered to one test, with an environment variable
//! that tells that test to play a role (a worker, a lease holder) instead of
//! running as the parent.
//!
//! The protocol is lines on stdout and stdin: the child prints `READY` once it is
//! set up, waits for a line on stdin (so several children start together), and
//! ends with `RESULT key=value ...`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Set in a child's environment to the role it plays.
pub const ROLE: &str = "RATESYNC_TEST_ROLE";

/// The role this process plays, when it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE).ok()
}

/// A required variable of a child's environment.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child process: {name} is not set"))
}

/// In a child: tells the parent it is ready.
pub fn announce_ready() {
    println!("READY");
}

/// In a child: tells the parent it is ready, then waits for its go.
pub fn ready_then_wait_for_go() {
    announce_ready();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).expect("read go");
}

/// In a child: reports its results to the parent.
pub fn report(results: &[(&str, String)]) {
    let fields: Vec<String> = results
        .iter()
        .map(|(key, value)| format!("{key}={}", value.replace(char::is_whitespace, "_")))
        .collect();
    println!("RESULT {}", fields.join(" "));
}

/// A child process running `test` of this binary in `role`; killed on drop.
pub struct ChildProcess {
    process: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

/// How to start a child: the test to run, its role, its environment, and an
/// optional wrapper command (`faketime -f +1h`).
pub struct Spawn<'a> {
    pub test: &'a str,
    pub role: &'a str,
    pub env: Vec<(&'a str, String)>,
    pub wrapper: Vec<String>,
}

impl ChildProcess {
    pub fn spawn(spec: Spawn<'_>) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut command = match spec.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&exe);
                command
            }
            None => Command::new(&exe),
        };
        command
            .args([spec.test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(ROLE, spec.role)
            .envs(spec.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut process = command.spawn().expect("spawn the test binary as a child");
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess {
            stdin: process.stdin.take(),
            process,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to `limit`) for a stdout line with `prefix`; returns it from there.
    pub fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // libtest prints `test NAME ... ` without a newline before the
                // test's own output, so the marker may come mid-line.
                Ok(line) if line.contains(prefix) => {
                    return line[line.find(prefix).unwrap_or(0)..].to_owned()
                }
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "child: no `{prefix}` line within {limit:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.process.wait();
                    panic!(
                        "child exited ({status:?}) before printing `{prefix}`; it printed:\n{}",
                        self.seen.join("\n")
                    )
                }
            }
        }
    }

    /// Waits for `READY`.
    pub fn wait_ready(&mut self, limit: Duration) {
        self.expect_line("READY", limit);
    }

    /// Lets a ready child start.
    pub fn go(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(b"go\n").expect("send go");
        stdin.flush().expect("flush go");
    }

    /// Waits for the `RESULT` line and parses its `key=value` fields.
    pub fn result(&mut self, limit: Duration) -> Results {
        let line = self.expect_line("RESULT", limit);
        Results(
            line.split_whitespace()
                .skip(1)
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child's `RESULT` fields.
#[derive(Debug, Clone)]
pub struct Results(pub BTreeMap<String, String>);

impl Results {
    pub fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("child result has no `{key}`: {:?}", self.0))
    }

    pub fn number(&self, key: &str) -> i128 {
        let value = self.get(key);
        value
            .parse()
            .unwrap_or_else(|_| panic!("child result `{key}` is not a number: {value}"))
    }
}

/// The limiter a load worker runs against, from its `RULE`: `window:LIMIT:SECONDS`,
/// `bucket:RATE:BURST` or `lease:MAX:TTL_SECONDS`. Fail-closed: an outage must show as errors, never be
/// counted as admissions.
pub fn rule_limiter(rule: &str) -> ratesync::LimiterBuilder {
    use ratesync::LimiterBuilder;
    let parts: Vec<&str> = rule.split(':').collect();
    let limiter = match parts.as_slice() {
        ["window", limit, seconds] => {
            LimiterBuilder::sliding_window("s", limit.parse().unwrap(), seconds.parse().unwrap())
        }
        ["bucket", rate, burst] => {
            LimiterBuilder::token_bucket("s", rate.parse().unwrap()).burst(burst.parse().unwrap())
        }
        ["lease", max, ttl] => LimiterBuilder::token_bucket("s", 1e6)
            .burst(1000)
            .max_concurrent(max.parse().unwrap())
            .lease_ttl(ttl.parse().unwrap()),
        _ => panic!("unknown rule {rule}"),
    };
    limiter.fail_closed(true)
}

/// What a run of load workers saw.
pub struct Run {
    pub results: Vec<Results>,
    /// From the go to the last report: every admission happened within it.
    pub span: Duration,
}

impl Run {
    /// The sum of one numeric result over every worker.
    pub fn total(&self, key: &str) -> i128 {
        self.results.iter().map(|r| r.number(key)).sum()
    }

    pub fn assert_no_errors(&self) {
        for (i, result) in self.results.iter().enumerate() {
            assert_eq!(
                result.number("errors"),
                0,
                "worker {i} saw errors, first: {}",
                result.get("first_error")
            );
        }
    }
}
