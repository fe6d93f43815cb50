//! `[limiters.ID]` tables: the rule, the concurrency cap and the call defaults
//! (`docs/design.md#limiter-tables`).

use std::num::NonZeroU32;

use super::super::error::Issues;
use super::super::offset::parse_utc_offset;
use super::super::types::{LimiterConfig, DEFAULT_LEASE_TTL};
use super::fields::{Field, Fields};
use super::suggest::did_you_mean;
use crate::algorithm::{
    FixedWindow, Period, Rule, RuleError, SlidingWindow, TokenBucket, MAX_PRECISION, MIN_PRECISION,
};

const KEYS: &[&str] = &[
    "store",
    "algorithm",
    "rate_per_second",
    "burst",
    "max_concurrent",
    "limit",
    "window_seconds",
    "precision",
    "period",
    "utc_offset",
    "timeout",
    "fail_closed",
    "lease_ttl",
    "shadow",
];
const ALGORITHMS: &[&str] = &["token_bucket", "sliding_window", "fixed_window"];
/// The keys of the rules, each with the algorithms that read it: any other
/// algorithm reports it rather than ignoring it.
const RULE_KEYS: &[(&str, &[&str])] = &[
    ("rate_per_second", &["token_bucket"]),
    ("burst", &["token_bucket"]),
    ("limit", &["sliding_window", "fixed_window"]),
    ("window_seconds", &["sliding_window", "fixed_window"]),
    ("precision", &["sliding_window"]),
    ("period", &["fixed_window"]),
    ("utc_offset", &["fixed_window"]),
];
const PERIODS: &[(&str, Period)] = &[
    ("day", Period::Day),
    ("week", Period::Week),
    ("month", Period::Month),
];

/// Validates one limiter table against the ids of the stores the file declares.
pub(crate) fn limiter(
    f: &Fields<'_>,
    stores: &[&str],
    issues: &mut Issues,
) -> Option<LimiterConfig> {
    let before = issues.len();
    f.check_keys(issues, "a limiter", KEYS, |_| None);
    let store = store_id(f, stores, issues);
    // `Some(None)`: valid, without a rate (concurrency only); `None`: invalid.
    let rule: Option<Option<Rule>> = match f.string(issues, "algorithm") {
        Field::Absent => token_bucket(f, "token_bucket (the default)", issues),
        Field::Valid("token_bucket") => token_bucket(f, "token_bucket", issues),
        Field::Valid("sliding_window") => sliding_window(f, issues).map(Some),
        Field::Valid("fixed_window") => fixed_window(f, issues).map(Some),
        Field::Valid(other) => {
            let hint = did_you_mean(other, ALGORITHMS.iter().copied())
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            f.report(
                issues,
                "algorithm",
                format!(
                    "unknown algorithm `{other}`; expected token_bucket, sliding_window or fixed_window{hint}"
                ),
            );
            None
        }
        Field::Invalid => None,
    };
    let max_concurrent = f
        .u32(issues, "max_concurrent", 1)
        .ok()
        .and_then(NonZeroU32::new);
    let lease_ttl = f.seconds(issues, "lease_ttl", false);
    if lease_ttl.is_present() && !f.table.contains("max_concurrent") {
        f.report(
            issues,
            "lease_ttl",
            "`lease_ttl` only applies to a limiter with `max_concurrent`",
        );
    }
    let timeout = f.seconds(issues, "timeout", true).ok();
    let fail_closed = f.boolean(issues, "fail_closed").or(false);
    let shadow = f.boolean(issues, "shadow").or(false);
    let config = LimiterConfig {
        store: store?,
        rule: rule?,
        max_concurrent,
        lease_ttl: lease_ttl.or(DEFAULT_LEASE_TTL),
        timeout,
        fail_closed,
        shadow,
    };
    (issues.len() == before).then_some(config)
}

