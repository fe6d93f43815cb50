//! `[limiters.ID]` tables: the rule, the concurrency cap and the call defaults
//! (`docs/design.md#limiter-tables`).

use std::num::NonZeroU32;

use super::super::error::Issues;
use super::super::types::{LimiterConfig, DEFAULT_LEASE_TTL};
use super::fields::{Field, Fields};
use super::suggest::did_you_mean;
use crate::algorithm::{Rule, RuleError, SlidingWindow, TokenBucket};

const KEYS: &[&str] = &[
    "store",
    "algorithm",
    "rate_per_second",
    "burst",
    "max_concurrent",
    "limit",
    "window_seconds",
    "timeout",
    "fail_closed",
    "lease_ttl",
];
const ALGORITHMS: &[&str] = &["token_bucket", "sliding_window"];
const TOKEN_BUCKET_KEYS: &[&str] = &["rate_per_second", "burst"];
const SLIDING_WINDOW_KEYS: &[&str] = &["limit", "window_seconds"];

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
        Field::Valid(other) => {
            let hint = did_you_mean(other, ALGORITHMS.iter().copied())
                .map(|close| format!("; did you mean `{close}`?"))
                .unwrap_or_default();
            f.report(
                issues,
                "algorithm",
                format!(
                    "unknown algorithm `{other}`; expected token_bucket or sliding_window{hint}"
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
    let config = LimiterConfig {
        store: store?,
        rule: rule?,
        max_concurrent,
        lease_ttl: lease_ttl.or(DEFAULT_LEASE_TTL),
        timeout,
        fail_closed,
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

/// Reports each key of the other algorithm present in the table.
fn reject_keys(f: &Fields<'_>, issues: &mut Issues, keys: &[&str], theirs: &str, ours: &str) {
    for key in keys {
        if f.table.contains(key) {
            f.report(
                issues,
                key,
                format!(
                    "`{key}` is a {theirs} setting, but this limiter's algorithm is {ours}; remove it or set algorithm = \"{theirs}\""
                ),
            );
        }
    }
}

/// The token-bucket rule: `Some(None)` for a limiter that only caps concurrency.
fn token_bucket(f: &Fields<'_>, algorithm: &str, issues: &mut Issues) -> Option<Option<Rule>> {
    reject_keys(f, issues, SLIDING_WINDOW_KEYS, "sliding_window", algorithm);
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
    reject_keys(
        f,
        issues,
        TOKEN_BUCKET_KEYS,
        "token_bucket",
        "sliding_window",
    );
    let limit = f.u32(issues, "limit", 1);
    let window = f.positive(issues, "window_seconds", false);
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
    match SlidingWindow::new(limit, window) {
        Ok(rule) => Some(Rule::SlidingWindow(rule)),
        Err(error) => {
            let key = match &error {
                RuleError::NotPositive { field, .. }
                | RuleError::TooLarge { field, .. }
                | RuleError::TooSmall { field }
                | RuleError::OutOfRange { field, .. } => field,
                RuleError::SpanOverflow | RuleError::NotADivisorOfADay { .. } => "window_seconds",
            };
            f.report(issues, key, error.to_string());
            None
        }
    }
}
