//! `ratesync bench`: drive load through one limiter and report what it admitted and
//! how long each call took.
//!
//! Each task owns its counters and latency histogram (merged at the end), so the
//! measurement adds no shared cache line to the path being measured.

mod report;

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use ratesync::algorithm::check_cost;
use ratesync::Limiter;
use tokio::time::Instant;

use self::report::Report;
use super::parse_positive_seconds;
use crate::failure::{exit, Failure};
use crate::load;

/// Longest latency the histograms resolve; slower calls are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// A task yields to the scheduler after this many calls, so that tasks whose calls
/// complete without suspending (the memory engine) still share the workers.
const CALLS_PER_YIELD: u64 = 8;

/// How each task calls the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `try_acquire`: one attempt per call, never waits (measures decisions).
    Try,
    /// `acquire`: waits up to the limiter's timeout (measures admitted throughput).
    Wait,
}

/// Drive load through a limiter and report admitted, denied, throughput and latency.
///
/// Keys are "k0" .. "k{K-1}", taken round-robin by each task. With --json, prints one
/// object with `admitted`, `denied`, `errors`, `elapsed_s`, `ops_per_s`,
/// `admitted_per_s`, `latency_us` {`p50`, `p90`, `p99`, `max`}, `admitted_bound` (the
/// most the rule allows in `elapsed_s`; null without a rate, or when settled at 0),
/// `limiter`, `tasks`, `keys`, `mode`, `cost`, `settle` (null without --settle); with
/// --settle also `settled`, `settle_errors` and `settle_latency_us` {`p50`, `p90`,
/// `p99`, `max`}.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The limiter to drive (its id in the configuration).
    #[arg(long, value_name = "L")]
    pub limiter: Option<String>,

    /// Concurrent tasks calling the limiter.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub tasks: u32,

    /// How long to drive load, in seconds.
    #[arg(long, value_name = "S", default_value = "5", value_parser = parse_positive_seconds)]
    pub duration: Duration,

    /// Number of distinct keys.
    #[arg(long, value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub keys: u32,

    #[arg(long, value_enum, default_value_t = Mode::Try)]
    pub mode: Mode,

    /// Units each call takes.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub cost: u32,

    /// Settle each admitted call at N units (at most --cost): the call is made
    /// settleable and gives back cost − N once admitted, as a caller that estimated
    /// its cost does. Settles are timed apart from the calls.
    #[arg(long, value_name = "N")]
    pub settle: Option<u32>,

    /// Print one JSON object instead of a table (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(explicit: Option<&Path>, args: Args) -> Result<u8, Failure> {
    let Some(name) = args.limiter.as_deref() else {
        return Err(Failure::usage(
            "bench needs --limiter NAME (see `ratesync check` for the configured limiters)",
        ));
    };
    let config = load::require(explicit)?;
    let registry = load::registry_for(&config, [name])?;
    let limiter = registry.limiter(name)?;
    check_cost(limiter.policy(), args.cost)
        .map_err(|err| Failure::config(format!("--cost: {err}")))?;
    if let Some(used) = args.settle.filter(|used| *used > args.cost) {
        return Err(Failure::usage(format!(
            "--settle {used} is above --cost {}: a settle can only give units back",
            args.cost
        )));
    }

    let keys: Arc<[String]> = (0..args.keys).map(|i| format!("k{i}")).collect();
    let progress: Arc<[TaskProgress]> = (0..args.tasks).map(|_| TaskProgress::default()).collect();
    let bar = progress_bar(&args);
    let start = Instant::now();
    let deadline = start + args.duration;
    let tasks: Vec<_> = (0..args.tasks as usize)
        .map(|index| {
            let task = Task {
                limiter: limiter.clone(),
                keys: keys.clone(),
                progress: progress.clone(),
                index,
                mode: args.mode,
                cost: args.cost,
                settle: args.settle,
                deadline,
            };
            tokio::spawn(task.run())
        })
        .collect();
    let ticker = tokio::spawn(tick(bar.clone(), progress, start));

    let mut total = TaskResult::new();
    for task in tasks {
        let result = task
            .await
            .map_err(|err| Failure::new(exit::CONFIG, format!("a load task failed: {err}")))?;
        total.merge(&result);
    }
    ticker.abort();
    bar.finish_and_clear();

    let report = Report::new(&limiter, &args, &total, total.stopped.duration_since(start));
    if args.json {
        crate::output::json(&report.to_json())?;
    } else {
        crate::output::print(report.to_table())?;
    }
    Ok(exit::OK)
}