fn store_id(f: &Fields<'_>, stores: &[&str], issues: &mut Issues) -> Option<String> {
    let id = match f.string(issues, "store") {
        Field::Valid(id) => id,
        Field::Absent => {
            f.missing(issues, "store", " (the id of a [stores.ID] table)");
            return None;
        }
        Field::Invalid => return None,
    };
    if stores.contains(&id) {
        return Some(id.to_owned());
    }
    let message = if stores.is_empty() {
        format!("unknown store `{id}`: no stores are defined; add a [stores.{id}] table")
    } else if let Some(close) = did_you_mean(id, stores.iter().copied()) {
        format!("unknown store `{id}`; did you mean `{close}`?")
    } else {
        format!(
            "unknown store `{id}`; defined stores: {}",
            stores.join(", ")
        )
    };
    f.report(issues, "store", message);
    None
}

/// Reports each rule key of another algorithm present in the table. `algorithm`:
/// the limiter's; `shown`: how messages name it.
fn reject_keys(f: &Fields<'_>, issues: &mut Issues, algorithm: &str, shown: &str) {
    for (key, theirs) in RULE_KEYS {
        if theirs.contains(&algorithm) || !f.table.contains(key) {
            continue;
        }
        let settings = theirs.join(" or ");
        let set = theirs
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        f.report(
            issues,
            key,
            format!(
                "`{key}` is a {settings} setting, but this limiter's algorithm is {shown}; remove it or set algorithm = {set}"
            ),
        );
    }
}

/// Reports the error of a window rule at the key it is about.
fn report_rule_error(f: &Fields<'_>, issues: &mut Issues, error: RuleError) {
    let key = match &error {
        RuleError::NotPositive { field, .. }
        | RuleError::TooLarge { field, .. }
        | RuleError::TooSmall { field }
        | RuleError::OutOfRange { field, .. } => field,
        RuleError::SpanOverflow | RuleError::NotADivisorOfADay { .. } => "window_seconds",
    };
    let mut message = error.to_string();
    if let RuleError::NotADivisorOfADay { .. } = error {
        message.push_str("; without `utc_offset` the windows are aligned to the Unix epoch");
    }
    f.report(issues, key, message);
}

/// The token-bucket rule: `Some(None)` for a limiter that only caps concurrency.
fn token_bucket(f: &Fields<'_>, shown: &str, issues: &mut Issues) -> Option<Option<Rule>> {
    reject_keys(f, issues, "token_bucket", shown);
    let rate = f.positive(issues, "rate_per_second", false);
    let burst = f.u32(issues, "burst", 1);
    match rate {
        Field::Valid(rate) => {
            let rule = TokenBucket::new(rate, burst.or(1)).map_err(|error| {
                // A span overflow is fixed by lowering burst when burst was given.
                let key = match &error {
                    RuleError::NotPositive { field, .. }
                    | RuleError::TooLarge { field, .. }
                    | RuleError::TooSmall { field }
                    | RuleError::OutOfRange { field, .. } => field,
                    RuleError::NotADivisorOfADay { .. } => "window_seconds",
                    RuleError::SpanOverflow if burst.is_present() => "burst",
                    RuleError::SpanOverflow => "rate_per_second",
                };
                f.report(issues, key, error.to_string());
            });
            rule.ok().map(|tb| Some(Rule::TokenBucket(tb)))
        }
        Field::Invalid => None,
        Field::Absent if burst.is_present() => {
            f.report(issues, "burst", "`burst` needs `rate_per_second`");
            None
        }
        // rate-sync allows a limiter that only caps concurrency.
        Field::Absent if f.table.contains("max_concurrent") => Some(None),
        Field::Absent => {
            f.report_table(
                issues,
                "a token_bucket limiter needs `rate_per_second` (optionally with `burst`), `max_concurrent`, or both",
            );
            None
        }
    }
}

