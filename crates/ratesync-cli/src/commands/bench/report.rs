//! The figures of one bench run, as a table or as one JSON object.

use std::time::Duration;

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
    admitted: u64,
    denied: u64,
    errors: u64,
    elapsed_s: f64,
    /// The most the rule admits in the run; `None` without a rate.
    admitted_bound: Option<u64>,
    /// p50, p90, p99, max in microseconds.
    latency_us: [f64; 4],
}

impl Report {
    pub fn new(limiter: &Limiter, args: &Args, total: &TaskResult, elapsed: Duration) -> Self {
        let h = &total.latency_ns;
        let us = |ns: u64| ns as f64 / 1e3;
        Report {
            limiter: limiter.name().to_owned(),
            rule: output::limit(limiter.config()),
            mode: args.mode,
            tasks: args.tasks,
            keys: args.keys,
            cost: args.cost,
            admitted: total.admitted,
            denied: total.denied,
            errors: total.errors,
            elapsed_s: elapsed.as_secs_f64(),
            admitted_bound: admitted_bound(limiter.config().rule.as_ref(), elapsed, args),
            latency_us: [
                us(h.value_at_quantile(0.50)),
                us(h.value_at_quantile(0.90)),
                us(h.value_at_quantile(0.99)),
                us(h.max()),
            ],
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
        let [p50, p90, p99, max] = self.latency_us;
        json!({
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
            "latency_us": { "p50": p50, "p90": p90, "p99": p99, "max": max },
        })
    }

    pub fn to_table(&self) -> comfy_table::Table {
        let [p50, p90, p99, max] = self.latency_us;
        let mut table = output::table(["bench", &self.limiter]);
        let rows = [
            ("rule", self.rule.clone()),
            (
                "load",
                format!(
                    "{} tasks, {} key(s), cost {}, {} mode",
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
                self.admitted_bound
                    .map_or_else(|| "no rate limit".to_owned(), |n| n.to_string()),
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
            (
                "latency µs",
                format!("p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}"),
            ),
        ];
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
/// `floor(t / window) + 1` disjoint windows.
fn admitted_bound(rule: Option<&Rule>, elapsed: Duration, args: &Args) -> Option<u64> {
    let t = elapsed.as_secs_f64();
    let units_per_key = match rule? {
        Rule::TokenBucket(tb) => f64::from(tb.burst()) + tb.rate_per_second() * t,
        Rule::SlidingWindow(sw) => {
            let windows = (elapsed.as_nanos() / u128::from(sw.window_nanos())) as f64 + 1.0;
            f64::from(sw.limit()) * windows
        }
    };
    Some((units_per_key / f64::from(args.cost)).floor() as u64 * u64::from(args.keys))
}
