//! The figures of one bench run, as a table or as one JSON object.

use std::time::Duration;

use hdrhistogram::Histogram;
use ratesync::{Limiter, Rule};
use serde_json::{json, Value};

use super::{Args, Mode, TaskResult};
use crate::output;

pub struct Report {
    limiter: String,
    rule: String,
    mode: Mode,
    tasks: u32,
    keys: u32,
    cost: u32,
    settle: Option<Settles>,
    admitted: u64,
    denied: u64,
    errors: u64,
    elapsed_s: f64,
    /// The most the rule admits in the run; `None` without a rate, or when every
    /// call is settled at 0 units.
    admitted_bound: Option<u64>,
    /// Whether the limiter has a rate rule.
    rate_limited: bool,
    /// p50, p90, p99, max in microseconds.
    latency_us: [f64; 4],
}

/// What the settles of a run with `--settle` did.
struct Settles {
    /// The units each admitted call was settled at.
    used: u32,
    settled: u64,
    errors: u64,
    latency_us: [f64; 4],
}

/// p50, p90, p99 and max of `h` (nanoseconds), in microseconds.
fn quantiles_us(h: &Histogram<u64>) -> [f64; 4] {
    let us = |ns: u64| ns as f64 / 1e3;
    [
        us(h.value_at_quantile(0.50)),
        us(h.value_at_quantile(0.90)),
        us(h.value_at_quantile(0.99)),
        us(h.max()),
    ]
}

fn quantiles_json([p50, p90, p99, max]: [f64; 4]) -> Value {
    json!({ "p50": p50, "p90": p90, "p99": p99, "max": max })
}

fn quantiles_text([p50, p90, p99, max]: [f64; 4]) -> String {
    format!("p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}")
}

impl Report {
    pub fn new(limiter: &Limiter, args: &Args, total: &TaskResult, elapsed: Duration) -> Self {
        Report {
            limiter: limiter.name().to_owned(),
            rule: output::limit(limiter.config()),
            mode: args.mode,
            tasks: args.tasks,
            keys: args.keys,
            cost: args.cost,
            settle: args.settle.map(|used| Settles {
                used,
                settled: total.settled,
                errors: total.settle_errors,
                latency_us: quantiles_us(&total.settle_latency_ns),
            }),
            admitted: total.admitted,
            denied: total.denied,
            errors: total.errors,
            elapsed_s: elapsed.as_secs_f64(),
            admitted_bound: admitted_bound(limiter.config().rule.as_ref(), elapsed, args),
            rate_limited: limiter.config().rule.is_some(),
            latency_us: quantiles_us(&total.latency_ns),
        }
    }

    fn ops(&self) -> u64 {
        self.admitted + self.denied + self.errors
    }

    fn per_second(&self, count: u64) -> f64 {
        if self.elapsed_s > 0.0 {
            count as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    pub fn to_json(&self) -> Value {
        let mut report = json!({
            "limiter": self.limiter,
            "mode": mode_name(self.mode),
            "tasks": self.tasks,
            "keys": self.keys,
            "cost": self.cost,
            "admitted": self.admitted,
            "denied": self.denied,
            "errors": self.errors,
            "elapsed_s": self.elapsed_s,
            "ops_per_s": self.per_second(self.ops()),
            "admitted_per_s": self.per_second(self.admitted),
            "admitted_bound": self.admitted_bound,
            "latency_us": quantiles_json(self.latency_us),
            "settle": self.settle.as_ref().map(|s| s.used),
        });
        if let (Some(settles), Some(object)) = (&self.settle, report.as_object_mut()) {
            object.insert("settled".into(), settles.settled.into());
            object.insert("settle_errors".into(), settles.errors.into());
            object.insert(
                "settle_latency_us".into(),
                quantiles_json(settles.latency_us),
            );
        }
        report
    }

    pub fn to_table(&self) -> comfy_table::Table {
        let mut table = output::table(["bench", &self.limiter]);
        let settled_at = match &self.settle {
            Some(settles) => format!(", settled at {}", settles.used),
            None => String::new(),
        };
        let mut rows = vec![
            ("rule", self.rule.clone()),
            (
                "load",
                format!(
                    "{} tasks, {} key(s), cost {}{settled_at}, {} mode",
                    self.tasks,
                    self.keys,
                    self.cost,
                    mode_name(self.mode)
                ),
            ),
            ("elapsed", format!("{:.3} s", self.elapsed_s)),
            ("admitted", self.admitted.to_string()),
            (
                "  most the rule allows",
                match (self.admitted_bound, self.rate_limited) {
                    (Some(n), _) => n.to_string(),
                    (None, true) => "no bound: every call gives its units back".to_owned(),
                    (None, false) => "no rate limit".to_owned(),
                },
            ),
            ("denied", self.denied.to_string()),
            ("errors", self.errors.to_string()),
            (
                "operations/s",
                format!("{:.0}", self.per_second(self.ops())),
            ),
            (
                "admitted/s",
                format!("{:.2}", self.per_second(self.admitted)),
            ),
            ("latency µs", quantiles_text(self.latency_us)),
        ];
        if let Some(settles) = &self.settle {
            rows.push((
                "settled",
                format!("{} ({} failed)", settles.settled, settles.errors),
            ));
            rows.push(("settle latency µs", quantiles_text(settles.latency_us)));
        }
        for (name, value) in rows {
            table.add_row([name.to_owned(), value]);
        }
        table
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Try => "try",
        Mode::Wait => "wait",
    }
}

/// The most calls the rule can admit over `elapsed` across all keys: a token bucket
/// admits at most `burst + rate·t` units in any interval of length t; a sliding
/// window at most `limit` per window, and a closed interval of length t meets
/// `floor(t / window) + 1` disjoint windows; a fixed window `limit` per window it
/// meets, at most `ceil(t / window) + 1` (a month counts as 31 days). A call takes
/// `cost` units, or with `--settle N` keeps N of them once settled: the bound is then
/// `units / N` (none for N = 0, where every call gives all its units back).
fn admitted_bound(rule: Option<&Rule>, elapsed: Duration, args: &Args) -> Option<u64> {
    let t = elapsed.as_secs_f64();
    let units_per_key = match rule? {
        Rule::TokenBucket(tb) => f64::from(tb.burst()) + tb.rate_per_second() * t,
        Rule::SlidingWindow(sw) => {
            let windows = (elapsed.as_nanos() / u128::from(sw.window_nanos())) as f64 + 1.0;
            f64::from(sw.limit()) * windows
        }
        Rule::FixedWindow(fw) => {
            let windows = elapsed.as_nanos().div_ceil(u128::from(fw.window_nanos())) as f64 + 1.0;
            f64::from(fw.limit()) * windows
        }
    };
    let kept = match args.settle {
        Some(0) => return None,
        Some(used) => used,
        None => args.cost,
    };
    Some((units_per_key / f64::from(kept)).floor() as u64 * u64::from(args.keys))
}
