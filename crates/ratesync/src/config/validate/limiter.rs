//! `[limiters.ID]` tables: the rule, the concurrency cap and the call defaults
//! (`docs/design.md#limiter-tables`).

use std::num::NonZeroU32;

use super::super::error::Issues;
use super::super::offset::parse_utc_offset;
use super::super::raw::{Table, Value};
use super::super::types::{KeyOverride, LimiterConfig, DEFAULT_LEASE_TTL};
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
    "overrides",
];
/// The keys of an `overrides` table: what it applies to, and the rule fields it may
/// set (the algorithm, store and call defaults are the limiter's own).
const OVERRIDE_KEYS: &[&str] = &[
    "keys",
    "key_prefix",
    "rate_per_second",
    "burst",
    "limit",
    "window_seconds",
    "precision",
    "period",
    "utc_offset",
    "max_concurrent",
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
    let rule = rule_and_cap(f, issues);
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
    // Overrides are the limiter's table with some fields replaced: checked once the
    // limiter itself is valid, so that its own problems are not reported again.
    let overrides = match issues.len() == before {
        true => overrides(f, issues),
        false => Vec::new(),
    };
    let (rule, max_concurrent) = rule?;
    let config = LimiterConfig {
        store: store?,
        rule,
        max_concurrent,
        lease_ttl: lease_ttl.or(DEFAULT_LEASE_TTL),
        timeout,
        fail_closed,
        shadow,
        overrides,
    };
    (issues.len() == before).then_some(config)
}

/// The rule of a limiter table (`None`: concurrency only) and its cap; `None` when
/// either is invalid (reported).
fn rule_and_cap(f: &Fields<'_>, issues: &mut Issues) -> Option<(Option<Rule>, Option<NonZeroU32>)> {
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
    let max_concurrent = match f.u32(issues, "max_concurrent", 1) {
        Field::Invalid => return None,
        cap => cap.ok().and_then(NonZeroU32::new),
    };
    Some((rule?, max_concurrent))
}

/// The `[[limiters.ID.overrides]]` tables of a valid limiter table `f`
/// (`docs/design.md#overrides`).
fn overrides(f: &Fields<'_>, issues: &mut Issues) -> Vec<KeyOverride> {
    let items = match f.table.get("overrides").map(|i| &i.value) {
        None | Some(Value::Invalid) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            f.report(
                issues,
                "overrides",
                format!(
                    "expected an array of tables ([[limiters.ID.overrides]]), got {}",
                    other.type_name()
                ),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", f.path("overrides"));
        match &item.value {
            Value::Table(table) => {
                let o = Fields::new(table, path, item.line.or(f.line));
                out.extend(key_override(f, &o, issues));
            }
            Value::Invalid => {}
            other => issues.push(
                &path,
                item.line,
                format!("expected a table, got {}", other.type_name()),
            ),
        }
    }
    out
}

/// One override `o` of the limiter table `f`: its keys, and the limiter's rule with
/// the override's fields, validated as a limiter table (so with the same messages).
fn key_override(f: &Fields<'_>, o: &Fields<'_>, issues: &mut Issues) -> Option<KeyOverride> {
    let before = issues.len();
    o.check_keys(issues, "an override", OVERRIDE_KEYS, |key| {
        KEYS.contains(&key)
            .then(|| format!("`{key}` is the limiter's own, the same for every key"))
    });
    let keys = key_list(o, issues);
    let key_prefix = match o.string(issues, "key_prefix") {
        Field::Valid("") => {
            o.report(
                issues,
                "key_prefix",
                "must not be empty: it would match every key",
            );
            None
        }
        prefix => prefix.ok().map(str::to_owned),
    };
    if !o.table.contains("keys") && !o.table.contains("key_prefix") {
        o.report_table(
            issues,
            "an override needs `keys`, `key_prefix` or both: the keys it applies to",
        );
    }
    let sets_a_rule = o
        .table
        .entries
        .iter()
        .any(|e| e.key != "keys" && e.key != "key_prefix");
    if !sets_a_rule {
        o.report_table(
            issues,
            "an override sets none of the rule fields (rate_per_second, burst, limit, window_seconds, period, max_concurrent, ...)",
        );
    }
    if issues.len() != before {
        return None;
    }
    // A window given by the override replaces the limiter's, whichever way it is
    // given (`window_seconds` and `period` exclude each other).
    let replaced = |key: &str| {
        o.table.contains(key)
            || (key == "period" && o.table.contains("window_seconds"))
            || (key == "window_seconds" && o.table.contains("period"))
    };
    let mut merged = Table::default();
    merged.entries.extend(
        f.table
            .entries
            .iter()
            .filter(|e| e.key != "overrides" && !replaced(&e.key))
            .cloned(),
    );
    merged.entries.extend(
        o.table
            .entries
            .iter()
            .filter(|e| e.key != "keys" && e.key != "key_prefix")
            .cloned(),
    );
    let merged = Fields::new(&merged, o.path.clone(), o.line);
    let (rule, max_concurrent) = rule_and_cap(&merged, issues)?;
    Some(KeyOverride {
        keys: keys.unwrap_or_default(),
        key_prefix,
        rule,
        max_concurrent,
    })
}

/// `keys = ["a", "b"]`: non-empty strings; `None` when absent or invalid.
fn key_list(o: &Fields<'_>, issues: &mut Issues) -> Option<Vec<String>> {
    let items = match o.table.get("keys").map(|i| &i.value) {
        None | Some(Value::Invalid) => return None,
        Some(Value::Array(items)) if !items.is_empty() => items,
        Some(Value::Array(_)) => {
            o.report(issues, "keys", "must list at least one key");
            return None;
        }
        Some(other) => {
            o.report(
                issues,
                "keys",
                format!(
                    "expected an array of key strings, got {}",
                    other.type_name()
                ),
            );
            return None;
        }
    };
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match &item.value {
            Value::String { text, .. } => keys.push(text.clone()),
            Value::Invalid => {}
            other => issues.push(
                &format!("{}[{i}]", o.path("keys")),
                item.line,
                format!("expected a key string, got {}", other.type_name()),
            ),
        }
    }
    Some(keys)
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