/// Counts a task publishes for the progress bar: plain stores, read by one ticker.
#[derive(Default)]
#[repr(align(64))]
struct TaskProgress {
    admitted: AtomicU64,
    denied: AtomicU64,
}

struct Task {
    limiter: Limiter,
    keys: Arc<[String]>,
    progress: Arc<[TaskProgress]>,
    index: usize,
    mode: Mode,
    cost: u32,
    settle: Option<u32>,
    deadline: Instant,
}

/// What one task did, and when it stopped.
struct TaskResult {
    admitted: u64,
    denied: u64,
    errors: u64,
    latency_ns: Histogram<u64>,
    /// Settles that gave back (or had nothing to give back), and that failed.
    settled: u64,
    settle_errors: u64,
    settle_latency_ns: Histogram<u64>,
    stopped: Instant,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant histogram bounds are valid")
}

/// Nanoseconds since `started`, as the histograms take them.
fn elapsed_ns(started: std::time::Instant) -> u64 {
    started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64
}

impl TaskResult {
    fn new() -> Self {
        TaskResult {
            admitted: 0,
            denied: 0,
            errors: 0,
            latency_ns: histogram(),
            settled: 0,
            settle_errors: 0,
            settle_latency_ns: histogram(),
            stopped: Instant::now(),
        }
    }

    fn merge(&mut self, other: &TaskResult) {
        self.admitted += other.admitted;
        self.denied += other.denied;
        self.errors += other.errors;
        self.settled += other.settled;
        self.settle_errors += other.settle_errors;
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency_ns.add(&other.latency_ns);
        let _ = self.settle_latency_ns.add(&other.settle_latency_ns);
        self.stopped = self.stopped.max(other.stopped);
    }
}

impl Task {
    async fn run(self) -> TaskResult {
        let mut result = TaskResult::new();
        let progress = &self.progress[self.index];
        for call_number in 1u64.. {
            let started = std::time::Instant::now();
            if Instant::from_std(started) >= self.deadline {
                break;
            }
            // Round-robin, each task starting at its own key.
            let key = &self.keys[(self.index + call_number as usize) % self.keys.len()];
            let mut call = self.limiter.key(key).cost(self.cost);
            if self.settle.is_some() {
                call = call.settleable();
            }
            let outcome = match self.mode {
                Mode::Try => call.try_acquire().await,
                Mode::Wait => match tokio::time::timeout_at(self.deadline, call.acquire()).await {
                    Ok(outcome) => outcome,
                    // Cut off by the end of the run: not a decision, not counted.
                    Err(_) => break,
                },
            };
            result.latency_ns.saturating_record(elapsed_ns(started));
            match outcome {
                Ok(mut permit) => {
                    result.admitted += 1;
                    progress.admitted.store(result.admitted, Ordering::Relaxed);
                    if let Some(used) = self.settle {
                        let settling = std::time::Instant::now();
                        match permit.settle(used).await {
                            Ok(()) => result.settled += 1,
                            Err(_) => result.settle_errors += 1,
                        }
                        result
                            .settle_latency_ns
                            .saturating_record(elapsed_ns(settling));
                    }
                    permit.release().await;
                }
                Err(err) if err.is_rate_limited() => {
                    result.denied += 1;
                    progress.denied.store(result.denied, Ordering::Relaxed);
                }
                Err(_) => result.errors += 1,
            }
            if call_number % CALLS_PER_YIELD == 0 {
                tokio::task::yield_now().await;
            }
        }
        result.stopped = Instant::now();
        result
    }
}

/// A bar on stderr, hidden for --json and when stderr is not a terminal.
fn progress_bar(args: &Args) -> ProgressBar {
    if args.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(args.duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed:>3} {msg}")
            .expect("constant template is valid")
            .progress_chars("=> "),
    );
    bar
}

async fn tick(bar: ProgressBar, progress: Arc<[TaskProgress]>, start: Instant) {
    let mut interval = tokio::time::interval(Duration::from_millis(100));
    loop {
        interval.tick().await;
        let admitted: u64 = progress
            .iter()
            .map(|p| p.admitted.load(Ordering::Relaxed))
            .sum();
        let denied: u64 = progress
            .iter()
            .map(|p| p.denied.load(Ordering::Relaxed))
            .sum();
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!("{admitted} admitted, {denied} denied"));
    }
}