fn sliding_window(f: &Fields<'_>, issues: &mut Issues) -> Option<Rule> {
    reject_keys(f, issues, "sliding_window", "sliding_window");
    let limit = f.u32(issues, "limit", 1);
    let window = f.positive(issues, "window_seconds", false);
    // The runs a key keeps (`docs/design.md#sliding-window`); the default when
    // absent.
    let precision = f.integer(
        issues,
        "precision",
        i64::from(MIN_PRECISION),
        i64::from(MAX_PRECISION),
    );
    for (key, absent) in [
        ("limit", limit.is_absent()),
        ("window_seconds", window.is_absent()),
    ] {
        if absent {
            f.missing(issues, key, " for a sliding_window limiter");
        }
    }
    let (Field::Valid(limit), Field::Valid(window)) = (limit, window) else {
        return None;
    };
    let rule = match precision {
        Field::Absent => SlidingWindow::new(limit, window),
        // In range: `integer` checked it.
        Field::Valid(precision) => SlidingWindow::new(limit, window)
            .and_then(|sw| sw.with_precision(u32::try_from(precision).unwrap_or(MAX_PRECISION))),
        Field::Invalid => return None,
    };
    rule.map(Rule::SlidingWindow)
        .map_err(|error| report_rule_error(f, issues, error))
        .ok()
}

/// Fixed windows (`docs/design.md#fixed-windows`): `limit` per `window_seconds`
/// (windows aligned to the Unix epoch, or to local midnight with `utc_offset`), or
/// per calendar `period` (at `utc_offset`, UTC by default).
fn fixed_window(f: &Fields<'_>, issues: &mut Issues) -> Option<Rule> {
    reject_keys(f, issues, "fixed_window", "fixed_window");
    let limit = f.u32(issues, "limit", 1);
    let window = f.positive(issues, "window_seconds", false);
    let period = period(f, issues);
    let offset = utc_offset(f, issues);
    if limit.is_absent() {
        f.missing(issues, "limit", " for a fixed_window limiter");
    }
    match (window.is_present(), period.is_present()) {
        (true, true) => f.report(
            issues,
            "period",
            "`period` and `window_seconds` exclude each other: set `period` for calendar windows (day, week, month) or `window_seconds` for windows of that length, not both",
        ),
        (false, false) => f.missing(
            issues,
            "window_seconds",
            " (or `period` = \"day\", \"week\" or \"month\") for a fixed_window limiter",
        ),
        _ => {}
    }
    let offset = match offset {
        Field::Invalid => return None,
        offset => offset.ok(),
    };
    let Field::Valid(limit) = limit else {
        return None;
    };
    let rule = match (window, period) {
        (Field::Valid(window), Field::Absent) => match offset {
            None => FixedWindow::new(limit, window),
            Some(offset) => FixedWindow::aligned(limit, window, offset),
        },
        (Field::Absent, Field::Valid(period)) => {
            FixedWindow::calendar(limit, period, offset.unwrap_or(0))
        }
        _ => return None,
    };
    rule.map(Rule::FixedWindow)
        .map_err(|error| report_rule_error(f, issues, error))
        .ok()
}

/// The calendar `period` of a fixed window.
fn period(f: &Fields<'_>, issues: &mut Issues) -> Field<Period> {
    match f.string(issues, "period") {
        Field::Valid(name) => match PERIODS.iter().find(|(known, _)| *known == name) {
            Some((_, period)) => Field::Valid(*period),
            None => {
                let hint = did_you_mean(name, PERIODS.iter().map(|(known, _)| *known))
                    .map(|close| format!("; did you mean `{close}`?"))
                    .unwrap_or_default();
                f.report(
                    issues,
                    "period",
                    format!("unknown period `{name}`; expected day, week or month{hint}"),
                );
                Field::Invalid
            }
        },
        Field::Absent => Field::Absent,
        Field::Invalid => Field::Invalid,
    }
}

/// The `utc_offset` of a fixed window, in seconds east of UTC.
fn utc_offset(f: &Fields<'_>, issues: &mut Issues) -> Field<i32> {
    match f.string(issues, "utc_offset") {
        Field::Valid(text) => match parse_utc_offset(text) {
            Ok(seconds) => Field::Valid(seconds),
            Err(message) => {
                f.report(issues, "utc_offset", message);
                Field::Invalid
            }
        },
        Field::Absent => Field::Absent,
        Field::Invalid => Field::Invalid,
    }
}
