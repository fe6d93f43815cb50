//! Shared presentation: tables, numbers with units, the words used for a rule.

use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use ratesync::{LimiterConfig, Rule};

/// A table with a header row, sized to the terminal when there is one.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// Seconds as written in a configuration file: `0.5 s`, `300 s`.
pub fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// A rate with a sensible number of digits: `100/s`, `0.2/s`, `99.87/s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1000.0 || per_second.fract() == 0.0 {
        format!("{per_second:.0}/s")
    } else if per_second >= 10.0 {
        format!("{per_second:.2}/s")
    } else {
        format!("{per_second:.3}/s")
    }
}

/// What a limiter allows, in words: `100/s, burst 20`, `5 per 300 s`, either with
/// `; ≤ 4 in flight`, or `no rate limit, ≤ 3 in flight`.
pub fn limit(limiter: &LimiterConfig) -> String {
    let rate = match &limiter.rule {
        Some(Rule::TokenBucket(tb)) => {
            format!("{}, burst {}", rate(tb.rate_per_second()), tb.burst())
        }
        Some(Rule::SlidingWindow(sw)) => format!(
            "{} per {}",
            sw.limit(),
            seconds(Duration::from_nanos(sw.window_nanos()))
        ),
        None => "no rate limit".to_owned(),
    };
    match (limiter.rule.is_some(), limiter.max_concurrent) {
        (true, Some(max)) => format!("{rate}; ≤ {max} in flight"),
        (false, Some(max)) => format!("{rate}, ≤ {max} in flight"),
        (_, None) => rate,
    }
}

/// The algorithm column: the rule's algorithm, or that there is none.
pub fn algorithm(limiter: &LimiterConfig) -> &'static str {
    limiter
        .rule
        .as_ref()
        .map_or("concurrency only", Rule::algorithm_name)
}

/// What a decision leaves, in words: `7 of 10`, or for a limiter without a rate
/// (its limit is the cap) `2 of 3 slots`.
pub fn remaining(limiter: &LimiterConfig, decision: &ratesync::Decision) -> String {
    let unit = if limiter.rule.is_none() { " slots" } else { "" };
    format!("{} of {}{unit}", decision.remaining(), decision.limit())
}

/// The configured rate in units per second, for comparison with an achieved rate;
/// `None` without a rate.
pub fn configured_rate(rule: Option<&Rule>) -> Option<f64> {
    match rule? {
        Rule::TokenBucket(tb) => Some(tb.rate_per_second()),
        Rule::SlidingWindow(sw) => Some(f64::from(sw.limit()) * 1e9 / sw.window_nanos() as f64),
    }
}

/// The `timeout` key in words.
pub fn timeout(limiter: &LimiterConfig) -> String {
    match limiter.timeout {
        None => "wait forever".to_owned(),
        Some(t) if t.is_zero() => "never wait".to_owned(),
        Some(t) => seconds(t),
    }
}

/// An optional number, `-` when absent.
pub fn optional(value: Option<impl ToString>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Prints one JSON value on stdout.
pub fn json(value: &serde_json::Value) {
    println!("{value}");
}
