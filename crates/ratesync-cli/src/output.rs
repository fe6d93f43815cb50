//! Shared presentation: tables, numbers with units, the words used for a rule.

use std::fmt::Display;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use ratesync::algorithm::DEFAULT_PRECISION;
use ratesync::config::format_utc_offset;
use ratesync::{FixedWindow, LimiterConfig, Rule};
use time::{OffsetDateTime, UtcOffset};

use crate::failure::Failure;

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

/// What a limiter allows, in words: `100/s, burst 20`, `5 per 300 s` (a sliding
/// window, with `, precision 20` when not the default), `3 per day (UTC+05:30)` or
/// `60 per 60 s` (fixed windows), either with `; ≤ 4 in flight`, or `no rate limit,
/// ≤ 3 in flight`; then its overrides, `; for vip, acme: 100/s, burst 200; for
/// plan-pro:*: 5 per 60 s`; a limiter in shadow mode ends with `, shadow (not
/// enforced)`.
pub fn limit(limiter: &LimiterConfig) -> String {
    let mut text = rule(limiter);
    for over in &limiter.overrides {
        let prefix = over.key_prefix.iter().map(|p| format!("{p}*"));
        let keys: Vec<String> = over.keys.iter().cloned().chain(prefix).collect();
        let rule = rule(&limiter.overridden(over));
        text.push_str(&format!("; for {}: {rule}", keys.join(", ")));
    }
    match limiter.shadow {
        true => format!("{text}, shadow (not enforced)"),
        false => text,
    }
}

/// [`limit`] without the shadow mode.
fn rule(limiter: &LimiterConfig) -> String {
    let rate = match &limiter.rule {
        Some(Rule::TokenBucket(tb)) => {
            format!("{}, burst {}", rate(tb.rate_per_second()), tb.burst())
        }
        Some(Rule::SlidingWindow(sw)) => {
            let window = seconds(Duration::from_nanos(sw.window_nanos()));
            match sw.precision() {
                DEFAULT_PRECISION => format!("{} per {window}", sw.limit()),
                precision => format!("{} per {window}, precision {precision}", sw.limit()),
            }
        }
        Some(Rule::FixedWindow(fw)) => fixed_window(fw),
        None => "no rate limit".to_owned(),
    };
    match (limiter.rule.is_some(), limiter.max_concurrent) {
        (true, Some(max)) => format!("{rate}; ≤ {max} in flight"),
        (false, Some(max)) => format!("{rate}, ≤ {max} in flight"),
        (_, None) => rate,
    }
}

/// A fixed window in words: `3 per day (UTC+05:30)`, `100 per 3600 s (UTC-08:00)`
/// for windows aligned to local midnight, `60 per 60 s` for windows aligned to the
/// Unix epoch (`docs/design.md#fixed-windows`).
fn fixed_window(fw: &FixedWindow) -> String {
    let per = match fw.period() {
        Some(period) => period.name().to_owned(),
        None => seconds(Duration::from_nanos(fw.window_nanos())),
    };
    // Calendar periods always fall at some offset; epoch-aligned windows at offset 0
    // are the same as windows aligned to UTC midnight, so they do not say.
    match (fw.period(), fw.utc_offset()) {
        (None, 0) => format!("{} per {per}", fw.limit()),
        (_, offset) => format!("{} per {per} ({})", fw.limit(), utc(offset)),
    }
}

/// `UTC`, `UTC+05:30`.
fn utc(offset: i32) -> String {
    match offset {
        0 => "UTC".to_owned(),
        offset => format!("UTC{}", format_utc_offset(offset)),
    }
}

/// [`limit`], and for a fixed window when its current window ends, on the
/// calendar at its offset: `3 per day (UTC+05:30), resets at 2026-12-08 00:00:00
/// +05:30`. The window is the one holding this machine's clock now: the store's
/// clock decides, but windows are the same for every clock that agrees on the date.
pub fn limit_now(limiter: &LimiterConfig) -> String {
    let described = limit(limiter);
    match &limiter.rule {
        Some(Rule::FixedWindow(fw)) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
            let (_, end) = fw.bounds(now);
            format!(
                "{described}, resets at {}",
                calendar_time(end, fw.utc_offset())
            )
        }
        _ => described,
    }
}

/// `nanos` since the Unix epoch as a date and time at `offset` seconds east of UTC:
/// `2026-12-08 00:00:00 +05:30` (milliseconds shown when not whole seconds).
pub fn calendar_time(nanos: u64, offset: i32) -> String {
    let offset = UtcOffset::from_whole_seconds(offset).unwrap_or(UtcOffset::UTC);
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos)) else {
        return format!("{} s after the Unix epoch", nanos / 1_000_000_000);
    };
    let at = at.to_offset(offset);
    let millis = match at.millisecond() {
        0 => String::new(),
        ms => format!(".{ms:03}"),
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}{millis} {}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        format_utc_offset(offset.whole_seconds()),
    )
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
        // A month counts as its longest, 31 days: an estimate, for display only.
        Rule::FixedWindow(fw) => Some(f64::from(fw.limit()) * 1e9 / fw.window_nanos() as f64),
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

/// Prints `text` and a newline on stdout. Unlike `println!`, which panics, a reader
/// that stopped reading (`ratesync check | head -1`) ends the command quietly
/// ([`Failure::output`]).
pub fn print(text: impl Display) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "{text}")
        .and_then(|()| stdout.flush())
        .map_err(Failure::output)
}

/// Prints one JSON value on stdout.
pub fn json(value: &serde_json::Value) -> Result<(), Failure> {
    print(value)
}

/// Prints a note (or what the command is about to do) on stderr. Unlike
/// `eprintln!`, which panics, a stderr that cannot be written is let be: there is
/// nowhere left to say so.
pub fn note(text: impl Display) {
    let _ = writeln!(io::stderr(), "{text}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratesync::config::LimiterBuilder;
    use ratesync::{Config, OverrideBuilder, Period, StoreBuilder};

    fn described(limiter: LimiterBuilder) -> String {
        let config = Config::builder()
            .store("s", StoreBuilder::memory())
            .limiter("l", limiter)
            .build()
            .unwrap();
        limit(&config.limiters["l"])
    }

    #[test]
    fn rules_in_words() {
        assert_eq!(
            described(LimiterBuilder::calendar("s", 3, Period::Day).utc_offset("+05:30")),
            "3 per day (UTC+05:30)"
        );
        assert_eq!(
            described(LimiterBuilder::calendar("s", 3, Period::Month)),
            "3 per month (UTC)"
        );
        assert_eq!(
            described(LimiterBuilder::fixed_window("s", 100, 3600.0).utc_offset("-08:00")),
            "100 per 3600 s (UTC-08:00)"
        );
        assert_eq!(
            described(LimiterBuilder::fixed_window("s", 60, 60.0).max_concurrent(2)),
            "60 per 60 s; ≤ 2 in flight"
        );
        assert_eq!(
            described(LimiterBuilder::sliding_window("s", 5, 300.0)),
            "5 per 300 s"
        );
        assert_eq!(
            described(LimiterBuilder::sliding_window("s", 5, 300.0).shadow(true)),
            "5 per 300 s, shadow (not enforced)"
        );
        assert_eq!(
            described(
                LimiterBuilder::token_bucket("s", 10.0)
                    .burst(20)
                    .key_override(OverrideBuilder::keys(["vip", "acme"]).burst(200))
                    .key_override(OverrideBuilder::key_prefix("pro:").max_concurrent(4))
            ),
            "10/s, burst 20; for vip, acme: 10/s, burst 200; for pro:*: 10/s, burst 20; ≤ 4 in flight"
        );
        assert_eq!(
            described(LimiterBuilder::sliding_window("s", 5, 300.0).precision(20)),
            "5 per 300 s, precision 20"
        );
    }

    #[test]
    fn calendar_times_at_an_offset() {
        // 2026-12-07 00:00:00 UTC.
        let monday = 1_796_601_600 * 1_000_000_000;
        assert_eq!(calendar_time(monday, 0), "2026-12-07 00:00:00 +00:00");
        assert_eq!(calendar_time(monday, 19_800), "2026-12-07 05:30:00 +05:30");
        assert_eq!(
            calendar_time(monday + 250_000_000, -28_800),
            "2026-12-06 16:00:00.250 -08:00"
        );
    }
}
